import ChimeBroker
import ChimeClient
import ChimeProtocol
import Logging
import Testing

/// The consumer loop of the README over a real socket: `ack()` queues, the client sends
/// the queued acks together in the background, and what the broker answered is final.
@Suite struct ConsumerLoopTests {
    private var logger: Logger {
        var l = Logger(label: "consumer-loop-test")
        l.logLevel = .critical
        return l
    }

    private func topic(_ client: ChimeClient, _ name: String, partitions: UInt32 = 1) async throws {
        try await client.createTopic(
            name,
            settings: WireTopicSettings(
                partitions: partitions, retentionMilliseconds: nil, retentionBytes: nil, maxMessageBytes: 1 << 20, maxAttempts: 5,
                dedupWindowMilliseconds: 60_000))
    }

    /// Every ack of the plain loop reaches the broker once the client closes: another member
    /// of the group finds nothing left, and the group's position is past every message.
    @Test func everyAckOfThePlainLoopIsTakenOnceTheClientCloses() async throws {
        let f = try await ServerFixture()
        let client = ChimeClient(ClientOptions(port: f.server.port), logger: logger)
        try await topic(client, "jobs", partitions: 2)
        let count = 3_000
        _ = try await client.publish((0..<count).map { OutgoingRecord(body: Array("m\($0)".utf8)) }, to: "jobs")
        var got = 0
        for try await m in client.consume(group: "g", topics: ["jobs"]) {
            try await m.ack()
            got += 1
            if got == count { break }
        }
        await client.close()
        #expect(got == count)
        let stats = try await f.broker.groupStats("g")
        #expect(stats.partitions.map(\.committed).reduce(0, +) == Int64(count), "committed \(stats.partitions.map(\.committed))")
        let other = try await f.broker.join(group: "g", member: "other", topics: ["jobs"])
        #expect(try await f.broker.fetch(group: "g", member: other.memberID, max: 100).isEmpty, "nothing acked comes back")
        await f.shutdown()
    }

    /// An ack the broker refuses does not vanish: a queued one counts in `ackFailures` and
    /// its message is delivered again; `ackDurably()` throws it to its caller.
    @Test func refusedAcksAreCountedOrThrownAndTheirMessagesComeBack() async throws {
        let f = try await ServerFixture()
        let client = ChimeClient(ClientOptions(port: f.server.port), logger: logger)
        try await topic(client, "jobs")
        _ = try await client.publish((0..<2).map { OutgoingRecord(body: Array("m\($0)".utf8)) }, to: "jobs")
        var it = client.consume(group: "g", topics: ["jobs"], prefetch: 2).makeAsyncIterator()
        let first = try await it.next()!
        let second = try await it.next()!
        await it.leave()  // the member is gone: its receipts are refused from now on
        try await first.ack()
        await client.flushAcks()
        let failures = await client.ackFailures
        #expect(failures.count == 1)
        let refused = await #expect(throws: ClientError.self) { try await second.ackDurably() }
        #expect(refused?.wireCode == .fenced, "the member left: its leases are fenced")
        #expect(await client.ackFailures.count == 1, "an ack that waited is thrown, not counted")

        let again = try await f.broker.join(group: "g", member: "again", topics: ["jobs"])
        let redelivered = try await f.broker.fetch(group: "g", member: again.memberID, max: 10)
        #expect(redelivered.map { String(decoding: $0.body, as: UTF8.self) } == ["m0", "m1"])
        #expect(redelivered.allSatisfy { $0.attempt == 1 }, "handed back by the leave: not an attempt")
        await client.close()
        await f.shutdown()
    }

    /// Acks queued when the broker goes away are all accounted for as failures (their
    /// messages are delivered again): nothing waits forever, nothing is silently dropped.
    /// They fail together once the client has tried to reach the broker again.
    @Test func acksQueuedWhenTheBrokerIsGoneFailTogether() async throws {
        let f = try await ServerFixture()
        let client = ChimeClient(ClientOptions(port: f.server.port, connectAttempts: 2), logger: logger)
        try await topic(client, "jobs")
        _ = try await client.publish((0..<9_000).map { OutgoingRecord(body: Array("m\($0)".utf8)) }, to: "jobs")
        var held: [ConsumedMessage] = []
        var it = client.consume(group: "g", topics: ["jobs"], prefetch: 1_000).makeAsyncIterator()
        // Held unacked: within the group's in-flight limit (10,000 by default).
        while held.count < 9_000, let m = try await it.next() { held.append(m) }
        await f.shutdown()
        // Queued against no broker.
        for m in held { try await m.ack() }
        await client.flushAcks()
        let failures = await client.ackFailures
        #expect(failures.count == held.count, "every queued ack is accounted for")
        #expect((failures.last as? ClientError)?.isDisconnected == true)
        await client.close()
    }

    /// `peek` over the wire: messages without leases, the group's backlog, typed refusals.
    @Test func peekOverTheWireLeasesNothing() async throws {
        let f = try await ServerFixture()
        let client = ChimeClient(ClientOptions(port: f.server.port), logger: logger)
        try await topic(client, "jobs")
        _ = try await client.publish((0..<5).map { OutgoingRecord(body: Array("m\($0)".utf8)) }, to: "jobs")
        let peeked = try await client.peek(topic: "jobs", partition: 0, max: 3)
        #expect(peeked.map { String(decoding: $0.body, as: UTF8.self) } == ["m0", "m1", "m2"])
        #expect(peeked.allSatisfy { $0.attempt == 0 })
        var it = client.consume(group: "g", topics: ["jobs"], prefetch: 1).makeAsyncIterator()
        try await it.next()!.ackDurably()
        let backlog = try await client.peek(topic: "jobs", partition: 0, group: "g", max: 100)
        #expect(backlog.map(\.offset) == [1, 2, 3, 4])
        let unknown = await #expect(throws: ClientError.self) { try await client.peek(topic: "nope", partition: 0) }
        #expect(unknown?.wireCode == .unknownTopic)
        let bad = await #expect(throws: ClientError.self) { try await client.peek(topic: "jobs", partition: 9) }
        #expect(bad?.wireCode == .badPartition)
        await it.leave()
        await client.close()
        await f.shutdown()
    }
}
