import ChimeBroker
import ChimeStore
import Testing

/// With key ordering, two messages with the same key are never in flight together, and a
/// key's messages are delivered in the order they were published.
@Suite struct KeyOrderingTests {
    static let settings = GroupSettings(leaseMilliseconds: 1_000, sessionTimeoutMilliseconds: 1_000_000, maxAttempts: 10, keyOrdering: true)

    func key(_ d: Delivery) -> String { String(decoding: d.key ?? [], as: UTF8.self) }

    @Test func sameKeyNeverInFlightTogetherAndInOrder() async throws {
        let s = try await Scenario.make()
        try s.broker.createTopic("jobs", settings: TopicSettings(partitions: 1))
        _ = try await s.broker.publish(topic: "jobs", [
            .text("a0", key: "a"), .text("b0", key: "b"), .text("a1", key: "a"), .text("c0", key: "c"), .text("a2", key: "a"), .text("b1", key: "b"),
        ])
        let m = try await s.broker.join(group: "g", member: "m", topics: ["jobs"], settings: Self.settings)
        let first = try await s.broker.fetch(group: "g", member: m.memberID, max: 10)
        #expect(first.texts == ["a0", "b0", "c0"])
        #expect(try await s.broker.fetch(group: "g", member: m.memberID, max: 10).isEmpty)

        try await s.broker.ack(group: "g", member: m.memberID, [first[0].receipt, first[2].receipt])
        let second = try await s.broker.fetch(group: "g", member: m.memberID, max: 10)
        #expect(second.texts == ["a1"])

        // b0's lease runs out: b0 comes back before b1, and b1 waits for it.
        s.clock.advance(by: 1_000)
        let third = try await s.broker.fetch(group: "g", member: m.memberID, max: 10)
        #expect(third.texts.sorted() == ["a1", "b0"])
        #expect(third.map(\.attempt) == [2, 2])
        try await s.broker.ack(group: "g", member: m.memberID, third.map(\.receipt))
        let fourth = try await s.broker.fetch(group: "g", member: m.memberID, max: 10)
        #expect(fourth.texts.sorted() == ["a2", "b1"])
        try await s.broker.ack(group: "g", member: m.memberID, fourth.map(\.receipt))
        #expect(try await s.broker.groupStats("g").partitions.map(\.committed) == [6])
        await s.broker.close()
    }

    /// A nack without delay puts the message back in front of its key's later messages.
    @Test func nackedMessageStaysAheadOfItsKey() async throws {
        let s = try await Scenario.make()
        try s.broker.createTopic("jobs", settings: TopicSettings(partitions: 1))
        _ = try await s.broker.publish(topic: "jobs", [.text("a0", key: "a"), .text("a1", key: "a")])
        let m = try await s.broker.join(group: "g", member: "m", topics: ["jobs"], settings: Self.settings)
        var order: [String] = []
        let first = try await s.broker.fetch(group: "g", member: m.memberID, max: 10)
        order += first.texts
        try await s.broker.nack(group: "g", member: m.memberID, first.map(\.receipt))
        for _ in 0..<3 {
            let got = try await s.broker.fetch(group: "g", member: m.memberID, max: 10)
            #expect(got.count <= 1)
            order += got.texts
            try await s.broker.ack(group: "g", member: m.memberID, got.map(\.receipt))
        }
        #expect(order == ["a0", "a0", "a1"])
        await s.broker.close()
    }

    /// A retried message (back from the wheel into the retry log) and a newer message with
    /// the same key from the ready log are not in flight together either.
    @Test func retryAndReadyOfOneKeyNotInFlightTogether() async throws {
        let s = try await Scenario.make()
        try s.broker.createTopic("jobs", settings: TopicSettings(partitions: 1))
        var settings = Self.settings
        settings.leaseMilliseconds = 60_000
        _ = try await s.broker.publish(topic: "jobs", [.text("a0", key: "a"), .text("a1", key: "a")])
        let m = try await s.broker.join(group: "g", member: "m", topics: ["jobs"], settings: settings)
        let first = try await s.broker.fetch(group: "g", member: m.memberID, max: 10)
        #expect(first.texts == ["a0"])
        try await s.broker.nack(group: "g", member: m.memberID, first.map(\.receipt), delay: 1_000)
        let second = try await s.broker.fetch(group: "g", member: m.memberID, max: 10)
        #expect(second.texts == ["a1"])
        try await s.advance(by: 1_000)
        #expect(try await s.broker.fetch(group: "g", member: m.memberID, max: 10).isEmpty)
        try await s.broker.ack(group: "g", member: m.memberID, second.map(\.receipt))
        let third = try await s.broker.fetch(group: "g", member: m.memberID, max: 10)
        #expect(third.texts == ["a0"])
        #expect(third.map(\.source) == [.retry])
        #expect(third.map(\.attempt) == [2])
        await s.broker.close()
    }

