import ChimeBroker
import ChimeClient
import ChimeProtocol
import ChimeServer
import ChimeWheel
import Logging
import ServiceLifecycle
import Testing

/// The client's producer (batching, idempotence, routing), batched acks, stats over the
/// protocol, and the client as a lifecycle service; against a real server on 127.0.0.1.
@Suite struct ProducerTests {
    private var logger: Logger {
        var l = Logger(label: "producer-test")
        l.logLevel = .critical
        return l
    }

    private func settings(partitions: UInt32, maxMessageBytes: UInt32 = 1 << 20) -> WireTopicSettings {
        WireTopicSettings(
            partitions: partitions, retentionMilliseconds: nil, retentionBytes: nil, maxMessageBytes: maxMessageBytes, maxAttempts: 5,
            dedupWindowMilliseconds: 60_000)
    }

    /// Everything in the topic's ready logs, read by a fresh group: body → times seen.
    private func drain(_ topic: String, port: Int, expecting count: Int) async throws -> [String: Int] {
        let reader = ChimeClient(ClientOptions(port: port, name: "reader"), logger: logger)
        var seen: [String: Int] = [:]
        var total = 0
        for try await m in reader.consume(group: "reader-\(topic)", topics: [topic], prefetch: 500) {
            seen[String(decoding: m.body, as: UTF8.self), default: 0] += 1
            try await m.ack()
            total += 1
            if total == count { break }
        }
        await reader.close()
        return seen
    }

    private func stored(_ topic: String, _ f: ServerFixture) async throws -> Int64 {
        try await f.broker.partitionStats(topic: topic).reduce(0) { $0 + $1.logEnd - $1.readyStart }
    }

    @Test func aLostAnswerIsSentAgainAndStoredOnce() async throws {
        let f = try await ServerFixture()
        let proxy = try await CuttingProxy(to: f.server.port)
        let client = ChimeClient(ClientOptions(port: proxy.port), logger: logger)
        try await client.createTopic("orders", settings: settings(partitions: 2))
        try await client.publish(Array("first".utf8), to: "orders")

        // The broker stores the batch; its answer is lost with the connection. The client
        // connects again and sends the same stamped batch: the broker knows it.
        proxy.cutNextResponses(1)
        let records = (0..<50).map { OutgoingRecord(key: Array("k\($0 % 7)".utf8), body: Array("m\($0)".utf8)) }
        let outcomes = try await client.publish(records, to: "orders")
        #expect(proxy.cuts == 1)
        #expect(outcomes.count == 50 && outcomes.allSatisfy { $0.id != nil })
        #expect(outcomes.contains { $0.duplicate }, "the repeat was recognised")
        #expect(Set(outcomes.map { $0.id! }).count == 50)
        #expect(try await stored("orders", f) == 51, "stored once")
        let seen = try await drain("orders", port: f.server.port, expecting: 51)
        #expect(seen.count == 51 && seen.values.allSatisfy { $0 == 1 })
        await client.close()
        await proxy.close()
        await f.shutdown()
    }

    @Test func withoutIdempotenceALostAnswerIsTheCallersToDecide() async throws {
        let f = try await ServerFixture()
        let proxy = try await CuttingProxy(to: f.server.port)
        let client = ChimeClient(ClientOptions(port: proxy.port, producer: ProducerOptions(idempotent: false)), logger: logger)
        try await client.createTopic("orders", settings: settings(partitions: 1))
        try await client.publish(Array("first".utf8), to: "orders")
        proxy.cutNextResponses(1)
        do {
            try await client.publish(Array("second".utf8), to: "orders")
            Issue.record("a publish whose answer was lost succeeded without idempotence")
        } catch let e as ClientError {
            #expect(e.isDisconnected)
        }
        // It was stored all the same: the caller could not know, which is why idempotence
        // is the default.
        #expect(try await stored("orders", f) == 2)
        await client.close()
        await proxy.close()
        await f.shutdown()
    }

