import ChimeBroker
import ChimeClient
import ChimeProtocol
import ChimeServer
import ChimeTestSupport
import Foundation
import Logging
import NIOCore
import Synchronization
import Testing

/// Defects found reviewing the network layer (issue 5), each shown against a real server on
/// 127.0.0.1 (through the response-cutting proxy where an answer must be lost).
@Suite struct ReviewSession5Tests {
    private var logger: Logger {
        var l = Logger(label: "review-test")
        l.logLevel = .critical
        return l
    }

    private func oneLog(_ name: String, _ client: ChimeClient) async throws {
        try await client.createTopic(
            name,
            settings: WireTopicSettings(
                partitions: 1, retentionMilliseconds: nil, retentionBytes: nil, maxMessageBytes: 1 << 20, maxAttempts: 5,
                dedupWindowMilliseconds: 60_000))
    }

    private func stored(_ topic: String, _ f: ServerFixture) async throws -> Int64 {
        try await f.broker.partitionStats(topic: topic).reduce(0) { $0 + $1.logEnd - $1.readyStart }
    }

    /// An idempotent batch whose answers were all lost is reported as failed, but the
    /// broker may have stored it. The lane must not send its next batch under the same
    /// stamp: the broker would take that batch for a repeat of the stored one, answer it
    /// with the first one's ids and store nothing.
    @Test func aBatchGivenUpAfterLostAnswersDoesNotSwallowTheNextOne() async throws {
        let f = try await ServerFixture()
        let proxy = try await CuttingProxy(to: f.server.port)
        let client = ChimeClient(ClientOptions(port: proxy.port, producer: ProducerOptions(maxAttempts: 1)), logger: logger)
        try await oneLog("orders", client)
        let first = try await client.publish(Array("first".utf8), to: "orders")

        proxy.cutNextResponses(1)
        do {
            try await client.publish(Array("second".utf8), to: "orders")
            Issue.record("a publish whose only answer was lost succeeded")
        } catch let e as ClientError {
            #expect(e.isDisconnected)
        }
        #expect(try await stored("orders", f) == 2, "the broker stored it; only its answer was lost")

        let third = try await client.publish(Array("third".utf8), to: "orders")
        #expect(third != first)
        #expect(try await stored("orders", f) == 3, "the next publish is stored, not taken for a repeat")
        await client.close()
        await proxy.close()
        await f.shutdown()
    }

    /// Without idempotence a batch cut off by a lost connection fails (the documented
    /// contract): sending its callers' parts again would store them twice.
    @Test func withoutIdempotenceAMergedBatchCutOffIsNotSentAgain() async throws {
        let f = try await ServerFixture()
        let proxy = try await CuttingProxy(to: f.server.port)
        // The linger gathers the concurrent calls below into one batch.
        let client = ChimeClient(
            ClientOptions(port: proxy.port, producer: ProducerOptions(idempotent: false, linger: .milliseconds(300))), logger: logger)
        try await oneLog("orders", client)
        try await client.publish(Array("first".utf8), to: "orders")

        proxy.cutNextResponses(1)
        let callers = 20
        let failures = await withTaskGroup(of: Bool.self) { group in
            for i in 0..<callers {
                group.addTask {
                    do {
                        try await client.publish(Array("m\(i)".utf8), to: "orders")
                        return false
                    } catch {
                        return true
                    }
                }
            }
            return await group.reduce(0) { $0 + ($1 ? 1 : 0) }
        }
        #expect(failures >= 1, "the cut answer failed its callers")
        #expect(try await stored("orders", f) == Int64(1 + callers), "each message stored once")
        await client.close()
        await proxy.close()
        await f.shutdown()
    }

