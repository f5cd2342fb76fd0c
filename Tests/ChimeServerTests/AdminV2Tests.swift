import ChimeBroker
import ChimeClient
import ChimeProtocol
import ChimeSchedule
import ChimeServer
import ChimeStore
import ChimeTestSupport
import Foundation
import Logging
import NIOCore
import NIOPosix
import Testing

/// Admin API v2 over real sockets: every endpoint and its status codes, writes that always
/// need a token, scopes on both ports, typed errors for bad input, and the served OpenAPI
/// document being the repository's.
@Suite struct AdminV2Tests {
    /// A broker with its protocol and admin servers on ephemeral ports; `tokens` as
    /// `chime serve` takes them, `localAdminToken` for writes when there are none.
    final class Fixture {
        let dir = TemporaryDirectory("chime-admin-v2")
        // Now: clients stamp what they publish with their wall clock, which the broker checks.
        let clock = ManualClock(Int64(Date().timeIntervalSince1970 * 1_000))
        let broker: Broker
        let server: ChimeServer
        let admin: AdminServer
        let port: Int
        let brokerPort: Int

        init(tokens: [String] = [], localAdminToken: String? = nil, metrics: Bool = false) async throws {
            var logger = Logger(label: "test")
            logger.logLevel = .critical
            // Before the broker opens: its metric objects are made as it opens.
            if metrics { _ = ChimeMetrics.bootstrap() }
            broker = try await Broker.open(BrokerOptions(directory: dir.path, durability: .never, clock: clock, firing: .manual, randomSeed: 3), logger: logger)
            server = try await ChimeServer.start(broker: broker, options: ServerOptions(port: 0, tokens: tokens), logger: logger)
            brokerPort = server.port
            admin = try await AdminServer.start(
                broker: broker, options: AdminOptions(port: 0, tokens: tokens, localAdminToken: localAdminToken),
                registry: metrics ? ChimeMetrics.bootstrap() : nil, connections: { [server] in server.connectionGauges }, logger: logger)
            port = try await admin.port()
        }

        func call(_ method: String, _ path: String, token: String? = nil, json: String? = nil) async throws -> HTTPReply {
            try await httpRequest(port: port, method: method, path, headers: token.map { ["Authorization": "Bearer \($0)"] } ?? [:], body: json)
        }

        func client(token: String?) -> ChimeClient {
            var logger = Logger(label: "test")
            logger.logLevel = .critical
            return ChimeClient(ClientOptions(port: brokerPort, token: token, name: "scopes", connectAttempts: 1), logger: logger)
        }

        func shutdown() async {
            await admin.stop()
            await server.stop()
            await broker.close()
        }
    }

