import ChimeBroker
import ChimeStore
import Testing

/// partitionStats and groupStats follow what a scenario did, step by step.
@Suite struct StatsTests {
    @Test func partitionAndGroupStatsFollowTheScenario() async throws {
        let s = try await Scenario.make()
        try s.broker.createTopic("jobs", settings: TopicSettings(partitions: 2))
        // Manual firing: the wheels' time moves only with fireDue. Bring it to now, so the
        // near messages sit on level 0 and nextDue is their due time exactly.
        try await s.broker.fireDue()
        let t0 = s.now
        _ = try await s.broker.publish(topic: "jobs", (0..<4).map { .text("a\($0)") }, partition: 0)
        _ = try await s.broker.publish(topic: "jobs", [.text("b0")], partition: 1)
        _ = try await s.broker.publish(topic: "jobs", [.text("s0", at: t0 + 100), .text("s1", at: t0 + 200)], partition: 0)
        _ = try await s.broker.publish(topic: "jobs", [.text("s2", at: t0 + 50)], partition: 1)

        var p = try await s.broker.partitionStats(topic: "jobs")
        #expect(p.map(\.partition) == [0, 1])
        #expect(p.map(\.logEnd) == [4, 1])
        #expect(p.map(\.readyStart) == [0, 0])
        #expect(p.map(\.scheduled) == [2, 1])
        #expect(p.map(\.nextDue) == [t0 + 100, t0 + 50])
        #expect(p.allSatisfy { $0.readyBytes > 0 && $0.timerBytes > 0 })

        let m = try await s.broker.join(group: "g", member: "m", topics: ["jobs"], settings: GroupSettings(leaseMilliseconds: 10_000, sessionTimeoutMilliseconds: 1_000_000))
        var g = try await s.broker.groupStats("g")
        #expect(g.members == 1)
        #expect(g.partitions.map(\.committed) == [0, 0])
        #expect(g.partitions.map(\.lag) == [4, 1])
        #expect(g.partitions.map(\.inFlight) == [0, 0])
        #expect(g.partitions.map(\.owner) == [m.memberID, m.memberID])

        let got = try await s.fetchAll("g", m.memberID)
        #expect(got.byPartition == [0: ["a0", "a1", "a2", "a3"], 1: ["b0"]])
        let a = Dictionary(uniqueKeysWithValues: got.map { ($0.text, $0) })
        try await s.broker.ack(group: "g", member: m.memberID, [a["a0"]!.receipt, a["a2"]!.receipt])
        g = try await s.broker.groupStats("g")
        #expect(g.partitions.map(\.committed) == [1, 0])
        #expect(g.partitions.map(\.ackedAboveCommitted) == [1, 0])
        #expect(g.partitions.map(\.lag) == [2, 1])
        #expect(g.partitions.map(\.inFlight) == [2, 1])

        // A retry: pending while in the wheel, and once fired until delivered; not twice.
        try await s.broker.nack(group: "g", member: m.memberID, [a["a1"]!.receipt], delay: 1_000)
        g = try await s.broker.groupStats("g")
        #expect(g.partitions.map(\.committed) == [3, 0])
        #expect(g.partitions.map(\.inFlight) == [1, 1])
        #expect(g.partitions.map(\.retriesPending) == [1, 0])
        p = try await s.broker.partitionStats(topic: "jobs")
        #expect(p.map(\.scheduled) == [3, 1])

        s.clock.advance(by: 150)
        #expect(try await s.broker.fireDue() == 2)
        p = try await s.broker.partitionStats(topic: "jobs")
        #expect(p.map(\.logEnd) == [5, 2])
        #expect(p.map(\.scheduled) == [2, 0])
        #expect(p.map(\.nextDue) == [t0 + 200, nil])
        g = try await s.broker.groupStats("g")
        #expect(g.partitions.map(\.lag) == [2, 2])

        s.clock.advance(by: 1_000)
        #expect(try await s.broker.fireDue() == 2)
        g = try await s.broker.groupStats("g")
        #expect(g.partitions.map(\.retriesPending) == [1, 0])
        p = try await s.broker.partitionStats(topic: "jobs")
        #expect(p.map(\.scheduled) == [0, 0])
        #expect(p.map(\.nextDue) == [nil, nil])
        #expect(p.map(\.logEnd) == [6, 2])

        let rest = try await s.consumeAll("g", m.memberID)
        #expect(rest.byPartition == [0: ["a1", "s0", "s1"], 1: ["s2"]])
        try await s.broker.ack(group: "g", member: m.memberID, [a["a3"]!.receipt, a["b0"]!.receipt])
        g = try await s.broker.groupStats("g")
        #expect(g.partitions.map(\.committed) == [6, 2])
        #expect(g.partitions.map(\.ackedAboveCommitted) == [0, 0])
        #expect(g.partitions.map(\.lag) == [0, 0])
        #expect(g.partitions.map(\.inFlight) == [0, 0])
        #expect(g.partitions.map(\.retriesPending) == [0, 0])

        try await s.restart()
        let m2 = try await s.broker.join(group: "g", member: "m", topics: ["jobs"])
        g = try await s.broker.groupStats("g")
        #expect(g.partitions.map(\.committed) == [6, 2])
        #expect(g.partitions.map(\.lag) == [0, 0])
        #expect(g.partitions.map(\.owner) == [m2.memberID, m2.memberID])
        p = try await s.broker.partitionStats(topic: "jobs")
        #expect(p.map(\.logEnd) == [6, 2])
        #expect(p.map(\.scheduled) == [0, 0])
        await s.broker.close()
    }