    /// `close()` says publishes still waiting fail with a lost-connection error; a closed
    /// client must not open a new connection for them (one nobody would ever close).
    @Test func aClosedClientDoesNotConnectAgain() async throws {
        let f = try await ServerFixture()
        let client = ChimeClient(ClientOptions(port: f.server.port, producer: ProducerOptions(linger: .milliseconds(200))), logger: logger)
        try await oneLog("orders", client)
        try await client.publish(Array("first".utf8), to: "orders")
        let waiting = Task { try await client.publish(Array("waiting".utf8), to: "orders") }
        await client.close()
        do {
            _ = try await waiting.value
            Issue.record("a publish waiting at close() went out over a new connection")
        } catch let e as ClientError {
            #expect(e.isDisconnected)
        }
        do {
            _ = try await client.topics()
            Issue.record("a closed client connected again")
        } catch let e as ClientError {
            #expect(e.isDisconnected)
        }
        #expect(try await stored("orders", f) == 1)
        await f.shutdown()
    }

    /// Graceful shutdown answers the requests a connection has read, held ones included:
    /// requests read while the connection was over its budget wait in order, and a drain
    /// must start them as the ones ahead are answered, not drop them.
    @Test func aDrainAnswersTheRequestsHeldOverBudget() async throws {
        let f = try await ServerFixture(ServerOptions(port: 0, maxInFlightPerConnection: 1))
        let c = try await f.client()
        _ = try await c.call(.createTopic, CreateTopic(name: "t", settings: nil), as: WireTopic.self)
        _ = try await c.call(.createTopic, CreateTopic(name: "empty", settings: nil), as: WireTopic.self)
        let m = try await c.call(.join, Join(group: "g", member: "w", topics: ["empty"]), as: WireMembership.self)
        // Three requests in one write, so one read takes them all: the first starts, the
        // other two are held (one request in progress at most).
        var bytes = ByteBuffer()
        Frame(opcode: .publish, correlationID: 100, payload: Publish(topic: "t", records: [OutgoingRecord(body: Array("w".utf8))]).payload())
            .write(to: &bytes)
        Frame(opcode: .fetch, correlationID: 101, payload: Fetch(group: "g", memberID: m.memberID, max: 1, waitMilliseconds: 500).payload())
            .write(to: &bytes)
        Frame(opcode: .publish, correlationID: 102, payload: Publish(topic: "t", records: [OutgoingRecord(body: Array("a".utf8))]).payload())
            .write(to: &bytes)
        await c.send(Array(bytes.readableBytesView))
        // The first answer means all three were read; the fetch now waits, the last is held.
        #expect(try #require(await c.readFrame()).correlationID == 100)
        let server = f.server
        let draining = Task { await server.shutdown() }
        var answered: [UInt32] = []
        while let frame = await c.readFrame() { answered.append(frame.correlationID) }
        await draining.value
        #expect(answered == [101, 102], "every request read is answered before the connection closes")
        #expect(try await f.broker.partitionStats(topic: "t").reduce(0) { $0 + $1.logEnd - $1.readyStart } == answered.count)
        await f.shutdown()
    }

    /// `retention_hours = 72` is how anyone writes whole hours in TOML; it was refused with
    /// "Key 'retention_hours' not found". And a value of the wrong type is named as such.
    @Test func aConfigurationFileTakesWholeHoursAndNamesWrongTypes() throws {
        let dir = TemporaryDirectory("chime-review-config")
        let toml = dir.file("chime.toml")
        try "retention_hours = 72\npartitions = 8\n".write(toFile: toml, atomically: true, encoding: .utf8)
        let c = try ServeConfiguration.load(file: toml)
        #expect(c.retentionHours == 72 && c.partitions == 8)

        let wrong = dir.file("wrong.toml")
        try "port = 7420.5\n".write(toFile: wrong, atomically: true, encoding: .utf8)
        do {
            _ = try ServeConfiguration.load(file: wrong)
            Issue.record("a fractional port was taken")
        } catch {
            #expect("\(error)".contains("port has the wrong type"), "\(error)")
        }
    }