    @Test func concurrentPublishersShareBatchesRouteLikeTheBrokerAndKeepKeyOrder() async throws {
        let f = try await ServerFixture()
        let client = ChimeClient(ClientOptions(port: f.server.port), logger: logger)
        try await client.createTopic("events", settings: settings(partitions: 4))
        let tasks = 40
        let perTask = 25
        try await withThrowingTaskGroup(of: Void.self) { group in
            for t in 0..<tasks {
                group.addTask {
                    for i in 0..<perTask {
                        let key = Array("user-\(t)".utf8)
                        let id = try await client.publish(Array("\(t):\(i)".utf8), to: "events", key: key)
                        #expect(Int(id.partition) == Broker.partition(forKey: key, partitions: 4), "routed as the broker routes")
                    }
                }
            }
            try await group.waitForAll()
        }
        #expect(try await stored("events", f) == Int64(tasks * perTask))
        // One partition per key, read in order: each publisher's messages arrive in the
        // order it published them.
        let reader = ChimeClient(ClientOptions(port: f.server.port, name: "reader"), logger: logger)
        var last: [Int: Int] = [:]
        var total = 0
        for try await m in reader.consume(group: "ordered", topics: ["events"], prefetch: 1_000) {
            let parts = String(decoding: m.body, as: UTF8.self).split(separator: ":").map { Int($0)! }
            #expect(parts[1] == (last[parts[0]] ?? -1) + 1, "publisher \(parts[0]) in order")
            last[parts[0]] = parts[1]
            try await m.ack()
            total += 1
            if total == tasks * perTask { break }
        }
        #expect(last.count == tasks && last.values.allSatisfy { $0 == perTask - 1 })
        await reader.close()
        await client.close()
        await f.shutdown()
    }

    @Test func aRefusedMessageFailsOnlyItsOwnCaller() async throws {
        let f = try await ServerFixture()
        let client = ChimeClient(ClientOptions(port: f.server.port), logger: logger)
        try await client.createTopic("small", settings: settings(partitions: 1, maxMessageBytes: 1_000))
        let results = try await withThrowingTaskGroup(of: (Int, ClientError?).self) { group in
            for i in 0..<30 {
                group.addTask {
                    do {
                        try await client.publish([UInt8](repeating: 65, count: i == 17 ? 5_000 : 100), to: "small")
                        return (i, nil)
                    } catch let e as ClientError {
                        return (i, e)
                    }
                }
            }
            return try await group.reduce(into: [Int: ClientError?]()) { $0[$1.0] = $1.1 }
        }
        #expect(results[17]??.code == 104, "message too large")
        #expect(results.filter { $0.key != 17 }.allSatisfy { $0.value == nil })
        #expect(try await stored("small", f) == 29)
        // The lane goes on: sequences were not disturbed by the refusal.
        try await client.publish(Array("after".utf8), to: "small")
        #expect(try await stored("small", f) == 30)
        await client.close()
        await f.shutdown()
    }

    @Test func acksTravelTogetherAndEachGetsItsOwnResult() async throws {
        let f = try await ServerFixture()
        let client = ChimeClient(ClientOptions(port: f.server.port), logger: logger)
        try await client.createTopic("work", settings: settings(partitions: 2))
        _ = try await client.publish((0..<300).map { OutgoingRecord(body: Array("w\($0)".utf8)) }, to: "work")
        var held: [ConsumedMessage] = []
        for try await m in client.consume(group: "g", topics: ["work"], prefetch: 300) {
            held.append(m)
            if held.count == 300 { break }
        }
        let messages = held
        try await withThrowingTaskGroup(of: Void.self) { group in
            for m in messages { group.addTask { try await m.ack() } }
            try await group.waitForAll()
        }
        await client.flushAcks()
        let stats = try await client.stats(groups: ["g"])
        #expect(stats.groups.first?.lag == 0 && stats.groups.first?.inFlight == 0)
        // Acking again is refused, for that message alone.
        do {
            try await messages[0].ackDurably()
            Issue.record("a second ack succeeded")
        } catch let e as ClientError {
            #expect(e.code == 113 || e.code == 112, "already acked / unknown delivery: \(e)")
        }
        await client.close()
        await f.shutdown()
    }

