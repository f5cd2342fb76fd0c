import ChimeBroker
import ChimeSchedule
import ChimeProtocol
import ChimeServer
import ChimeStore
import ChimeTestSupport
import Foundation
import Glibc
import Logging
import NIOCore
import NIOPosix
import Synchronization
import Testing

/// One HTTP/1.1 exchange, as a client on the wire would see it.
struct HTTPReply {
    var status: Int
    /// Header names lowercased.
    var headers: [String: String]
    var body: String

    /// The body as a JSON object.
    var json: [String: Any] {
        (try? JSONSerialization.jsonObject(with: Data(body.utf8))) as? [String: Any] ?? [:]
    }

    /// `{"error": {"code": …}}`
    var errorCode: String? { (json["error"] as? [String: Any])?["code"] as? String }

    init(parsing bytes: [UInt8]) throws {
        let text = String(decoding: bytes, as: UTF8.self)
        guard let split = text.range(of: "\r\n\r\n") else { throw HTTPReplyError(text: text) }
        let head = text[..<split.lowerBound].components(separatedBy: "\r\n")
        guard let statusLine = head.first, statusLine.hasPrefix("HTTP/1.1 "), let status = Int(statusLine.dropFirst(9).prefix(3)) else {
            throw HTTPReplyError(text: text)
        }
        self.status = status
        headers = [:]
        for line in head.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        var rest = String(text[split.upperBound...])
        if headers["transfer-encoding"]?.lowercased() == "chunked" {
            var decoded = ""
            while let end = rest.range(of: "\r\n"), let size = Int(rest[..<end.lowerBound], radix: 16), size > 0 {
                let chunk = rest[end.upperBound...].utf8.prefix(size)
                decoded += String(decoding: chunk, as: UTF8.self)
                rest = String(decoding: rest[end.upperBound...].utf8.dropFirst(size + 2), as: UTF8.self)
            }
            rest = decoded
        }
        body = rest
    }

    /// Prometheus text as `series → value` (`name{labels}` exactly as written).
    var samples: [String: Double] {
        var out: [String: Double] = [:]
        for line in body.split(separator: "\n") where !line.hasPrefix("#") {
            guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else { continue }
            out[String(line[..<space])] = value
        }
        return out
    }
}

struct HTTPReplyError: Error {
    var text: String
}

/// GET over a fresh 127.0.0.1 connection (`Connection: close`, read to the end), async
/// NIO: waiting for the server never blocks a thread of the pool its requests run on.
func httpGet(port: Int, _ path: String, authorization: String? = nil) async throws -> HTTPReply {
    let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
        .connect(host: "127.0.0.1", port: port) { ch in
            ch.eventLoop.makeCompletedFuture { try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: ch) }
        }
    let bytes = try await channel.executeThenClose { inbound, outbound in
        var request = "GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        if let authorization { request += "Authorization: \(authorization)\r\n" }
        request += "\r\n"
        try await outbound.write(ByteBuffer(string: request))
        var bytes: [UInt8] = []
        for try await chunk in inbound { bytes += chunk.readableBytesView }
        return bytes
    }
    return try HTTPReply(parsing: bytes)
}

/// Runs blocking work (a child process's pipe, its exit) on a Dispatch thread: a test
/// blocking one of the cooperative pool's few threads stalls every other test's tasks.
func offThePool<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
    await withCheckedContinuation { continuation in
        DispatchQueue.global().async { continuation.resume(returning: body()) }
    }
}

/// A real broker (manual firing, a clock moved by hand), its protocol server and its admin
/// server, both on ephemeral ports of 127.0.0.1. Metrics go to the process's one registry
/// (`ChimeMetrics.bootstrap()`): tests that read them use topic and group names of their own.
private final class AdminFixture {
    static let epoch: Int64 = 1_800_000_000_000
    let dir = TemporaryDirectory("chime-admin")
    let clock = ManualClock(AdminFixture.epoch)
    let broker: Broker
    let server: ChimeServer
    let admin: AdminServer
    let port: Int

