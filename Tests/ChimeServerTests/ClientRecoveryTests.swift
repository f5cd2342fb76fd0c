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

/// The client after a lost answer, a cut-off batch, a close or another request's framing
/// error: nothing stored twice, nothing swallowed, no connection opened for nobody, each
/// against a real server on 127.0.0.1 (through the response-cutting proxy where an answer
/// must be lost).
@Suite struct ClientRecoveryTests {
    private var logger: Logger {
        var l = Logger(label: "client-recovery-test")
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
}
