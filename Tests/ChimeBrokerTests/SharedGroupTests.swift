import ChimeBroker
import ChimeStore
import Testing

/// Shared groups: every member fetches from every partition; the lease alone says whose a
/// message is. Members that leave or time out give their messages back at once.
@Suite struct SharedGroupTests {
    static let shared = GroupSettings(mode: .shared, leaseMilliseconds: 600_000, sessionTimeoutMilliseconds: 10_000)

    @Test func moreMembersThanPartitionsAllGetWorkAndNoMessageIsHeldTwice() async throws {
        let s = try await Scenario.make()
        try s.broker.createTopic("jobs", settings: TopicSettings(partitions: 4))
        for p in 0..<4 { _ = try await s.broker.publish(topic: "jobs", (0..<10).map { .text("p\(p)-\($0)") }, partition: p) }
        try s.broker.createGroup("g", settings: Self.shared)
        var members: [UInt64] = []
        for i in 0..<10 { members.append(try await s.broker.join(group: "g", member: "w\(i)", topics: ["jobs"]).memberID) }
        var held: [String: UInt64] = [:]
        for m in members {
            let got = try await s.broker.fetch(group: "g", member: m, max: 4)
            #expect(got.count == 4, "member \(m) got \(got.count) of the 40 waiting")
            for d in got {
                #expect(held[d.text] == nil, "\(d.text) held by \(held[d.text] ?? 0) and \(m)")
                held[d.text] = m
            }
        }
        #expect(held.count == 40)
        #expect(Set(held.values).count == 10, "all ten members hold work")
        #expect(try await s.broker.fetch(group: "g", member: members[0], max: 10).isEmpty, "nothing is left to deliver")
        await s.broker.close()
    }

    @Test func anotherMembersReceiptIsRefusedAndTheHolderStillAcks() async throws {
        let s = try await Scenario.make()
        try s.broker.createTopic("jobs", settings: TopicSettings(partitions: 1))
        _ = try await s.broker.publish(topic: "jobs", [.text("one")])
        try s.broker.createGroup("g", settings: Self.shared)
        let a = try await s.broker.join(group: "g", member: "a", topics: ["jobs"]).memberID
        let b = try await s.broker.join(group: "g", member: "b", topics: ["jobs"]).memberID
        let got = try await s.broker.fetch(group: "g", member: a, max: 10)
        #expect(got.texts == ["one"])
        let stolen = try await s.broker.ack(group: "g", member: b, got.map(\.receipt))
        #expect(stolen.first??.code == .unknownDelivery)
        #expect(try await s.broker.ack(group: "g", member: a, got.map(\.receipt)) == [nil])
        #expect(try await s.broker.fetch(group: "g", member: b, max: 10).isEmpty)
        await s.broker.close()
    }

    @Test(arguments: [GroupMode.partitioned, .shared])
    func aMemberThatTimesOutHasItsMessagesDeliveredAgainAtOnce(mode: GroupMode) async throws {
        let s = try await Scenario.make()
        try s.broker.createTopic("jobs", settings: TopicSettings(partitions: 2))
        for p in 0..<2 { _ = try await s.broker.publish(topic: "jobs", [.text("p\(p)")], partition: p) }
        var settings = Self.shared
        settings.mode = mode
        try s.broker.createGroup("g", settings: settings)
        let a = try await s.broker.join(group: "g", member: "a", topics: ["jobs"]).memberID
        let taken = try await s.broker.fetch(group: "g", member: a, max: 10)
        #expect(taken.textSet == ["p0", "p1"])
        let b = try await s.broker.join(group: "g", member: "b", topics: ["jobs"]).memberID
        // A falls silent; B keeps its session. Past A's session timeout, long before the
        // ten-minute leases end, B gets A's messages, as a second attempt.
        for _ in 0..<3 {
            s.clock.advance(by: 4_000)
            _ = try await s.broker.heartbeat(group: "g", member: b)
        }
        let again = try await s.consumeAll("g", b)
        #expect(again.textSet == ["p0", "p1"])
        #expect(again.allSatisfy { $0.attempt == 2 })
        await expectBrokerError(.fenced) { try await s.broker.ack(group: "g", member: a, taken.map(\.receipt)) }
        await s.broker.close()
    }

    @Test func aLeavingMembersMessagesGoToTheOthersAtOnceWithoutAnAttempt() async throws {
        let s = try await Scenario.make()
        try s.broker.createTopic("jobs", settings: TopicSettings(partitions: 1))
        _ = try await s.broker.publish(topic: "jobs", [.text("x"), .text("y")])
        try s.broker.createGroup("g", settings: Self.shared)
        let a = try await s.broker.join(group: "g", member: "a", topics: ["jobs"]).memberID
        let b = try await s.broker.join(group: "g", member: "b", topics: ["jobs"]).memberID
        #expect(try await s.broker.fetch(group: "g", member: a, max: 10).count == 2)
        #expect(try await s.broker.fetch(group: "g", member: b, max: 10).isEmpty)
        try await s.broker.leave(group: "g", member: a)
        let got = try await s.consumeAll("g", b)
        #expect(got.texts == ["x", "y"])
        #expect(got.allSatisfy { $0.attempt == 1 })
        await s.broker.close()
    }