    init(
        tokens: [String] = [], durability: DurabilityPolicy = .never, fileSystem: FileSystemCalls = .system,
        limits: (inout AdminOptions) -> Void = { _ in }
    ) async throws {
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let registry = ChimeMetrics.bootstrap()
        var brokerOptions = BrokerOptions(directory: dir.path, durability: durability, clock: clock, firing: .manual, randomSeed: 7)
        brokerOptions.fileSystem = fileSystem
        broker = try await Broker.open(brokerOptions, logger: logger)
        let server = try await ChimeServer.start(broker: broker, options: ServerOptions(port: 0, tokens: tokens), logger: logger)
        self.server = server
        var options = AdminOptions(port: 0, tokens: tokens)
        limits(&options)
        admin = try await AdminServer.start(
            broker: broker, options: options, registry: registry, connections: { server.connectionGauges }, logger: logger)
        port = try await admin.port()
    }

    func get(_ path: String, authorization: String? = nil) async throws -> HTTPReply {
        try await httpGet(port: port, path, authorization: authorization)
    }

    func shutdown() async {
        await admin.stop()
        await server.stop()
        await broker.close()
    }
}

private func text(_ s: String, at: Int64? = nil) -> OutgoingMessage {
    OutgoingMessage(body: Array(s.utf8), due: at.map(Due.at))
}

/// A JSON object's number or string field, for assertions.
private func int(_ object: [String: Any]?, _ key: String) -> Int? { object?[key] as? Int }
private func str(_ object: [String: Any]?, _ key: String) -> String? { object?[key] as? String }

/// Connections to the admin port that send `bytes` (nothing by default) and then nothing
/// more, opened one after another. The server closing one shows as `isActive` false.
private func openConnections(port: Int, count: Int, sending bytes: String? = nil) async throws -> [any Channel] {
    var channels: [any Channel] = []
    for _ in 0..<count {
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton).connect(host: "127.0.0.1", port: port).get()
        if let bytes { try await channel.writeAndFlush(ByteBuffer(string: bytes)) }
        channels.append(channel)
    }
    return channels
}

/// Checks `condition` until it holds or the deadline passes (the deadline only bounds a
/// failing test; nothing is asserted about how long it took). Returns whether it held.
private func eventually(within seconds: Int = 60, _ condition: () async throws -> Bool) async rethrows -> Bool {
    let deadline = ContinuousClock.now + .seconds(seconds)
    while ContinuousClock.now < deadline {
        if try await condition() { return true }
        try? await Task.sleep(for: .milliseconds(10))
    }
    return try await condition()
}

/// The highest admin connection count seen until the task is cancelled.
private func watchHighestCount(_ admin: AdminServer) -> Task<Int, Never> {
    Task {
        var highest = 0
        while !Task.isCancelled {
            highest = max(highest, admin.connectionCount)
            try? await Task.sleep(for: .milliseconds(1))
        }
        return highest
    }
}

/// A publish over the broker protocol, for checks that the broker keeps serving.
private func publishOne(port: Int, topic: String) async throws -> Int {
    let client = try await RawClient.authenticated(port: port, token: "tok")
    let reply = try await client.call(
        .publish, Publish(topic: topic, partition: 0, records: [OutgoingRecord(body: Array("still here".utf8))]), as: PublishReply.self)
    return reply.outcomes.count
}

private func unique(_ prefix: String) -> String { "\(prefix)-\(UUID().uuidString.prefix(8).lowercased())" }

