import ChimeBroker
import ChimeClient
import ChimeProtocol
import ChimeServer
import ChimeWheel
import Logging
import Testing

/// The Swift client against a real server on 127.0.0.1.
@Suite struct ClientTests {
    private var logger: Logger {
        var l = Logger(label: "client-test")
        l.logLevel = .critical
        return l
    }

    /// A new client asked 32 things at once opens one connection, not one per request
    /// (the extra ones were never closed).
    @Test func concurrentFirstRequestsShareOneConnection() async throws {
        let f = try await ServerFixture()
        let client = ChimeClient(ClientOptions(port: f.server.port), logger: logger)
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            for _ in 0..<32 { tasks.addTask { _ = try await client.topics() } }
            try await tasks.waitForAll()
        }
        #expect(f.server.connectionCount == 1, "\(f.server.connectionCount) connections for one client")
        await client.close()
        await f.shutdown()
    }

    @Test func publishAndConsumeWithTwoConsumersInOneGroup() async throws {
        let f = try await ServerFixture()
        let client = ChimeClient(ClientOptions(port: f.server.port), logger: logger)
        try await client.createTopic("jobs", settings: WireTopicSettings(partitions: 4, retentionMilliseconds: nil, retentionBytes: nil, maxMessageBytes: 1 << 20, maxAttempts: 5, dedupWindowMilliseconds: 60_000))
        // Two consumers of one group share the partitions; together they get everything once.
        // Both join before anything is published: a member joining later moves partitions,
        // and what the first member had in hand there (fetched, or acked and not yet
        // answered) goes to the new owner again — at least once, which is not what this
        // test is about.
        let seen = Seen()
        let port = f.server.port
        let logger = self.logger
        var expected = Set<String>()
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            for name in ["a", "b"] {
                tasks.addTask {
                    let consumer = ChimeClient(ClientOptions(port: port, name: name), logger: logger)
                    for try await m in consumer.consume(group: "g", topics: ["jobs"], prefetch: 10) {
                        let body = String(decoding: m.body, as: UTF8.self)
                        // On the broker's clock, which delays and due times are kept on (a fresh
                        // reading of the wall clock can differ from it by a step of the VM's clock).
                        if body == "later" { #expect(m.delivery.deliveredAt >= m.delivery.dueAt, "not before its due time") }
                        try await m.ack()
                        if await seen.add(body) >= 41 { break }
                    }
                    await consumer.close()
                }
            }
            while true {
                let stats = try? await f.broker.groupStats("g")
                if stats?.members == 2 && stats?.partitions.compactMap(\.owner).count == 4 { break }
                try await Task.sleep(for: .milliseconds(10))
            }
            let now = SystemWheelClock().now()
            for i in 0..<40 {
                try await client.publish(Array("m\(i)".utf8), to: "jobs", key: Array("k\(i)".utf8))
                expected.insert("m\(i)")
            }
            try await client.publish(Array("later".utf8), to: "jobs", deliverAt: now + 300)
            expected.insert("later")
            // The other consumer may still be waiting when everything is in: stop it.
            while await seen.count < 41 { try await Task.sleep(for: .milliseconds(10)) }
            tasks.cancelAll()
            try? await tasks.waitForAll()
        }
        #expect(await seen.all == expected)
        #expect(await seen.duplicates.isEmpty)
        await client.close()
        await f.shutdown()
    }

    @Test func nackRetriesAndErrorsComeBackTyped() async throws {
        let f = try await ServerFixture()
        let client = ChimeClient(ClientOptions(port: f.server.port), logger: logger)
        try await client.publish(Array("flaky".utf8), to: "t")
        var attempts: [Int] = []
        for try await m in client.consume(group: "g", topics: ["t"]) {
            attempts.append(m.attempt)
            if m.attempt == 1 {
                try await m.nack(delay: 50, reason: "try again")
            } else {
                try await m.ack()
                break
            }
        }
        #expect(attempts == [1, 2])
        do {
            _ = try await client.publish([OutgoingRecord(body: [1])], to: "t", partition: 99)
            Issue.record("bad partition accepted")
        } catch let e as ClientError {
            #expect(e.code == 103)
        }
        await client.close()
        await f.shutdown()
    }

    @Test func aWrongTokenFailsAtOnceAndTheRightOneWorks() async throws {
        let f = try await ServerFixture(ServerOptions(port: 0, tokens: ["s3cret"]))
        let wrong = ChimeClient(ClientOptions(port: f.server.port, token: "nope"), logger: logger)
        do {
            _ = try await wrong.topics()
            Issue.record("a wrong token was accepted")
        } catch let e as ClientError {
            #expect(e.code == 7)
        }
        let right = ChimeClient(ClientOptions(port: f.server.port, token: "s3cret"), logger: logger)
        #expect(try await right.topics().isEmpty)
        await wrong.close()
        await right.close()
        await f.shutdown()
    }

    @Test func theClientReconnectsAfterTheServerComesBack() async throws {
        let f = try await ServerFixture()
        let port = f.server.port
        let client = ChimeClient(ClientOptions(port: port, connectAttempts: 20), logger: logger)
        try await client.publish(Array("one".utf8), to: "t")
        await f.server.stop()
        let again = try await ChimeServer.start(broker: f.broker, options: ServerOptions(port: port), logger: logger)
        // A request sent on the old connection before the client noticed it closing fails
        // as disconnected (the client does not repeat requests on its own); the next one
        // goes over a new connection.
        var sent = false
        for _ in 0..<3 where !sent {
            do {
                try await client.publish(Array("two".utf8), to: "t")
                sent = true
            } catch let e as ClientError where e.isDisconnected {}
        }
        #expect(sent)
        #expect(try await client.topics().map(\.name) == ["t"])
        await client.close()
        await again.stop()
        await f.broker.close()
    }
}

actor Seen {
    private(set) var all = Set<String>()
    private(set) var duplicates: [String] = []
    var count: Int { all.count }
    func add(_ s: String) -> Int {
        if !all.insert(s).inserted { duplicates.append(s) }
        return all.count
    }
}
