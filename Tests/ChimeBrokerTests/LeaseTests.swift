import ChimeBroker
import ChimeStore
import Testing

/// Visibility timeouts: expiry redelivers with the attempt counted, extend keeps a lease,
/// and receipts of expired, acked or never-made deliveries are refused with the right code.
@Suite struct LeaseTests {
    static let settings = GroupSettings(leaseMilliseconds: 1_000, sessionTimeoutMilliseconds: 1_000_000, maxAttempts: 10)

    func setUp(_ messages: [String] = ["m0", "m1", "m2"]) async throws -> (Scenario, UInt64) {
        let s = try await Scenario.make()
        try s.broker.createTopic("jobs", settings: TopicSettings(partitions: 1))
        _ = try await s.broker.publish(topic: "jobs", messages.map { .text($0) })
        let m = try await s.broker.join(group: "g", member: "w", topics: ["jobs"], settings: Self.settings)
        return (s, m.memberID)
    }

    @Test func expiredLeasesAreRedeliveredWithTheAttemptCounted() async throws {
        let (s, w) = try await setUp()
        let first = try await s.broker.fetch(group: "g", member: w, max: 10)
        #expect(first.texts == ["m0", "m1", "m2"])
        #expect(first.map(\.attempt) == [1, 1, 1])
        #expect(first.allSatisfy { $0.leaseDeadline == s.now + 1_000 })
        try await s.broker.ack(group: "g", member: w, [first[1].receipt])

        s.clock.advance(by: 999)
        #expect(try await s.broker.fetch(group: "g", member: w, max: 10).isEmpty)
        s.clock.advance(by: 1)
        let second = try await s.broker.fetch(group: "g", member: w, max: 10)
        #expect(second.texts == ["m0", "m2"])
        #expect(second.map(\.attempt) == [2, 2])
        #expect(second.map(\.id) == [first[0].id, first[2].id])
        #expect(second.map(\.receipt.lease) != [first[0].receipt.lease, first[2].receipt.lease])

        // The first lease is dead: its receipt is refused, the new one works.
        let refused = try await s.broker.ack(group: "g", member: w, [first[0].receipt])
        #expect(refused.map { $0?.code } == [.leaseExpired])
        s.clock.advance(by: 1_000)
        let third = try await s.broker.fetch(group: "g", member: w, max: 10)
        #expect(third.texts == ["m0", "m2"])
        #expect(third.map(\.attempt) == [3, 3])
        #expect(try await s.broker.ack(group: "g", member: w, third.map(\.receipt)) == [nil, nil])
        #expect(try await s.broker.groupStats("g").partitions.map(\.committed) == [3])
        await s.broker.close()
    }

    /// A lease is over at its deadline even when the ack comes before any fetch noticed it.
    @Test func ackAfterTheDeadlineIsRefusedWithoutAFetchInBetween() async throws {
        let (s, w) = try await setUp(["m0", "m1"])
        let got = try await s.broker.fetch(group: "g", member: w, max: 10)
        s.clock.advance(by: 1_000)
        let results = try await s.broker.ack(group: "g", member: w, [got[0].receipt])
        #expect(results.map { $0?.code } == [.leaseExpired])
        let extended = try await s.broker.extend(group: "g", member: w, [got[1].receipt], by: 5_000)
        #expect(extended.map { $0?.code } == [.leaseExpired])
        let again = try await s.broker.fetch(group: "g", member: w, max: 10)
        #expect(again.texts == ["m0", "m1"])
        #expect(again.map(\.attempt) == [2, 2])
        await s.broker.close()
    }

    @Test func extendKeepsTheLease() async throws {
        let (s, w) = try await setUp(["m0", "m1"])
        let got = try await s.broker.fetch(group: "g", member: w, max: 10)
        for _ in 0..<5 {
            s.clock.advance(by: 900)
            #expect(try await s.broker.extend(group: "g", member: w, [got[0].receipt], by: 1_000) == [nil])
            // m1 was not extended: it comes back once, at its deadline.
            let redelivered = try await s.broker.fetch(group: "g", member: w, max: 10)
            if s.now - got[1].deliveredAt >= 1_000 {
                #expect(redelivered.allSatisfy { $0.text == "m1" })
                if !redelivered.isEmpty { try await s.broker.ack(group: "g", member: w, redelivered.map(\.receipt)) }
            } else {
                #expect(redelivered.isEmpty)
            }
        }
        // 4.5 s after the fetch, m0 is still leased on its first delivery.
        #expect(try await s.broker.ack(group: "g", member: w, [got[0].receipt]) == [nil])
        let stats = try await s.broker.groupStats("g")
        #expect(stats.partitions.map(\.committed) == [2])
        #expect(stats.partitions.map(\.inFlight) == [0])
        await s.broker.close()
    }

    @Test func receiptsRefusedWithTheRightCode() async throws {
        let (s, w) = try await setUp(["m0", "m1", "m2"])
        let got = try await s.broker.fetch(group: "g", member: w, max: 2)
        #expect(got.texts == ["m0", "m1"])
        #expect(try await s.broker.ack(group: "g", member: w, [got[0].receipt]) == [nil])

        var never = got[1].receipt
        never.offset = 2  // m2: in the log, never delivered
        var beyond = got[1].receipt
        beyond.offset = 50  // past the end of the log
        var forged = got[1].receipt
        forged.lease += 100  // a lease never granted
        var otherSource = got[1].receipt
        otherSource.source = .retry
        var otherPartition = got[1].receipt
        otherPartition.partition = 7

        let results = try await s.broker.ack(
            group: "g", member: w, [got[0].receipt, never, beyond, forged, otherSource, otherPartition, got[1].receipt])
        #expect(results.map { $0?.code } == [.alreadyAcked, .unknownDelivery, .unknownDelivery, .unknownDelivery, .unknownDelivery, .unknownDelivery, nil])
        // Double ack of the batch's good one, and nack/extend/term of acked ones.
        #expect(try await s.broker.ack(group: "g", member: w, [got[1].receipt]).map { $0?.code } == [.alreadyAcked])
        #expect(try await s.broker.nack(group: "g", member: w, [got[1].receipt]).map { $0?.code } == [.alreadyAcked])
        #expect(try await s.broker.extend(group: "g", member: w, [got[1].receipt], by: 10).map { $0?.code } == [.alreadyAcked])
        #expect(try await s.broker.term(group: "g", member: w, [got[1].receipt], reason: "x").map { $0?.code } == [.alreadyAcked])

        // Nothing of that disturbed delivery: m2 comes next, once.
        #expect(try await s.consumeAll("g", w).texts == ["m2"])
        #expect(try await s.broker.groupStats("g").partitions.map(\.committed) == [3])
        await expectBrokerError(.unknownGroup) { try await s.broker.ack(group: "nope", member: w, [got[1].receipt]) }
        await s.broker.close()
    }
}