@Suite struct AdminTests {
    @Test func healthTopicsAndGroupsAsJSON() async throws {
        let f = try await AdminFixture()
        let health = try await f.get("/health")
        #expect(health.status == 200)
        #expect(health.headers["content-type"]?.hasPrefix("application/json") == true)
        #expect(str(health.json, "status") == "ok")
        #expect(str(health.json, "version") == ChimeVersion.current)

        try f.broker.createTopic("orders", settings: TopicSettings(partitions: 2))
        _ = try await f.broker.publish(topic: "orders", [text("a"), text("b"), text("c")], partition: 0)
        let due = AdminFixture.epoch + 60_000
        _ = try await f.broker.publish(topic: "orders", [text("later", at: due), text("later still", at: due + 5_000)], partition: 1)

        let list = try await f.get("/v1/topics")
        #expect(list.status == 200)
        let topics = try #require(list.json["topics"] as? [[String: Any]])
        #expect(topics.map { str($0, "name") } == ["orders"])
        #expect(int(topics.first, "partitions") == 2)
        #expect(int(topics.first, "ready") == 3)
        #expect(int(topics.first, "scheduled") == 2)

        let detail = try await f.get("/v1/topics/orders")
        #expect(detail.status == 200)
        #expect(str(detail.json, "name") == "orders")
        #expect(int(detail.json["settings"] as? [String: Any], "partitions") == 2)
        #expect(detail.json["retentionBytes"] == nil, "settings sit under settings")
        let partitions = try #require(detail.json["partitions"] as? [[String: Any]])
        #expect(partitions.map { int($0, "partition") } == [0, 1])
        #expect(int(partitions[0], "ready") == 3 && int(partitions[0], "logEnd") == 3)
        #expect(int(partitions[0], "scheduled") == 0)
        #expect(partitions[0]["nextDueAt"] is NSNull, "nothing scheduled: an explicit null")
        #expect(int(partitions[1], "ready") == 0 && int(partitions[1], "scheduled") == 2)
        // When the wheel next has work (a slot to fire or cascade): never after the earliest due time.
        let next = try #require(int(partitions[1], "nextDueAt"))
        #expect(next <= due)
        let iso = try #require(str(partitions[1], "nextDueAtISO"))
        let parsed = ISO8601DateFormatter()
        parsed.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        #expect(parsed.date(from: iso).map { Int(($0.timeIntervalSince1970 * 1000).rounded()) } == next)
        #expect(int(detail.json, "scheduled") == 2 && int(detail.json, "nextDueAt") == next)

        let member = try await f.broker.join(group: "billing", member: "worker-1", topics: ["orders"])
        let got = try await f.broker.fetch(group: "billing", member: member.memberID, max: 2)
        #expect(got.count == 2)
        try await f.broker.ack(group: "billing", member: member.memberID, [got[0].receipt])

        let groups = try await f.get("/v1/groups")
        #expect(groups.status == 200)
        let listed = try #require(groups.json["groups"] as? [[String: Any]])
        #expect(listed.map { str($0, "name") } == ["billing"])
        #expect(int(listed.first, "lag") == 2 && int(listed.first, "inFlight") == 1 && int(listed.first, "members") == 1)

        let group = try await f.get("/v1/groups/billing")
        #expect(group.status == 200)
        #expect(int(group.json, "lag") == 2, "3 published, 1 acked")
        #expect(int(group.json, "inFlight") == 1)
        #expect(int(group.json, "retriesPending") == 0 && int(group.json, "deadLettered") == 0)
        #expect(str(group.json, "deadLetterTopic") == "billing.dlq")
        let members = try #require(group.json["members"] as? [[String: Any]])
        #expect(members.count == 1)
        #expect(str(members.first, "id") == String(member.memberID), "64-bit ids as strings")
        #expect(str(members.first, "name") == "worker-1")
        let assignment = members.first?["assignment"] as? [Any]
        #expect(assignment?.count == 2)
        #expect(int(members.first, "lastSeenAt") == Int(AdminFixture.epoch))
        #expect(str(members.first, "lastSeenAtISO") == "2027-01-15T08:00:00.000Z")
        let groupPartitions = try #require(group.json["partitions"] as? [[String: Any]])
        let p0 = try #require(groupPartitions.first { int($0, "partition") == 0 })
        #expect(str(p0, "topic") == "orders" && int(p0, "committed") == 1 && int(p0, "lag") == 2 && int(p0, "inFlight") == 1)
        #expect(str(p0, "owner") == String(member.memberID))
        await f.shutdown()
    }

