import ChimeBroker
@testable import ChimeClient
import ChimeProtocol
import Logging
import Synchronization
import Testing

/// The ack linger over a real socket: a member acking faster than round trips carry its
/// acks holds its next request to carry more, and nothing that waits on the queue — a
/// durable ack, a flush, a close — is ever held by it.
@Suite struct AckLingerTests {
    private var logger: Logger {
        var l = Logger(label: "ack-linger-test")
        l.logLevel = .critical
        return l
    }

    /// Runs `operation` in a task and waits at most `seconds` for it: a guard against a
    /// hang (an ack held for the hour), not a timing. False if it had not finished.
    private func finishes(withinSeconds seconds: Int, _ operation: @escaping @Sendable () async throws -> Void) async throws -> Bool {
        final class Flag: Sendable { let set = Mutex(false) }
        let finished = Flag()
        Task {
            do { try await operation() } catch { Issue.record(error) }
            finished.set.withLock { $0 = true }
        }
        var polls = 0
        while !finished.set.withLock({ $0 }), polls < seconds * 50 {
            try await Task.sleep(for: .milliseconds(20))
            polls += 1
        }
        return finished.set.withLock { $0 }
    }

    @Test func onlyAMemberAckingFasterThanRoundTripsLingers() {
        let many = AckBatcher.lingerAfter
        #expect(AckBatcher.lingers(lastSent: many, queued: 1, waitedOn: false))
        #expect(!AckBatcher.lingers(lastSent: many - 1, queued: 1, waitedOn: false), "a trickle goes out at once")
        #expect(!AckBatcher.lingers(lastSent: many, queued: 1, waitedOn: true), "a durable ack or a flush is not held")
        #expect(!AckBatcher.lingers(lastSent: many, queued: AckBatcher.maxReceipts, waitedOn: false), "a full request goes at once")
    }

    /// A member of group "g" on a one-partition topic holding `count` leased messages,
    /// whose first third it acked all at once: they go out in a few requests, and after one
    /// of 64 or more the member lingers, whether or not more acks are queued yet.
    private func lingeringMember(linger: Duration, count: Int) async throws -> (ServerFixture, ChimeClient, [ConsumedMessage]) {
        let f = try await ServerFixture()
        let client = ChimeClient(ClientOptions(port: f.server.port, ackLinger: linger), logger: logger)
        _ = try await client.createTopic(
            "jobs",
            settings: WireTopicSettings(
                partitions: 1, retentionMilliseconds: nil, retentionBytes: nil, maxMessageBytes: 1 << 20, maxAttempts: 5,
                dedupWindowMilliseconds: 60_000))
        _ = try await client.publish((0..<count).map { OutgoingRecord(body: Array("m\($0)".utf8)) }, to: "jobs")
        // The member holds its messages without fetching while the test runs, on two cores
        // shared with the whole suite: neither its session nor its leases may run out.
        _ = try await client.createGroup("g", settings: WireGroupSettings(leaseMilliseconds: 3_600_000, sessionTimeoutMilliseconds: 3_600_000))
        var held: [ConsumedMessage] = []
        var it = client.consume(group: "g", topics: ["jobs"], prefetch: 1_000).makeAsyncIterator()
        while held.count < count, let m = try await it.next() { held.append(m) }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for m in held[..<(count / 3)] { group.addTask { try await m.ack() } }
            try await group.waitForAll()
        }
        var polls = 0
        while await client.acker.lingeringMembers == 0, polls < 100 {
            try await Task.sleep(for: .milliseconds(20))
            polls += 1
        }
        try #require(await client.acker.lingeringMembers == 1, "the member never acked fast enough to linger")
        return (f, client, held)
    }

    private func committed(_ f: ServerFixture) async throws -> Int64 {
        try await f.broker.groupStats("g").partitions[0].committed
    }

    /// With an hour-long linger: once the member lingers, the acks it queues are held (the
    /// broker has not committed them), a durable ack ends the linger and goes out with
    /// everything queued before it, and a flush does the same for the rest.
    @Test func aDurableAckOrAFlushEndsTheLinger() async throws {
        let count = 3_000
        let (f, client, held) = try await lingeringMember(linger: .seconds(3_600), count: count)
        var acked = 2 * count / 3
        for m in held[(count / 3)..<acked] { try await m.ack() }
        try await Task.sleep(for: .milliseconds(200))
        #expect(try await committed(f) < Int64(acked), "held by the linger")

        let durable = held[acked]
        acked += 1
        guard try await finishes(withinSeconds: 60, { try await durable.ackDurably() }) else {
            Issue.record("a durable ack held by the linger")
            return await f.shutdown()  // the client would wait the hour to close
        }
        #expect(try await committed(f) == Int64(acked), "the durable ack took the queue with it")

        for m in held[acked...] { try await m.ack() }
        guard try await finishes(withinSeconds: 60, { await client.flushAcks() }) else {
            Issue.record("a flush held by the linger")
            return await f.shutdown()
        }
        #expect(try await committed(f) == Int64(count), "the flush took the rest")
        await client.close()
        await f.shutdown()
    }

    /// Acks held by a linger go out when it ends, with nothing waiting for them.
    @Test func heldAcksGoOutWhenTheLingerEnds() async throws {
        let count = 1_500
        let (f, client, held) = try await lingeringMember(linger: .seconds(1), count: count)
        for m in held[(count / 3)...] { try await m.ack() }
        // Polled until there (a `for … where` would go on asking for stats once it is).
        var polls = 0
        while try await committed(f) < Int64(count), polls < 1_500 {
            try await Task.sleep(for: .milliseconds(20))
            polls += 1
        }
        #expect(try await committed(f) == Int64(count), "every ack reached the broker without a flush")
        await client.close()
        await f.shutdown()
    }
}