    /// `chime topics create` says unset settings take the broker's defaults for new topics;
    /// it sent its own (4 partitions, 7 days) whatever `chime serve` was told.
    @Test func topicsCreateWithoutSettingsTakesTheBrokersDefaults() async throws {
        let dir = TemporaryDirectory("chime-review-create")
        let server = try await Task.detached {
            try ServeProcess(data: dir.file("data"), port: 0, extra: ["--partitions", "2", "--retention-hours", "5"])
        }.value
        let at = ["--port", "\(server.port)"]
        let created = try await Task.detached { try run(builtProduct("chime"), ["topics", "create", "plain"] + at, withErrors: true) }.value
        #expect(created.status == 0, "\(created.output)")
        let explicit = try await Task.detached {
            try run(builtProduct("chime"), ["topics", "create", "wide", "--partitions", "6"] + at, withErrors: true)
        }.value
        #expect(explicit.status == 0, "\(explicit.output)")
        let client = ChimeClient(ClientOptions(port: server.port), logger: logger)
        let topics = try await client.topics()
        let plain = try #require(topics.first { $0.name == "plain" })
        #expect(plain.settings.partitions == 2 && plain.settings.retentionMilliseconds == 5 * 3_600_000, "the broker's defaults")
        #expect(topics.first { $0.name == "wide" }?.settings.partitions == 6)
        await client.close()
        _ = await Task.detached { server.stop() }.value
    }

    /// An idle timeout of 0 closes every connection the moment it opens, a connection
    /// limit of 0 refuses all, a frame limit of 0 refuses every frame: a broker that starts
    /// and serves nobody. `chime serve` must refuse such settings by name, like the others.
    @Test func serveRefusesConnectionSettingsThatServeNobody() async throws {
        for (variable, name) in [
            ("CHIME_IDLE_TIMEOUT_SECONDS", "idle"), ("CHIME_MAX_CONNECTIONS", "connections"), ("CHIME_MAX_FRAME_BYTES", "frame"),
            ("CHIME_MAX_UNAUTHENTICATED_CONNECTIONS", "unauthenticated"), ("CHIME_HELLO_TIMEOUT_SECONDS", "hello timeout"),
            ("CHIME_MAX_HELLO_BYTES", "hello limit"),
        ] {
            let dir = TemporaryDirectory("chime-review-serve")
            var env = ProcessInfo.processInfo.environment
            env[variable] = "0"
            let server = try await Task.detached { try ServeProcess(data: dir.file("data"), port: 0, environment: env) }.value
            let (status, _) = await Task.detached { server.stop() }.value
            #expect(server.port == -1 && status != 0, "\(variable)=0 refused at start, not served (\(name))")
        }
    }

    /// A frame over the server's limit gets a connection-level error (correlation id 0)
    /// and the connection closes. Every other request waiting on that connection lost its
    /// answer, whatever the broker did with it: it must fail as disconnected (so a consumer
    /// joins again and an idempotent lane retries), not with the other request's error
    /// code, which ended a consumer's iteration with "frame too large".
    @Test func anotherRequestsFramingErrorDoesNotEndAConsumer() async throws {
        let f = try await ServerFixture(ServerOptions(port: 0, maxFrameBytes: 64 << 10))
        let client = ChimeClient(ClientOptions(port: f.server.port, producer: ProducerOptions(maxAttempts: 1)), logger: logger)
        try await oneLog("jobs", client)
        let consumer = Task { () -> String in
            for try await m in client.consume(group: "g", topics: ["jobs"]) {
                try await m.ack()
                return String(decoding: m.body, as: UTF8.self)
            }
            return ""
        }
        // Joined: its long-polling fetch goes out next and waits on the broker.
        while ((try? await f.broker.groupStats("g"))?.members ?? 0) < 1 { try await Task.sleep(for: .milliseconds(10)) }
        try await Task.sleep(for: .milliseconds(200))
        do {
            _ = try await client.publish([OutgoingRecord(body: [UInt8](repeating: 1, count: 100_000))], to: "jobs", partition: 0)
            Issue.record("a frame over the server's limit was taken")
        } catch let e as ClientError {
            #expect(e.message.contains("over the limit"), "the broker's reason is kept: \(e)")
        }
        try await client.publish(Array("after".utf8), to: "jobs")
        #expect(try await consumer.value == "after")
        await client.close()
        await f.shutdown()
    }