    @Test func aJobsStatusIsJSONPerGroupAndBadIdsAreTypedErrors() async throws {
        let f = try await AdminFixture()
        try f.broker.createTopic("orders", settings: TopicSettings(partitions: 1))
        let due = AdminFixture.epoch + 60_000
        let later = try #require(try await f.broker.publish(topic: "orders", [text("later", at: due)]).first?.id)
        let scheduled = try await f.get("/v1/jobs/\(later)")
        #expect(scheduled.status == 200)
        #expect(str(scheduled.json, "id") == later.description)
        let only = try #require((scheduled.json["statuses"] as? [[String: Any]])?.first)
        #expect(str(only, "state") == "scheduled" && int(only, "dueAt") == Int(due) && only["group"] is NSNull)
        #expect(str(only, "dueAtISO") == "2027-01-15T08:01:00.000Z")

        let m = try await f.broker.join(group: "billing", member: "w", topics: ["orders"])
        let now = try #require(try await f.broker.publish(topic: "orders", [text("now")]).first?.id)
        let leased = try await f.broker.fetch(group: "billing", member: m.memberID, max: 1)
        #expect(leased.count == 1)
        let running = try await f.get("/v1/jobs/\(now)?group=billing")
        let status = try #require((running.json["statuses"] as? [[String: Any]])?.first)
        #expect(str(status, "group") == "billing" && str(status, "state") == "running")
        #expect(str(status, "member") == String(m.memberID) && int(status, "attempt") == 1)

        let malformed = try await f.get("/v1/jobs/nonsense")
        #expect(malformed.status == 400 && malformed.errorCode == "invalidArgument")
        let missing = try await f.get("/v1/jobs/\(later.topicID)-0-r999")
        #expect(missing.status == 404 && missing.errorCode == "unknownMessage")
        #expect(try await f.get("/v1/jobs/\(now)?group=nobody").status == 404)
        await f.shutdown()
    }

    @Test func schedulesAreListedAndShownWithTheirNextOccurrences() async throws {
        let f = try await AdminFixture()
        try f.broker.createTopic("reports", settings: TopicSettings(partitions: 2))
        let schedule = Schedule(
            name: "nightly", spec: .cron(expression: "0 3 * * *", zone: "Europe/Berlin"), target: ScheduleTarget(topic: "reports", body: Array("run".utf8)),
            options: ScheduleOptions(misfire: .all))
        _ = try await f.broker.writeSchedule(schedule, .create)
        let list = try await f.get("/v1/schedules")
        #expect(list.status == 200)
        let only = try #require((list.json["schedules"] as? [[String: Any]])?.first)
        #expect(str(only, "name") == "nightly" && str(only, "cron") == "0 3 * * *" && str(only, "timeZone") == "Europe/Berlin")
        #expect(str(only, "misfire") == "all" && str(only, "topic") == "reports" && only["paused"] as? Bool == false)
        // 03:00 in Berlin (UTC+1 in January) the day after the fixture's 2027-01-15T08:00Z.
        #expect(str(only, "nextOccurrenceISO") == "2027-01-16T02:00:00.000Z")
        let shown = try await f.get("/v1/schedules/nightly?upcoming=2")
        #expect(shown.status == 200)
        #expect(shown.json["upcoming"] as? [String] == ["2027-01-17T02:00:00.000Z", "2027-01-18T02:00:00.000Z"])
        let missing = try await f.get("/v1/schedules/nope")
        #expect(missing.status == 404 && missing.errorCode == "unknownSchedule")
        #expect(try await f.get("/v1/schedules/nightly?upcoming=5000").status == 400)
        await f.shutdown()
    }