    /// Many keys, seeded random acks, nacks and expiries: at no point are two messages with
    /// one key in flight, and each key's first deliveries follow publish order.
    @Test(arguments: [7, 11, 23, 99] as [UInt64]) func randomisedKeyOrdering(seed: UInt64) async throws {
        let s = try await Scenario.make()
        try s.broker.createTopic("jobs", settings: TopicSettings(partitions: 2))
        var rng = SplitMix64(seed: seed)
        let keys = (0..<5).map { "k\($0)" }
        var published: [String: [String]] = [:]
        for i in 0..<60 {
            let k = keys[Int(rng.next() % UInt64(keys.count))]
            published[k, default: []].append("\(k)-\(i)")
            _ = try await s.broker.publish(topic: "jobs", [.text("\(k)-\(i)", key: k)])
        }
        let m = try await s.broker.join(group: "g", member: "m", topics: ["jobs"], settings: Self.settings)
        var inFlight: [String: Delivery] = [:]
        var done: [String: [String]] = [:]
        var rounds = 0
        while done.values.reduce(0, { $0 + $1.count }) < 60 && rounds < 500 {
            rounds += 1
            let got = try await s.broker.fetch(group: "g", member: m.memberID, max: 4)
            // Whatever the broker gave up on (expiry) is no longer ours.
            for d in got {
                let k = key(d)
                if let old = inFlight[k] {
                    #expect(old.leaseDeadline <= s.now, "\(d.text) delivered while \(old.text) is in flight")
                }
                inFlight[k] = d
            }
            for (k, d) in inFlight {
                switch rng.next() % 4 {
                case 0, 1:
                    if try await s.broker.ack(group: "g", member: m.memberID, [d.receipt]) == [nil] { done[k, default: []].append(d.text) }
                    inFlight[k] = nil
                case 2:
                    try await s.broker.nack(group: "g", member: m.memberID, [d.receipt])
                    inFlight[k] = nil
                default:
                    break  // keep it; it may expire
                }
            }
            s.clock.advance(by: 300)
        }
        #expect(done == published)
        await s.broker.close()
    }
}

@Suite struct KeyOrderingDeadLetterTests {
    /// The first message of a key expiring past its attempts goes to the dead-letter topic;
    /// the next message of the key is delivered then, not held back for ever.
    @Test func deadLetteredHeadReleasesItsKey() async throws {
        let s = try await Scenario.make()
        try s.broker.createTopic("jobs", settings: TopicSettings(partitions: 1))
        _ = try await s.broker.publish(topic: "jobs", [.text("a0", key: "a"), .text("a1", key: "a"), .text("b0", key: "b")])
        let settings = GroupSettings(leaseMilliseconds: 1_000, sessionTimeoutMilliseconds: 1_000_000, maxAttempts: 2, keyOrdering: true)
        let m = try await s.broker.join(group: "g", member: "m", topics: ["jobs"], settings: settings)
        var seen: [[String]] = []
        for _ in 0..<3 {
            let got = try await s.broker.fetch(group: "g", member: m.memberID, max: 10)
            seen.append(got.texts)
            try await s.broker.ack(group: "g", member: m.memberID, got.filter { $0.text != "a0" }.map(\.receipt))
            s.clock.advance(by: 1_000)
        }
        #expect(seen == [["a0", "b0"], ["a0"], ["a1"]])
        let dlq = try await s.broker.join(group: "inspect", member: "i", topics: ["g.dlq"])
        #expect(try await s.consumeAll("inspect", dlq.memberID).texts == ["a0"])
        await s.broker.close()
    }