    /// `shutdown(gracePeriod:)` closes connections still busy when the grace period ends.
    /// It waited for them instead (until a long fetch answered by itself, however long),
    /// because the wait for their closing was a child task that cancellation does not stop.
    @Test func theGracePeriodBoundsAShutdown() async throws {
        let f = try await ServerFixture()
        let c = try await f.client()
        _ = try await c.call(.createTopic, CreateTopic(name: "empty", settings: nil), as: WireTopic.self)
        let m = try await c.call(.join, Join(group: "g", member: "w", topics: ["empty"]), as: WireMembership.self)
        // A fetch that waits up to 10 s for a message that never comes.
        await c.send(.fetch, Fetch(group: "g", memberID: m.memberID, max: 1, waitMilliseconds: 10_000))
        // The join answered, so the connection is read; the fetch frame follows it.
        try await Task.sleep(for: .milliseconds(200))
        let server = f.server
        let stopping = Task { await server.shutdown(gracePeriod: .milliseconds(100)) }
        let answer = await c.readFrame()
        #expect(answer == nil, "closed at the end of the grace period, before the fetch's own deadline")
        await stopping.value
        await f.shutdown()
    }

    /// Stats of all topics while another client deletes some: a topic deleted between the
    /// listing and its counts is left out (as the admin port does), not an error for a
    /// name the caller never asked about.
    @Test func statsOfAllTopicsSkipTopicsDeletedMeanwhile() async throws {
        let f = try await ServerFixture()
        let client = ChimeClient(ClientOptions(port: f.server.port), logger: logger)
        let topics = 60
        for i in 0..<topics { try await client.createTopic("t\(i)") }
        let deleter = ChimeClient(ClientOptions(port: f.server.port, name: "deleter"), logger: logger)
        let done = Mutex(false)
        let deleting = Task {
            defer { done.withLock { $0 = true } }
            for i in 0..<topics { try await deleter.deleteTopic("t\(i)") }
        }
        var failures: [String] = []
        while !done.withLock({ $0 }) {
            do {
                _ = try await client.stats()
            } catch {
                failures.append("\(error)")
            }
        }
        try await deleting.value
        #expect(failures.isEmpty, "\(failures.first ?? "")")
        await deleter.close()
        await client.close()
        await f.shutdown()
    }

    /// An empty `CHIME_TOKENS` (a unit file's `CHIME_TOKENS=${UNSET}`) overrode the file's
    /// tokens with none: the broker served without authentication, silently but for the
    /// warning on non-loopback hosts. An empty list from the environment is no setting.
    @Test func anEmptyTokensVariableDoesNotTurnAuthenticationOff() throws {
        let dir = TemporaryDirectory("chime-review-tokens")
        let toml = dir.file("chime.toml")
        try "host = \"0.0.0.0\"\ntokens = [\"s3cret\"]\n".write(toFile: toml, atomically: true, encoding: .utf8)
        for empty in ["", " , "] {
            let c = try ServeConfiguration.resolve(file: toml, environment: ["CHIME_TOKENS": empty], flags: ServeConfiguration())
            #expect(c.tokens == ["s3cret"], "CHIME_TOKENS='\(empty)'")
        }
        let set = try ServeConfiguration.resolve(file: toml, environment: ["CHIME_TOKENS": "other"], flags: ServeConfiguration())
        #expect(set.tokens == ["other"])
    }
}