    @Test func unknownNamesAndPathsAreJSON404s() async throws {
        let f = try await AdminFixture()
        let topic = try await f.get("/v1/topics/nope")
        #expect(topic.status == 404)
        #expect(topic.errorCode == "unknownTopic")
        let message = str(topic.json["error"] as? [String: Any], "message") ?? ""
        #expect(message.contains("nope"))
        let group = try await f.get("/v1/groups/nope")
        #expect(group.status == 404 && group.errorCode == "unknownGroup")
        let path = try await f.get("/v2/everything")
        #expect(path.status == 404 && path.errorCode == "notFound")
        let bad = try await f.get("/v1/topics/bad%20name")
        #expect(bad.status == 400 || bad.status == 404, "a name the engine refuses is never a 200")
        #expect(try await f.get("/v1/topics").status == 200, "the server keeps answering")
        await f.shutdown()
    }

    @Test func healthIsDegradedWhileAPartitionRefusesAppends() async throws {
        let syncFails = Mutex(false)
        let calls = FileSystemCalls(
            pwritev: { FileSystemCalls.system.pwritev($0, $1, $2, $3) },
            fdatasync: { fd in syncFails.withLock { $0 } ? -EIO : FileSystemCalls.system.fdatasync(fd) },
            ftruncate: { FileSystemCalls.system.ftruncate($0, $1) })
        let f = try await AdminFixture(durability: .always, fileSystem: calls)
        try f.broker.createTopic("orders", settings: TopicSettings(partitions: 2))
        syncFails.withLock { $0 = true }
        await #expect(throws: BrokerError.self) { _ = try await f.broker.publish(topic: "orders", [text("x")], partition: 1) }
        syncFails.withLock { $0 = false }

        let health = try await f.get("/health")
        #expect(health.status == 503, "a load balancer sees the broker degraded")
        #expect(str(health.json, "status") == "degraded")
        #expect(health.json["failedPartitions"] as? [String] == ["orders/1"])
        let metrics = try await f.get("/metrics")
        #expect(metrics.samples["chime_partitions_failed"] == 1, "and /metrics counts it")
        await f.shutdown()
    }

    @Test func tokensGuardEverythingButHealth() async throws {
        let f = try await AdminFixture(tokens: ["s3cret", "second-token"])
        #expect(try await f.get("/health").status == 200, "open for load balancers")
        for path in ["/v1/topics", "/v1/groups", "/v1/topics/x", "/metrics", "/v2/unknown"] {
            let missing = try await f.get(path)
            #expect(missing.status == 401, "\(path) without a token")
            #expect(missing.errorCode == "unauthorized")
            #expect(missing.headers["www-authenticate"]?.hasPrefix("Bearer") == true)
            #expect(try await f.get(path, authorization: "Bearer s3cre").status == 401, "\(path) with a prefix of the token")
            #expect(try await f.get(path, authorization: "Bearer s3cret-and-more").status == 401)
            #expect(try await f.get(path, authorization: "Basic s3cret").status == 401, "another scheme")
        }
        #expect(try await f.get("/v1/topics", authorization: "Bearer s3cret").status == 200)
        #expect(try await f.get("/v1/groups", authorization: "bearer second-token").status == 200, "any configured token; scheme case-insensitive")
        #expect(try await f.get("/metrics", authorization: "Bearer s3cret").status == 200)
        #expect(try await f.get("/v1/topics/x", authorization: "Bearer s3cret").status == 404, "past the gate, the usual answers")
        await f.shutdown()
    }