    /// Same with a nack past the attempts, and a term.
    @Test func nackedAndTermedHeadsReleaseTheirKeys() async throws {
        let s = try await Scenario.make()
        try s.broker.createTopic("jobs", settings: TopicSettings(partitions: 1))
        _ = try await s.broker.publish(topic: "jobs", [.text("a0", key: "a"), .text("a1", key: "a"), .text("b0", key: "b"), .text("b1", key: "b")])
        let settings = GroupSettings(leaseMilliseconds: 60_000, sessionTimeoutMilliseconds: 1_000_000, maxAttempts: 1, keyOrdering: true)
        let m = try await s.broker.join(group: "g", member: "m", topics: ["jobs"], settings: settings)
        let first = try await s.broker.fetch(group: "g", member: m.memberID, max: 10)
        #expect(first.texts == ["a0", "b0"])
        try await s.broker.nack(group: "g", member: m.memberID, [first[0].receipt], reason: "no")
        try await s.broker.term(group: "g", member: m.memberID, [first[1].receipt], reason: "bad")
        #expect(try await s.consumeAll("g", m.memberID).texts.sorted() == ["a1", "b1"])
        await s.broker.close()
    }
}

@Suite struct KeyOrderingRebalanceTests {
    /// The partition moves while a key's first message is in flight: the new owner gets that
    /// message first, and the key's next one only after it is acked.
    @Test func revokedHeadStaysFirstOfItsKey() async throws {
        let s = try await Scenario.make()
        try s.broker.createTopic("jobs", settings: TopicSettings(partitions: 2))
        _ = try await s.broker.publish(topic: "jobs", [.text("c0", key: "c")], partition: 0)
        _ = try await s.broker.publish(topic: "jobs", [.text("a0", key: "a"), .text("a1", key: "a"), .text("b0", key: "b")], partition: 1)
        let settings = GroupSettings(leaseMilliseconds: 60_000, sessionTimeoutMilliseconds: 1_000_000, keyOrdering: true)
        let a = try await s.broker.join(group: "g", member: "a", topics: ["jobs"], settings: settings)
        let first = try await s.fetchAll("g", a.memberID)
        #expect(first.byPartition == [0: ["c0"], 1: ["a0", "b0"]])
        let b = try await s.broker.join(group: "g", member: "b", topics: ["jobs"])
        // Whichever partition moved, its leases were revoked and the new owner gets them.
        let moved = try #require(b.assignment.first?.partition)
        #expect(b.assignment.count == 1)
        #expect(moved == 1, "the assignment moves the highest partition first; this test wants the keyed one to move")
        let got = try await s.fetchAll("g", b.memberID)
        #expect(got.texts.sorted() == first.filter { $0.partition == moved }.texts.sorted())
        #expect(got.allSatisfy { $0.attempt == 2 })
        #expect(try await s.fetchAll("g", a.memberID).isEmpty)
        let kept = first.filter { $0.partition != moved }
        try await s.broker.ack(group: "g", member: b.memberID, got.map(\.receipt))
        try await s.broker.ack(group: "g", member: a.memberID, kept.map(\.receipt))
        let rest = try await s.consumeAll("g", b.memberID) + s.consumeAll("g", a.memberID)
        #expect(rest.texts == ["a1"])
        await s.broker.close()
    }
}

@Suite struct WindowBoundTests {
    /// maxInFlight bounds the leases of a partition; maxWindow the span from the oldest
    /// unacked message to the newest delivered one.
    @Test func inFlightAndWindowBounds() async throws {
        let s = try await Scenario.make()
        try s.broker.createTopic("jobs", settings: TopicSettings(partitions: 1))
        _ = try await s.broker.publish(topic: "jobs", (0..<8).map { .text("m\($0)") })
        let settings = GroupSettings(maxInFlight: 2, leaseMilliseconds: 60_000, sessionTimeoutMilliseconds: 1_000_000, maxWindow: 3)
        let m = try await s.broker.join(group: "g", member: "m", topics: ["jobs"], settings: settings)
        let first = try await s.broker.fetch(group: "g", member: m.memberID, max: 10)
        #expect(first.texts == ["m0", "m1"])
        try await s.broker.ack(group: "g", member: m.memberID, [first[1].receipt])
        let second = try await s.broker.fetch(group: "g", member: m.memberID, max: 10)
        #expect(second.texts == ["m2"])
        try await s.broker.ack(group: "g", member: m.memberID, second.map(\.receipt))
        // m0 pins the window at three offsets: nothing more until it is acked.
        #expect(try await s.broker.fetch(group: "g", member: m.memberID, max: 10).isEmpty)
        try await s.broker.ack(group: "g", member: m.memberID, [first[0].receipt])
        #expect(try await s.broker.fetch(group: "g", member: m.memberID, max: 10).texts == ["m3", "m4"])
        await s.broker.close()
    }
}