    /// A due time far ahead sits in a higher wheel level: nextDue is the start of its slot,
    /// never after the due time.
    @Test func nextDueOfAFarMessageIsNotAfterItsDueTime() async throws {
        let s = try await Scenario.make()
        try s.broker.createTopic("jobs", settings: TopicSettings(partitions: 1))
        try await s.broker.fireDue()
        let due = s.now + 86_400_000 + 12_345
        _ = try await s.broker.publish(topic: "jobs", [.text("tomorrow", at: due)])
        let p = try await s.broker.partitionStats(topic: "jobs")
        #expect(p[0].scheduled == 1)
        #expect(p[0].nextDue.map { $0 <= due && $0 > s.now } == true)
        try await s.advance(by: 86_400_000 + 12_344)
        #expect(try await s.broker.partitionStats(topic: "jobs")[0].scheduled == 1)
        #expect(try await s.advance(by: 1) == 1)
        await s.broker.close()
    }

    /// A cancelled message leaves its slot in the wheel (the cancel beside it) until the
    /// slot's time: nothing is due then, and no next due time is shown.
    @Test func aPartitionWithNothingScheduledHasNoNextDueTime() async throws {
        let s = try await Scenario.make()
        try s.broker.createTopic("jobs", settings: TopicSettings(partitions: 1))
        try await s.broker.fireDue()
        let published = try await s.broker.publish(topic: "jobs", [.text("later", at: s.now + 60_000)])
        #expect(try await s.broker.partitionStats(topic: "jobs")[0].nextDue != nil)
        try await s.broker.cancel(published[0].id!)
        let p = try await s.broker.partitionStats(topic: "jobs")[0]
        #expect(p.scheduled == 0)
        #expect(p.nextDue == nil)
        await s.broker.close()
    }
}

@Suite struct StatsAfterTimeTests {
    /// Stats and the member list reflect expired leases and silent members without any
    /// other call in between.
    @Test func statsSeeExpiredLeasesAndSilentMembers() async throws {
        let s = try await Scenario.make()
        try s.broker.createTopic("jobs", settings: TopicSettings(partitions: 2))
        _ = try await s.broker.publish(topic: "jobs", [.text("a")], partition: 0)
        _ = try await s.broker.publish(topic: "jobs", [.text("b")], partition: 1)
        let settings = GroupSettings(leaseMilliseconds: 1_000, sessionTimeoutMilliseconds: 5_000)
        let a = try await s.broker.join(group: "g", member: "a", topics: ["jobs"], settings: settings)
        let b = try await s.broker.join(group: "g", member: "b", topics: ["jobs"])
        _ = try await s.fetchAll("g", a.memberID)
        _ = try await s.fetchAll("g", b.memberID)
        #expect(try await s.broker.groupStats("g").partitions.map(\.inFlight) == [1, 1])
        s.clock.advance(by: 1_000)
        var stats = try await s.broker.groupStats("g")
        #expect(stats.partitions.map(\.inFlight) == [0, 0])
        #expect(stats.members == 2)
        s.clock.advance(by: 3_000)
        _ = try await s.broker.heartbeat(group: "g", member: b.memberID)
        s.clock.advance(by: 1_001)
        stats = try await s.broker.groupStats("g")
        #expect(stats.members == 1)
        #expect(stats.partitions.map(\.owner) == [b.memberID, b.memberID])
        #expect(try await s.broker.groupMembers("g").map(\.name) == ["b"])
        let got = try await s.consumeAll("g", b.memberID)
        #expect(got.texts.sorted() == ["a", "b"])
        #expect(got.map(\.attempt) == [2, 2])
        await s.broker.close()
    }
}