    @Test func everyEndpointAnswersWithItsDocumentedStatusAndShape() async throws {
        let f = try await Fixture(tokens: ["root"])
        let t = "root"
        // Topics.
        #expect(try await f.call("POST", "/v2/topics", token: t, json: #"{"name":"orders","partitions":2,"maxAttempts":2}"#).status == 201)
        #expect(try await f.call("POST", "/v2/topics", token: t, json: #"{"name":"orders"}"#).errorCode == "topicExists")
        let page = try await f.call("GET", "/v2/topics?limit=1", token: t)
        #expect(page.status == 200 && (page.json["topics"] as? [[String: Any]])?.first?["name"] as? String == "orders")
        #expect((try await f.call("GET", "/v2/topics/orders", token: t).json["partitions"] as? [Any])?.count == 2)

        // Publish now, after a delay, at a time; peek; a message's state; reschedule; cancel.
        let now = try await f.call("POST", "/v2/topics/orders/messages", token: t, json: #"{"body":"hello","key":"k1","headers":{"trace":"a1"},"partition":0}"#)
        #expect(now.status == 201, "\(now.body)")
        let nowID = try #require(now.json["id"] as? String)
        let later = try await f.call("POST", "/v2/topics/orders/messages", token: t, json: #"{"body":"later","delayMs":60000}"#)
        let laterID = try #require(later.json["id"] as? String)
        let at = try await f.call("POST", "/v2/topics/orders/messages", token: t, json: #"{"bodyBase64":"AAEC","at":"2099-01-01T00:00:00Z"}"#)
        #expect(at.status == 201, "\(at.body)")
        let atID = try #require(at.json["id"] as? String)
        let dup = try await f.call("POST", "/v2/topics/orders/messages", token: t, json: #"{"body":"once","dedupKey":"d","partition":1}"#)
        let dupAgain = try await f.call("POST", "/v2/topics/orders/messages", token: t, json: #"{"body":"once","dedupKey":"d","partition":1}"#)
        #expect(dup.status == 201 && dupAgain.status == 200 && dupAgain.json["duplicate"] as? Bool == true)

        let peeked = try await f.call("GET", "/v2/topics/orders/partitions/0/messages?limit=10", token: t)
        let first = try #require((peeked.json["messages"] as? [[String: Any]])?.first)
        #expect(first["body"] as? String == "hello" && first["key"] as? String == "k1" && (first["headers"] as? [String: Any])?["trace"] as? String == "a1")
        #expect(try await f.call("GET", "/v2/messages/\(nowID)", token: t).status == 200)
        let state = try await f.call("GET", "/v2/messages/\(laterID)", token: t)
        #expect(((state.json["statuses"] as? [[String: Any]])?.first?["state"] as? String) == "scheduled", "\(state.body)")
        let moved = try await f.call("POST", "/v2/messages/\(laterID)/reschedule", token: t, json: #"{"delayMs":120000}"#)
        #expect(moved.status == 200, "\(moved.body)")
        let movedID = try #require(moved.json["id"] as? String)
        #expect(try await f.call("DELETE", "/v2/messages/\(movedID)", token: t).status == 204)
        #expect(try await f.call("DELETE", "/v2/messages/\(movedID)", token: t).status == 404, "cancelled already")
        let aborted = try await f.call("POST", "/v2/messages/\(atID)/abort", token: t, json: #"{"reason":"no longer wanted"}"#)
        #expect(aborted.json["outcome"] as? String == "cancelled", "\(aborted.body)")

        // A group with a dead letter: listed with its error, re-driven, consumed again.
        let member = try await f.broker.join(group: "billing", member: "m", topics: ["orders"])
        _ = try await f.broker.publish(topic: "orders", [OutgoingMessage(body: Array("bad".utf8))], partition: 1)
        var fetched: [Delivery] = []
        for _ in 0..<10 where fetched.isEmpty {
            fetched = try await f.broker.fetch(group: "billing", member: member.memberID, max: 10).filter { $0.body == Array("bad".utf8) }
            try? await Task.sleep(for: .milliseconds(20))
        }
        let bad = try #require(fetched.first)
        _ = try await f.broker.term(group: "billing", member: member.memberID, [bad.receipt], reason: "card declined")
        #expect(try await f.call("GET", "/v2/groups", token: t).status == 200)
        let group = try await f.call("GET", "/v2/groups/billing", token: t)
        #expect(group.status == 200 && group.json["deadLettered"] as? Int == 1, "\(group.body)")
        let letters = try await f.call("GET", "/v2/groups/billing/dead-letters", token: t)
        let letter = try #require((letters.json["deadLetters"] as? [[String: Any]])?.first, "\(letters.status) \(letters.body)")
        #expect(letter["body"] as? String == "bad" && (letter["error"] as? String)?.contains("card declined") == true, "\(letter)")
        let redriven = try await f.call("POST", "/v2/groups/billing/dead-letters/redrive", token: t, json: "{}")
        #expect(redriven.json["redriven"] as? Int == 1, "\(redriven.body)")
        #expect((try await f.call("GET", "/v2/groups/billing/dead-letters", token: t).json["deadLetters"] as? [Any])?.isEmpty == true)
        // Two more: one deleted, one re-driven, each by its id.
        _ = try await f.broker.publish(topic: "orders", [OutgoingMessage(body: Array("bad 2".utf8)), OutgoingMessage(body: Array("bad 3".utf8))], partition: 1)
        var more: [Delivery] = []
        for _ in 0..<50 where more.count < 2 {
            _ = try await f.broker.fireDue()
            more += try await f.broker.fetch(group: "billing", member: member.memberID, max: 10).filter { $0.body.starts(with: Array("bad ".utf8)) }
            if more.count < 2 { try await Task.sleep(for: .milliseconds(20)) }
        }
        _ = try await f.broker.term(group: "billing", member: member.memberID, more.map(\.receipt), reason: "declined again")
        let two = try #require(try await f.call("GET", "/v2/groups/billing/dead-letters", token: t).json["deadLetters"] as? [[String: Any]])
        let letterIDs = two.compactMap { $0["id"] as? String }
        #expect(letterIDs.count == 2, "\(two)")
        #expect(try await f.call("DELETE", "/v2/groups/billing/dead-letters/\(letterIDs[0])", token: t).status == 204)
        #expect(try await f.call("DELETE", "/v2/groups/billing/dead-letters/\(letterIDs[0])", token: t).status == 404, "deleted already")
        let chosen = try await f.call("POST", "/v2/groups/billing/dead-letters/redrive", token: t, json: #"{"ids":["\#(letterIDs[1])"]}"#)
        #expect(chosen.json["redriven"] as? Int == 1, "\(chosen.body)")
        #expect((try await f.call("GET", "/v2/groups/billing/dead-letters", token: t).json["deadLetters"] as? [Any])?.isEmpty == true)
        var back: [String] = []
        for _ in 0..<50 where back.isEmpty {
            _ = try await f.broker.fireDue()
            back = try await f.broker.fetch(group: "billing", member: member.memberID, max: 10).map { String(decoding: $0.body, as: UTF8.self) }.filter { $0.hasPrefix("bad ") }
            if back.isEmpty { try await Task.sleep(for: .milliseconds(20)) }
        }
        #expect(back.count == 1, "only the re-driven one comes back: \(back)")

        // Schedules.
        _ = try await f.broker.writeSchedule(
            Schedule(name: "nightly", spec: .every(intervalMs: 60_000, anchorMs: 0), target: ScheduleTarget(topic: "orders", body: Array("run".utf8))), .create)
        #expect(try await f.call("GET", "/v2/schedules", token: t).status == 200)
        #expect(try await f.call("GET", "/v2/schedules/nightly?upcoming=3", token: t).status == 200)
        #expect(try await f.call("POST", "/v2/schedules/nightly/pause", token: t).json["paused"] as? Bool == true)
        #expect(try await f.call("POST", "/v2/schedules/nightly/resume", token: t).json["paused"] as? Bool == false)
        #expect(try await f.call("POST", "/v2/schedules/nightly/trigger", token: t).status == 201)
        #expect(try await f.call("DELETE", "/v2/schedules/nightly", token: t).status == 204)
        #expect(try await f.call("GET", "/v2/schedules/nightly", token: t).status == 404)

        // Locks and flows.
        let grant = try await f.broker.acquireLock("report", holder: "worker-1", ttlMilliseconds: 60_000, waitMilliseconds: 0)
        let lock = try await f.call("GET", "/v2/locks/report", token: t)
        #expect(lock.json["holder"] as? String == "worker-1" && lock.json["token"] as? Int == Int(grant.token))
        #expect((try await f.call("GET", "/v2/locks", token: t).json["locks"] as? [Any])?.count == 1)
        #expect(try await f.call("DELETE", "/v2/locks/report", token: t).status == 204)
        await #expect(throws: BrokerError.self) { try await f.broker.checkFence(lock: "report", token: grant.token) }
        #expect(try await f.call("GET", "/v2/flows/1-0-f1", token: t).status == 404)

        // What falls due soon, by the wheel's lists: within a minute, an hour, a day.
        _ = try f.broker.createTopic("later", settings: TopicSettings(partitions: 2))
        var soonIDs: [MessageID] = []
        for delay in [30_000, 40_000, 600_000, 5 * 3_600_000, 3 * 86_400_000] as [Int64] {
            let published = try await f.broker.publish(topic: "later", [OutgoingMessage(body: Array("x".utf8), due: .after(delay))])
            soonIDs.append(try #require(published.first?.id))
        }
        try await f.broker.cancel(soonIDs[1])
        let upcoming = try await f.call("GET", "/v2/topics/later/scheduled?limit=2", token: t)
        #expect(upcoming.json["dueWithinMinute"] as? Int == 1 && upcoming.json["dueWithinHour"] as? Int == 2 && upcoming.json["dueWithinDay"] as? Int == 3, "\(upcoming.body)")
        #expect((upcoming.json["earliest"] as? [[String: Any]])?.compactMap { $0["id"] as? String } == [soonIDs[0], soonIDs[2]].map(\.description))

        // A group's jobs in flight: one running, one retrying, one snoozed.
        _ = try f.broker.createTopic("work", settings: TopicSettings(partitions: 1))
        _ = try await f.broker.publish(topic: "work", (0..<3).map { OutgoingMessage(body: Array("job \($0)".utf8)) })
        let worker = try await f.broker.join(group: "workers", member: "w", topics: ["work"])
        var leased: [Delivery] = []
        for _ in 0..<50 where leased.count < 3 {
            leased += try await f.broker.fetch(group: "workers", member: worker.memberID, max: 3)
            if leased.count < 3 { try await Task.sleep(for: .milliseconds(20)) }
        }
        try #require(leased.count == 3)
        _ = try await f.broker.nack(group: "workers", member: worker.memberID, [leased[1].receipt], delay: 60_000, reason: "busy")
        _ = try await f.broker.snooze(group: "workers", member: worker.memberID, leased[2].receipt, milliseconds: 60_000, state: nil)
        let jobs = try await f.call("GET", "/v2/groups/workers/jobs", token: t)
        func ids(_ key: String) -> [String] { (jobs.json[key] as? [[String: Any]])?.compactMap { $0["id"] as? String } ?? [] }
        #expect(ids("running") == [leased[0].id.description] && ids("retrying") == [leased[1].id.description], "\(jobs.body)")
        #expect(ids("waiting") == [leased[2].id.description], "\(jobs.body)")
        #expect(((jobs.json["retrying"] as? [[String: Any]])?.first?["lastError"] as? String) == "busy")

        // Callbacks: a token no job waits on.
        #expect(try await f.call("POST", "/v2/callbacks/1-0-s1.5.00000000000000aa/complete", token: t, json: "{}").status == 409)

        #expect(try await f.call("DELETE", "/v2/topics/orders", token: t).status == 204)
        #expect(try await f.call("GET", "/v2/topics/orders", token: t).status == 404)
        await f.shutdown()
    }

    @Test func aWriteNeedsATokenEvenWhileReadsAreOpen() async throws {
        let f = try await Fixture(localAdminToken: "local-secret")
        #expect(try await f.call("GET", "/v2/topics").status == 200, "reads are open on a server without tokens")
        let refused = try await f.call("POST", "/v2/topics", json: #"{"name":"a"}"#)
        #expect(refused.status == 401 && refused.errorCode == "unauthorized" && refused.headers["www-authenticate"] != nil)
        #expect(try await f.call("POST", "/v2/topics", token: "guess", json: #"{"name":"a"}"#).status == 401)
        #expect(try await f.call("POST", "/v2/topics", token: "local-secret", json: #"{"name":"a"}"#).status == 201)
        #expect(try await f.call("DELETE", "/v2/topics/a").status == 401)
        #expect(f.broker.listTopics().map(\.name) == ["a"])
        await f.shutdown()
    }

    @Test func theLocalAdminTokenIsMadeOnceAndReadableByItsOwnerOnly() throws {
        let dir = TemporaryDirectory("chime-admin-token")
        let token = try LocalAdminToken.loadOrCreate(directory: dir.path)
        #expect(token.count == 64 && token.allSatisfy(\.isHexDigit))
        #expect(try LocalAdminToken.loadOrCreate(directory: dir.path) == token, "the same after a restart")
        let mode = try FileManager.default.attributesOfItem(atPath: dir.path + "/admin-token")[.posixPermissions] as? Int
        #expect(mode == 0o600)
    }

    @Test func scopesAndTopicPatternsAreCheckedForEveryWriteOnTheAdminPort() async throws {
        let f = try await Fixture(tokens: ["root", "read:reader", "publish@orders.*:producer", "admin@orders.*:ops"])
        for topic in ["orders.eu", "billing"] { _ = try f.broker.createTopic(topic) }
        _ = try await f.broker.acquireLock("any", holder: "h", ttlMilliseconds: 60_000, waitMilliseconds: 0)
        let publish = #"{"body":"x"}"#
        // (token, method, path, body, expected status)
        let cases: [(String?, String, String, String?, Int)] = [
            (nil, "GET", "/v2/topics", nil, 401),
            ("reader", "GET", "/v2/topics/billing", nil, 200),
            ("reader", "POST", "/v2/topics/billing/messages", publish, 403),
            ("producer", "POST", "/v2/topics/orders.eu/messages", publish, 201),
            ("producer", "POST", "/v2/topics/billing/messages", publish, 403),
            ("producer", "GET", "/v2/topics/billing", nil, 403),
            ("producer", "POST", "/v2/topics", #"{"name":"orders.us"}"#, 403),
            ("producer", "DELETE", "/v2/topics/orders.eu", nil, 403),
            ("producer", "GET", "/v2/locks", nil, 403),
            ("ops", "POST", "/v2/topics", #"{"name":"orders.us"}"#, 201),
            ("ops", "POST", "/v2/topics", #"{"name":"billing.us"}"#, 403),
            ("ops", "DELETE", "/v2/topics/billing", nil, 403),
            ("ops", "DELETE", "/v2/locks/any", nil, 403),
            ("ops", "DELETE", "/v2/topics/orders.us", nil, 204),
            ("root", "DELETE", "/v2/locks/any", nil, 204),
        ]
        for (token, method, path, body, expected) in cases {
            let reply = try await f.call(method, path, token: token, json: body)
            #expect(reply.status == expected, "\(token ?? "no token") \(method) \(path): \(reply.status) \(reply.body)")
            if expected == 403 { #expect(reply.errorCode == "forbidden") }
        }
        let seen = try await f.call("GET", "/v2/topics", token: "producer")
        #expect((seen.json["topics"] as? [[String: Any]])?.compactMap { $0["name"] as? String } == ["orders.eu"], "a listing shows what the token sees")
        #expect(f.broker.listTopics().map(\.name).sorted() == ["billing", "orders.eu"])
        await f.shutdown()
    }

    @Test func scopesAndTopicPatternsAreCheckedPerRequestOnTheBrokerPort() async throws {
        let f = try await Fixture(tokens: ["read:reader", "publish@orders.*:producer", "admin:root"])
        let root = f.client(token: "root")
        _ = try await root.createTopic("orders.eu")
        _ = try await root.createTopic("billing")

        let producer = f.client(token: "producer")
        try await producer.publish(Array("ok".utf8), to: "orders.eu")
        await expectForbidden { _ = try await producer.tryAcquire("leader", ttl: .seconds(10)) }
        await expectForbidden { try await producer.publish(Array("no".utf8), to: "billing") }
        await expectForbidden { _ = try await producer.stats(topics: ["billing"]) }
        await expectForbidden { try await producer.deleteTopic("orders.eu") }
        #expect(try await producer.stats().topics.map(\.topic.name) == ["orders.eu"], "stats of all show only what the token sees")
        #expect(try await producer.topics().map(\.name) == ["orders.eu"])

        let reader = f.client(token: "reader")
        #expect(try await reader.stats().topics.count == 2)
        await expectForbidden { try await reader.publish(Array("no".utf8), to: "orders.eu") }
        // The connection stays open after a refusal.
        #expect(try await reader.topics().count == 2)
        for c in [root, producer, reader] { await c.close() }
        #expect(try await f.broker.partitionStats(topic: "billing").reduce(Int64(0)) { $0 + $1.logEnd } == 0, "nothing refused was stored")
        await f.shutdown()
    }

    @Test func badInputGetsATypedErrorAndNothingChanges() async throws {
        let f = try await Fixture(tokens: ["root"])
        _ = try f.broker.createTopic("t")
        let cases: [(String, String, String?, Int, String)] = [
            ("POST", "/v2/topics", "not json", 400, "badJSON"),
            ("POST", "/v2/topics", #"{"partitions":2}"#, 400, "badJSON"),
            ("POST", "/v2/topics", #"{"name":"bad name!"}"#, 400, "invalidName"),
            ("POST", "/v2/topics/t/messages", #"{}"#, 400, "invalidArgument"),
            ("POST", "/v2/topics/t/messages", #"{"body":"a","bodyBase64":"YQ=="}"#, 400, "invalidArgument"),
            ("POST", "/v2/topics/t/messages", #"{"body":"a","delayMs":-1}"#, 400, "invalidArgument"),
            ("POST", "/v2/topics/t/messages", #"{"body":"a","delayMs":9223372036854775807}"#, 400, "invalidArgument"),
            ("POST", "/v2/topics/t/messages", #"{"body":"a","at":"tomorrow"}"#, 400, "badJSON"),
            ("POST", "/v2/topics/t/messages", #"{"body":"a","partition":99}"#, 400, "badPartition"),
            ("POST", "/v2/topics/nope/messages", #"{"body":"a"}"#, 201, ""),
            ("GET", "/v2/messages/not-an-id", nil, 400, "invalidArgument"),
            ("GET", "/v2/messages/99-0-r1", nil, 404, "unknownMessage"),
            ("GET", "/v2/topics/t/partitions/-1/messages", nil, 400, "invalidArgument"),
            ("GET", "/v2/topics/t/partitions/0/messages?from=x", nil, 400, "invalidArgument"),
            ("GET", "/v2/topics?limit=0", nil, 400, "invalidArgument"),
            ("GET", "/v2/topics?limit=1000000", nil, 400, "invalidArgument"),
            ("GET", "/v2/groups/none", nil, 404, "unknownGroup"),
            ("GET", "/v2/schedules/none?upcoming=5000", nil, 400, "invalidArgument"),
            ("POST", "/v2/groups/none/dead-letters/redrive", "{}", 404, "unknownGroup"),
            ("GET", "/v2/nowhere", nil, 404, "notFound"),
            ("PUT", "/v2/topics", "{}", 404, "notFound"),
        ]
        for (method, path, body, status, code) in cases {
            let reply = try await f.call(method, path, token: "root", json: body)
            #expect(reply.status == status, "\(method) \(path) \(body ?? ""): \(reply.status) \(reply.body)")
            if !code.isEmpty { #expect(reply.errorCode == code, "\(method) \(path): \(reply.body)") }
        }
        #expect(try await f.broker.partitionStats(topic: "t").reduce(Int64(0)) { $0 + $1.logEnd } == 0)
        // A body past the limit: the connection is closed rather than the body read.
        let huge = String(repeating: "a", count: 3 << 20)
        let refused = try? await f.call("POST", "/v2/topics/t/messages", token: "root", json: #"{"body":"\#(huge)"}"#)
        #expect(refused == nil || refused?.status == 413, "\(refused?.status ?? 0)")
        #expect(try await f.call("GET", "/v2/topics/t", token: "root").status == 200, "the server serves on")
        await f.shutdown()
    }

    @Test func theServedDocumentIsTheRepositorysCopyAndNamesEveryRoute() async throws {
        let f = try await Fixture(tokens: ["root"])
        let served = try await f.call("GET", "/v2/openapi.json", token: "root")
        #expect(served.status == 200)
        let repository = try Data(contentsOf: URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../docs/openapi.json"))
        let a = try JSONSerialization.jsonObject(with: Data(served.body.utf8)) as? NSDictionary
        let b = try JSONSerialization.jsonObject(with: repository) as? NSDictionary
        #expect(a != nil && a == b, "docs/openapi.json and the served document differ: run `make openapi`")
        // Every documented path answers something other than "no such endpoint".
        let paths = try #require(a?["paths"] as? [String: [String: Any]])
        for (path, operations) in paths {
            let concrete = path.replacingOccurrences(of: "{partition}", with: "0").replacingOccurrences(of: "{topic}", with: "t")
                .replacingOccurrences(of: "{id}", with: "1-0-r0").replacingOccurrences(of: "{flow}", with: "1-0-f0")
                .replacingOccurrences(of: "{token}", with: "x").replacingOccurrences(of: "{group}", with: "g").replacingOccurrences(of: "{name}", with: "n")
            for method in operations.keys where ["get", "post", "delete"].contains(method) {
                let reply = try await f.call(method.uppercased(), concrete, token: "root", json: method == "post" ? "{}" : nil)
                #expect(reply.errorCode != "notFound" && reply.errorCode != "methodNotAllowed", "\(method) \(path): \(reply.body)")
            }
        }
        await f.shutdown()
    }
}

private func expectForbidden(_ body: () async throws -> Void, sourceLocation: SourceLocation = #_sourceLocation) async {
    do {
        try await body()
        Issue.record("went through", sourceLocation: sourceLocation)
    } catch let error as ClientError {
        #expect(error.wireCode == .forbidden, "\(error)", sourceLocation: sourceLocation)
    } catch {
        Issue.record("\(error)", sourceLocation: sourceLocation)
    }
}

/// One HTTP/1.1 request with a JSON body, over a new connection.
func httpRequest(
    port: Int, method: String, _ path: String, headers: [String: String] = [:], body: String? = nil, contentType: String = "application/json"
) async throws -> HTTPReply {
    let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
        .connect(host: "127.0.0.1", port: port) { ch in
            ch.eventLoop.makeCompletedFuture { try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: ch) }
        }
    let bytes = try await channel.executeThenClose { inbound, outbound in
        var request = "\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        for (name, value) in headers { request += "\(name): \(value)\r\n" }
        if let body { request += "Content-Type: \(contentType)\r\nContent-Length: \(body.utf8.count)\r\n" }
        request += "\r\n" + (body ?? "")
        try await outbound.write(ByteBuffer(string: request))
        var bytes: [UInt8] = []
        for try await chunk in inbound { bytes += chunk.readableBytesView }
        return bytes
    }
    return try HTTPReply(parsing: bytes)
}

/// Runs a program to its end off the cooperative pool; its exit status and what it wrote
/// to standard output and error together.
func runCapturingOutput(_ executable: String, _ arguments: [String], directory: String? = nil) async -> (status: Int32, output: String) {
    await offThePool {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: executable)
        p.arguments = arguments
        if let directory { p.currentDirectoryURL = URL(fileURLWithPath: directory) }
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = pipe
        do { try p.run() } catch { return (Int32(-1), "\(error)") }
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: data, as: UTF8.self))
    }
}