    @Test func changingTheModeEndsEveryLeaseAndTheMessagesComeAgain() async throws {
        let s = try await Scenario.make()
        try s.broker.createTopic("jobs", settings: TopicSettings(partitions: 2))
        for p in 0..<2 { _ = try await s.broker.publish(topic: "jobs", [.text("p\(p)")], partition: p) }
        try s.broker.createGroup("g", settings: GroupSettings(leaseMilliseconds: 600_000, sessionTimeoutMilliseconds: 1_000_000))
        let a = try await s.broker.join(group: "g", member: "a", topics: ["jobs"]).memberID
        let taken = try await s.broker.fetch(group: "g", member: a, max: 10)
        #expect(taken.count == 2)
        try await s.broker.configure(group: "g") { $0.mode = .shared }
        #expect(try s.broker.groupSettings("g").mode == .shared)
        let results = try await s.broker.ack(group: "g", member: a, taken.map(\.receipt))
        #expect(results.allSatisfy { $0?.code == .leaseExpired })
        let b = try await s.broker.join(group: "g", member: "b", topics: ["jobs"]).memberID
        let got = try await s.consumeAll("g", b)
        #expect(got.textSet == ["p0", "p1"])
        await s.broker.close()
    }

    /// A seeded run of members fetching, acking, nacking and leaving: no message is held
    /// by two members at once, no key has more than its limit in flight, and everything
    /// published is acked once in the end.
    @Test(arguments: [1, 7])
    func aLongRandomRunNeverHoldsAMessageTwiceNorExceedsTheKeyLimit(seed: UInt64) async throws {
        let s = try await Scenario.make()
        try s.broker.createTopic("jobs", settings: TopicSettings(partitions: 3))
        var random = SplitMix64(seed: seed)
        let keys = (0..<5).map { "k\($0)" }
        var published = 0
        let limit = 2
        try s.broker.createGroup(
            "g", settings: GroupSettings(mode: .shared, leaseMilliseconds: 600_000, sessionTimeoutMilliseconds: 1_000_000, maxAttempts: 1_000, keyConcurrency: limit))
        var members: [UInt64] = []
        for i in 0..<4 { members.append(try await s.broker.join(group: "g", member: "w\(i)", topics: ["jobs"]).memberID) }
        /// What each member holds, by text; and by key, how many are out.
        var holding: [UInt64: [Delivery]] = [:]
        var holder: [String: UInt64] = [:]
        var outByKey: [String: Int] = [:]
        var acked = Set<String>()
        func release(_ d: Delivery) {
            holder[d.text] = nil
            if let k = d.key { outByKey[String(decoding: k, as: UTF8.self), default: 0] -= 1 }
        }
        for step in 0..<400 {
            let m = members[Int(random.next() % UInt64(members.count))]
            switch random.next() % 10 {
            case 0...2:
                let batch = (0..<Int(random.next() % 5 + 1)).map { i -> OutgoingMessage in
                    published += 1
                    return .text("m\(published)", key: keys[Int(random.next() % UInt64(keys.count))])
                }
                _ = try await s.broker.publish(topic: "jobs", batch)
            case 3...5:
                let got = try await s.broker.fetch(group: "g", member: m, max: Int(random.next() % 6 + 1))
                for d in got {
                    #expect(holder[d.text] == nil, "step \(step): \(d.text) delivered to \(m) while \(holder[d.text] ?? 0) holds it")
                    holder[d.text] = m
                    let k = String(decoding: d.key ?? [], as: UTF8.self)
                    outByKey[k, default: 0] += 1
                    #expect(outByKey[k]! <= limit, "step \(step): \(outByKey[k]!) of key \(k) in flight")
                }
                holding[m, default: []] += got
            case 6...7:
                guard let held = holding[m], !held.isEmpty else { continue }
                let n = Int(random.next() % UInt64(held.count)) + 1
                let settle = Array(held.prefix(n))
                holding[m] = Array(held.dropFirst(n))
                let results = try await s.broker.ack(group: "g", member: m, settle.map(\.receipt))
                #expect(results.allSatisfy { $0 == nil }, "step \(step): \(results)")
                for d in settle {
                    release(d)
                    #expect(acked.insert(d.text).inserted, "\(d.text) acked twice")
                }
            case 8:
                guard let held = holding[m], let first = held.first else { continue }
                holding[m] = Array(held.dropFirst())
                #expect(try await s.broker.nack(group: "g", member: m, [first.receipt], delay: 0, reason: nil) == [nil])
                release(first)
            default:
                // Leave and join again: what it held goes back.
                for d in holding[m] ?? [] { release(d) }
                holding[m] = []
                try await s.broker.leave(group: "g", member: m)
                let again = try await s.broker.join(group: "g", member: "again", topics: ["jobs"]).memberID
                members[members.firstIndex(of: m)!] = again
            }
        }
        // Drain: everything published is acked once.
        for m in members {
            if let held = holding[m], !held.isEmpty {
                #expect(try await s.broker.ack(group: "g", member: m, held.map(\.receipt)).allSatisfy { $0 == nil })
                for d in held { acked.insert(d.text) }
            }
        }
        for _ in 0..<50 where acked.count < published {
            for m in members { for d in try await s.consumeAll("g", m) { acked.insert(d.text) } }
        }
        #expect(acked.count == published)
        await s.broker.close()
    }
}
