import ChimeBroker
import ChimeStore
import Testing

/// Restarts at awkward moments: acks above the frontier, after a checkpoint, scheduled
/// messages cancelled or moved after a restart, retries partly acked.
@Suite struct RestartDetailTests {
    static let settings = GroupSettings(leaseMilliseconds: 60_000, sessionTimeoutMilliseconds: 1_000_000)

    @Test func acksAboveTheFrontierAndCheckpoints() async throws {
        let s = try await Scenario.make()
        try s.broker.createTopic("jobs", settings: TopicSettings(partitions: 1))
        _ = try await s.broker.publish(topic: "jobs", (0..<8).map { .text("m\($0)") })
        var m = try await s.broker.join(group: "g", member: "m", topics: ["jobs"], settings: Self.settings)
        let got = try await s.fetchAll("g", m.memberID)
        #expect(got.texts == (0..<8).map { "m\($0)" })
        try await s.broker.ack(group: "g", member: m.memberID, [got[0].receipt, got[2].receipt])
        try await s.broker.checkpoint()
        try await s.broker.ack(group: "g", member: m.memberID, [got[1].receipt, got[5].receipt])
        var stats = try await s.broker.groupStats("g")
        #expect(stats.partitions.map(\.committed) == [3])
        #expect(stats.partitions.map(\.ackedAboveCommitted) == [1])

        try await s.restart()
        m = try await s.broker.join(group: "g", member: "m", topics: ["jobs"])
        stats = try await s.broker.groupStats("g")
        #expect(stats.partitions.map(\.committed) == [3])
        #expect(stats.partitions.map(\.ackedAboveCommitted) == [1])
        #expect(stats.partitions.map(\.lag) == [4])
        let again = try await s.fetchAll("g", m.memberID)
        #expect(again.texts == ["m3", "m4", "m6", "m7"])
        try await s.broker.ack(group: "g", member: m.memberID, [again[1].receipt, again[3].receipt])
        try await s.broker.checkpoint()

        try await s.restart()
        m = try await s.broker.join(group: "g", member: "m", topics: ["jobs"])
        #expect(try await s.consumeAll("g", m.memberID).texts == ["m3", "m6"])
        try await s.restart()
        m = try await s.broker.join(group: "g", member: "m", topics: ["jobs"])
        #expect(try await s.fetchAll("g", m.memberID).isEmpty)
        #expect(try await s.broker.groupStats("g").partitions.map(\.committed) == [8])
        await s.broker.close()
    }

    @Test func cancelAndRescheduleAfterRestart() async throws {
        let s = try await Scenario.make()
        try s.broker.createTopic("jobs", settings: TopicSettings(partitions: 1))
        let t0 = s.now
        let r = try await s.broker.publish(topic: "jobs", [.text("x", at: t0 + 1_000), .text("y", at: t0 + 2_000), .text("z", at: t0 + 3_000)])
        try await s.restart()
        try await s.broker.cancel(r[0].id!)
        let moved = try await s.broker.reschedule(r[1].id!, to: .at(t0 + 5_000))
        try await s.restart()
        await expectBrokerError(.unknownMessage) { try await s.broker.cancel(r[0].id!) }
        await expectBrokerError(.unknownMessage) { try await s.broker.cancel(r[1].id!) }
        let m = try await s.broker.join(group: "g", member: "m", topics: ["jobs"], settings: Self.settings)
        var timeline: [String] = []
        for _ in 0..<6 {
            try await s.advance(by: 1_000)
            timeline += try await s.consumeAll("g", m.memberID).map { "\($0.text)@\(($0.deliveredAt - t0) / 1_000)" }
        }
        #expect(timeline == ["z@3", "y@5"])
        try await s.restart()
        let m2 = try await s.broker.join(group: "g", member: "m", topics: ["jobs"])
        try await s.advance(by: 10_000)
        #expect(try await s.fetchAll("g", m2.memberID).isEmpty)
        await expectBrokerError(.unknownMessage) { try await s.broker.cancel(moved) }
        await s.broker.close()
    }

    @Test func retriesPartlyAckedAcrossRestart() async throws {
        let s = try await Scenario.make()
        try s.broker.createTopic("jobs", settings: TopicSettings(partitions: 1))
        _ = try await s.broker.publish(topic: "jobs", (0..<4).map { .text("m\($0)") })
        var m = try await s.broker.join(group: "g", member: "m", topics: ["jobs"], settings: Self.settings)
        let got = try await s.fetchAll("g", m.memberID)
        try await s.broker.nack(group: "g", member: m.memberID, got.map(\.receipt), delay: 1_000)
        try await s.advance(by: 1_000)
        let retries = try await s.fetchAll("g", m.memberID)
        #expect(retries.texts == ["m0", "m1", "m2", "m3"])
        #expect(retries.allSatisfy { $0.source == .retry && $0.attempt == 2 })
        try await s.broker.ack(group: "g", member: m.memberID, [retries[1].receipt, retries[3].receipt])
        // m0 goes round once more.
        try await s.broker.nack(group: "g", member: m.memberID, [retries[0].receipt], delay: 1_000)
        try await s.restart()
        m = try await s.broker.join(group: "g", member: "m", topics: ["jobs"])
        let back = try await s.fetchAll("g", m.memberID)
        #expect(back.texts == ["m2"])
        try await s.broker.ack(group: "g", member: m.memberID, back.map(\.receipt))
        try await s.advance(by: 1_000)
        let last = try await s.consumeAll("g", m.memberID)
        #expect(last.texts == ["m0"])
        #expect(last.map(\.attempt) == [3])
        try await s.restart()
        m = try await s.broker.join(group: "g", member: "m", topics: ["jobs"])
        try await s.advance(by: 10_000)
        #expect(try await s.fetchAll("g", m.memberID).isEmpty)
        let stats = try await s.broker.groupStats("g")
        #expect(stats.partitions.map(\.committed) == [4])
        #expect(stats.partitions.map(\.retriesPending) == [0])
        await s.broker.close()
    }
}