    @Test func metricsCountAKnownWorkload() async throws {
        // Durable publishes: the fsync histogram has something to show.
        let f = try await AdminFixture(durability: .always)
        let topic = unique("metered")
        let group = unique("meter-group")
        try f.broker.createTopic(topic, settings: TopicSettings(partitions: 1))
        _ = try await f.broker.publish(topic: topic, (0..<5).map { text("m\($0)") })
        let due = AdminFixture.epoch + 10_000
        _ = try await f.broker.publish(topic: topic, [text("scheduled", at: due)])
        // A raw protocol connection, for the connections gauge.
        let client = try await RawClient.authenticated(port: f.server.port)

        var m = try await f.get("/metrics")
        #expect(m.status == 200)
        #expect(m.headers["content-type"]?.hasPrefix("text/plain") == true)
        var s = m.samples
        #expect(s["chime_published_messages_total{topic=\"\(topic)\"}"] == 6, "5 ready + 1 scheduled, counted once durable")
        #expect(s["chime_scheduled_messages{topic=\"\(topic)\"}"] == 1)
        #expect((s["chime_disk_bytes{topic=\"\(topic)\"}"] ?? 0) > 0)
        #expect(s["chime_connections"] == 1)
        #expect((s["chime_fsync_seconds_count"] ?? 0) > 0)

        // Fired 250 ms after its due time, by the broker's clock.
        f.clock.set(due + 250)
        #expect(try await f.broker.fireDue() == 1)
        let member = try await f.broker.join(group: group, member: "w", topics: [topic]).memberID
        let got = try await f.broker.fetch(group: group, member: member, max: 100)
        #expect(got.count == 6)
        try await f.broker.ack(group: group, member: member, Array(got.prefix(4)).map { $0.receipt })

        m = try await f.get("/metrics")
        s = m.samples
        let t = "topic=\"\(topic)\""
        #expect(s["chime_fired_messages_total{\(t)}"] == 1)
        #expect(s["chime_delivered_messages_total{\(t),group=\"\(group)\"}"] == 6)
        #expect(s["chime_acked_messages_total{\(t),group=\"\(group)\"}"] == 4)
        #expect(s["chime_fire_lateness_seconds_count{\(t)}"] == 1)
        #expect(s["chime_fire_lateness_seconds_sum{\(t)}"] == 0.25)
        #expect(s["chime_fire_lateness_seconds_bucket{\(t),le=\"0.1\"}"] == 0)
        #expect(s["chime_fire_lateness_seconds_bucket{\(t),le=\"0.25\"}"] == 1)
        #expect(s["chime_fire_lateness_seconds_bucket{\(t),le=\"0.001\"}"] == 0, "buckets start at a millisecond")
        #expect(s["chime_scheduled_messages{\(t)}"] == 0)
        #expect(s["chime_group_lag_messages{group=\"\(group)\",\(t)}"] == 2)
        #expect(m.body.contains("# TYPE chime_fire_lateness_seconds histogram"))

        // A deleted topic's scraped series go with it.
        try await f.broker.deleteTopic(topic)
        s = try await f.get("/metrics").samples
        #expect(s["chime_disk_bytes{\(t)}"] == nil)
        #expect(s["chime_scheduled_messages{\(t)}"] == nil)
        // And so do its counted series (published, fired, lateness, delivered, acked).
        let left = s.keys.filter { $0.contains(t) }
        #expect(left.isEmpty, "series of the deleted topic: \(left.sorted())")
        _ = client
        await f.shutdown()
    }

    @Test func stoppedServerRefusesConnectionsAndPortZeroIsReadable() async throws {
        let f = try await AdminFixture()
        #expect(f.port > 0)
        #expect(try await f.get("/health").status == 200)
        await f.admin.stop()
        await #expect(throws: (any Error).self) { _ = try await f.get("/health") }
        await #expect(throws: (any Error).self, "a stopped server has no port") { _ = try await f.admin.port() }
        await f.server.stop()
        await f.broker.close()
    }