    @Test func aBatchAckAcrossMembersKeepsEachMembersResult() async throws {
        let f = try await ServerFixture()
        let client = ChimeClient(ClientOptions(port: f.server.port), logger: logger)
        try await client.createTopic("split", settings: settings(partitions: 2))
        _ = try await client.publish([OutgoingRecord(body: Array("p0".utf8))], to: "split", partition: 0)
        _ = try await client.publish([OutgoingRecord(body: Array("p1".utf8))], to: "split", partition: 1)
        // Two members of one group on one client: one partition each.
        var a = client.consume(group: "g", topics: ["split"], member: "a", prefetch: 1).makeAsyncIterator()
        let first = try #require(try await a.next())
        var b = client.consume(group: "g", topics: ["split"], member: "b", prefetch: 10).makeAsyncIterator()
        // b's join moves one partition to b (a's lease there, if any, is revoked and the
        // message delivered to b).
        let second = try #require(try await b.nextBatch().first)
        await a.leave()  // a's ack will be refused: it is no member any more
        let results = try await client.ack([first, second])
        #expect(results[0] != nil, "the member that left is refused")
        #expect(results[1] == nil, "the other member's ack is kept")
        await b.leave()
        await client.close()
        await f.shutdown()
    }

    @Test func statsOverTheProtocol() async throws {
        let f = try await ServerFixture()
        let client = ChimeClient(ClientOptions(port: f.server.port), logger: logger)
        try await client.createTopic("jobs", settings: settings(partitions: 3))
        let now = ChimeClient.nowMilliseconds()
        _ = try await client.publish((0..<10).map { OutgoingRecord(body: Array("n\($0)".utf8)) }, to: "jobs")
        _ = try await client.publish((0..<5).map { OutgoingRecord(due: .at(now + 3_600_000 + Int64($0)), body: Array("s\($0)".utf8)) }, to: "jobs")
        var held: [ConsumedMessage] = []
        for try await m in client.consume(group: "workers", topics: ["jobs"], member: "w1", prefetch: 1) {
            held.append(m)
            if held.count == 4 { break }
        }
        try await held[0].ack()
        try await held[1].ack()
        await client.flushAcks()

        let s = try await client.stats(includeMembers: true)
        let jobs = try #require(s.topics.first { $0.topic.name == "jobs" })
        #expect(jobs.partitions.count == 3)
        #expect(jobs.partitions.reduce(0) { $0 + $1.logEnd - $1.readyStart } == 10)
        #expect(jobs.partitions.reduce(0) { $0 + $1.scheduled } == 5)
        let due = jobs.partitions.compactMap(\.nextDue).min()
        #expect(due != nil && due! <= now + 3_600_000 + 5)
        let g = try #require(s.groups.first { $0.name == "workers" })
        #expect(g.lag == 8 && g.inFlight == 2)
        #expect(g.memberCount == 1 && g.members.map(\.name) == ["w1"] && g.members[0].assignment.count == 3)
        do {
            _ = try await client.stats(topics: ["nope"])
            Issue.record("stats of an unknown topic succeeded")
        } catch let e as ClientError {
            #expect(e.code == 100)
        }
        await client.close()
        await f.shutdown()
    }

    @Test func theClientRunsAsALifecycleService() async throws {
        let f = try await ServerFixture()
        let client = ChimeClient(ClientOptions(port: f.server.port), logger: logger)
        let group = ServiceGroup(configuration: .init(services: [client], logger: logger))
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            try await client.publish(Array("in service".utf8), to: "svc")
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
        }
        #expect(try await stored("svc", f) == 1)

        // A service that cannot reach its broker fails at start, not at first use.
        let nowhere = ChimeClient(ClientOptions(port: 1, connectAttempts: 1), logger: logger)
        let failing = ServiceGroup(configuration: .init(services: [nowhere], logger: logger))
        await #expect(throws: ClientError.self) { try await failing.run() }
        await f.shutdown()
    }
}