    @Test func aTakenPortIsAnErrorNotAHang() async throws {
        let f = try await AdminFixture()
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        await #expect(throws: (any Error).self) {
            _ = try await AdminServer.start(broker: f.broker, options: AdminOptions(port: f.port), registry: nil, logger: logger)
        }
        await f.shutdown()
    }

    /// `chime serve` with `--admin-port 0` and a token: the admin port is announced, health is
    /// open, the rest needs the token, and /metrics shows the process's own metrics.
    @Test func serveCommandServesTheAdminPort() async throws {
        let dir = TemporaryDirectory("chime-admin-serve")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: builtProduct("chime"))
        process.arguments = ["serve", "--data", dir.path, "--port", "0", "--admin-port", "0", "--token", "tok"]
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = FileHandle.nullDevice
        try process.run()
        let reader = pipe.fileHandleForReading
        var output = await offThePool {
            var output = ""
            while !output.contains("/metrics)") {
                let chunk = reader.availableData
                if chunk.isEmpty { break }
                output += String(decoding: chunk, as: UTF8.self)
            }
            return output
        }
        func port(after marker: String) -> Int? {
            output.split(separator: "\n").first { $0.contains(marker) }?.split(separator: " ").first { $0.hasPrefix("127.0.0.1:") }
                .flatMap { Int($0.dropFirst("127.0.0.1:".count).prefix { $0.isNumber }) }
        }
        let adminPort = try #require(port(after: "admin HTTP on"))
        let brokerPort = try #require(port(after: "serving the broker protocol on"))
        #expect(try await httpGet(port: adminPort, "/health").status == 200)
        #expect(try await httpGet(port: adminPort, "/v1/topics").status == 401)
        let topics = try await httpGet(port: adminPort, "/v1/topics", authorization: "Bearer tok")
        #expect(topics.status == 200 && topics.body == #"{"topics":[]}"#)
        let client = try await RawClient.authenticated(port: brokerPort, token: "tok")
        let published = try await client.call(
            .publish, Publish(topic: "jobs", partition: 0, records: [OutgoingRecord(body: Array("hello".utf8))]), as: PublishReply.self)
        #expect(published.outcomes.count == 1)
        let metrics = try await httpGet(port: adminPort, "/metrics", authorization: "Bearer tok")
        let samples = metrics.samples
        #expect(samples["chime_connections"] == 1)
        #expect(samples["chime_published_messages_total{topic=\"jobs\"}"] == 1, "the executable bootstrapped the backend")
        #expect((samples["chime_fsync_seconds_count"] ?? 0) > 0, "durability always: the publish waited for an fsync")
        _ = client
        kill(process.processIdentifier, SIGTERM)
        output += await offThePool {
            process.waitUntilExit()
            return String(decoding: reader.readDataToEndOfFile(), as: UTF8.self)
        }
        #expect(process.terminationStatus == 0)
        #expect(output.contains("stopped cleanly"))
    }

    /// An admin port with token "tok", `limit` connections and `idleTimeout`.
    private func limitedAdmin(_ limit: Int, idleTimeout: Duration) async throws -> AdminFixture {
        try await AdminFixture(tokens: ["tok"]) {
            $0.maxConnections = limit
            $0.idleTimeout = idleTimeout
        }
    }

    /// Silent connections past the admin limit are closed as they are accepted, while the
    /// ones under it are held: the server's count stays at the limit, the broker protocol
    /// keeps serving, and a real request gets in as soon as a place is free.
    @Test func adminConnectionsPastTheLimitAreClosedAtOnce() async throws {
        let limit = 20
        // An idle timeout far longer than the test: every close seen here is the limit's.
        let f = try await limitedAdmin(limit, idleTimeout: .seconds(3_600))
        let watching = watchHighestCount(f.admin)
        let silent = try await openConnections(port: f.port, count: 200)
        #expect(await eventually { silent.filter { !$0.isActive }.count == 200 - limit }, "all but \(limit) closed by the server")
        #expect(f.admin.connectionCount == limit)
        #expect(silent.filter(\.isActive).count == limit, "the ones under the limit are held")
        #expect(try await publishOne(port: f.server.port, topic: unique("busy-admin")) == 1, "the broker protocol serves meanwhile")
        await #expect(throws: (any Error).self, "a full admin port closes a request's connection unanswered") {
            _ = try await f.get("/health")
        }

        // One silent connection goes: its place is a real request's.
        let stillOpen = silent.first { $0.isActive }
        let held = try #require(stillOpen)
        try await held.close()
        #expect(await eventually { f.admin.connectionCount < limit })
        #expect(try await f.get("/health").status == 200)
        #expect(try await f.get("/v1/topics", authorization: "Bearer tok").status == 200)
        watching.cancel()
        #expect(await watching.value <= limit, "the count never passed the limit")
        for channel in silent { try? await channel.close() }
        await f.shutdown()
    }

    /// A connection that sends nothing, or starts a request and never finishes it, is
    /// closed after the idle timeout: silent clients past the limit cannot keep the admin
    /// port (nor the descriptors the broker needs) for long, and real requests get in after.
    @Test func silentAndUnfinishedAdminConnectionsAreClosedAfterTheIdleTimeout() async throws {
        let limit = 16
        // Long enough that a connection of the test's own is written to in time on a
        // loaded machine (500 ms closed one before its first bytes in a CI run).
        let f = try await limitedAdmin(limit, idleTimeout: .seconds(2))
        let watching = watchHighestCount(f.admin)
        let silent = try await openConnections(port: f.port, count: 100)
        #expect(try await publishOne(port: f.server.port, topic: unique("idle-admin")) == 1, "the broker protocol serves meanwhile")
        #expect(await eventually { silent.allSatisfy { !$0.isActive } }, "every silent connection closed")
        // A head never finished, and a body never finished (trickled in under the idle
        // timeout; its declared length is more than the test ever sends).
        let unfinishedHead = try await openConnections(port: f.port, count: 1, sending: "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        let unfinishedBody = try await openConnections(
            port: f.port, count: 1, sending: "POST /health HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100000\r\n\r\nx")
        let trickle = Task {
            while !Task.isCancelled, unfinishedBody[0].isActive {
                try? await unfinishedBody[0].writeAndFlush(ByteBuffer(string: "x"))
                try? await Task.sleep(for: .milliseconds(100))
            }
        }
        #expect(await eventually { !unfinishedHead[0].isActive }, "a head never finished")
        #expect(await eventually { !unfinishedBody[0].isActive }, "a body trickled in and never finished")
        trickle.cancel()
        #expect(await eventually { f.admin.connectionCount == 0 })
        #expect(try await f.get("/health").status == 200)
        #expect(try await f.get("/v1/topics", authorization: "Bearer tok").status == 200)
        watching.cancel()
        #expect(await watching.value <= limit, "the count never passed the limit")
        await f.shutdown()
    }

    /// A request head past its limit is answered 400 and closed; a body past its limit
    /// closes the connection; the port keeps serving.
    @Test func oversizedAdminRequestsCloseTheirConnection() async throws {
        let f = try await AdminFixture {
            $0.maxRequestHeaderBytes = 4_096
            $0.maxRequestBodyBytes = 1_024
        }
        let longHeader = "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Filler: \(String(repeating: "a", count: 8_192))\r\n\r\n"
        let headed = try await openConnections(port: f.port, count: 1, sending: longHeader)
        #expect(await eventually { !headed[0].isActive }, "a long head closes the connection")
        let body = String(repeating: "b", count: 4_096)
        let bodied = try await openConnections(
            port: f.port, count: 1, sending: "POST /health HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)")
        #expect(await eventually { !bodied[0].isActive }, "a long body closes the connection")
        #expect(try await f.get("/health").status == 200)
        await f.shutdown()
    }
}
