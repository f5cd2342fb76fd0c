import ChimeBroker
import ChimeStore
import Testing

/// Close and reopen in the middle of scenarios: acked messages stay acked, unacked ones
/// come back, scheduled ones fire once, pending retries survive, positions are restored.
@Suite struct RestartTests {
    static let settings = GroupSettings(leaseMilliseconds: 60_000, sessionTimeoutMilliseconds: 1_000_000, maxAttempts: 5)

    @Test func restartMidStream() async throws {
        let s = try await Scenario.make()
        try s.broker.createTopic("jobs", settings: TopicSettings(partitions: 2))
        let t0 = s.now
        for p in 0..<2 {
            _ = try await s.broker.publish(topic: "jobs", (0..<5).map { .text("p\(p)-\($0)") }, partition: p)
            _ = try await s.broker.publish(topic: "jobs", [.text("p\(p)-s1", at: t0 + 1_000), .text("p\(p)-s2", at: t0 + 5_000)], partition: p)
        }
        var m = try await s.broker.join(group: "g", member: "m", topics: ["jobs"], settings: Self.settings)
        let first = try await s.fetchAll("g", m.memberID)
        #expect(first.byPartition == [0: (0..<5).map { "p0-\($0)" }, 1: (0..<5).map { "p1-\($0)" }])
        // Acked: p*-0, p*-1, p*-3. Unacked: p*-4. Nacked with a delay: p*-2.
        let acked = first.filter { ["0", "1", "3"].contains($0.text.suffix(1)) }
        try await s.broker.ack(group: "g", member: m.memberID, acked.map(\.receipt))
        let nacked = first.filter { $0.text.hasSuffix("-2") }
        try await s.broker.nack(group: "g", member: m.memberID, nacked.map(\.receipt), delay: 3_000, reason: "later")
        var stats = try await s.broker.groupStats("g")
        #expect(stats.partitions.map(\.committed) == [4, 4])
        #expect(stats.partitions.map(\.lag) == [1, 1])

        try await s.restart()
        stats = try await s.broker.groupStats("g")
        m = try await s.broker.join(group: "g", member: "m2", topics: ["jobs"])
        stats = try await s.broker.groupStats("g")
        #expect(stats.partitions.map(\.committed) == [4, 4])
        #expect(stats.partitions.map(\.lag) == [1, 1])
        let again = try await s.consumeAll("g", m.memberID)
        #expect(again.texts.sorted() == ["p0-4", "p1-4"])

        // Scheduled at +1 s fires once; restart right after; no second fire.
        try await s.advance(by: 1_000)
        try await s.restart()
        m = try await s.broker.join(group: "g", member: "m3", topics: ["jobs"])
        #expect(try await s.broker.fireDue() == 0)
        let fired = try await s.consumeAll("g", m.memberID)
        #expect(fired.texts.sorted() == ["p0-s1", "p1-s1"])

        // The retries were due at +3 s: they come back after a restart, as retries.
        try await s.advance(by: 2_000)
        let retried = try await s.fetchAll("g", m.memberID)
        #expect(retried.texts.sorted() == ["p0-2", "p1-2"])
        #expect(retried.allSatisfy { $0.source == .retry && $0.attempt == 2 && $0.lastError == "later" })
        try await s.restart()  // unacked retries come back once more
        m = try await s.broker.join(group: "g", member: "m4", topics: ["jobs"])
        let retriedAgain = try await s.consumeAll("g", m.memberID)
        #expect(retriedAgain.texts.sorted() == ["p0-2", "p1-2"])
        #expect(retriedAgain.allSatisfy { $0.source == .retry })

        try await s.advance(by: 2_000)
        #expect(try await s.consumeAll("g", m.memberID).texts.sorted() == ["p0-s2", "p1-s2"])
        try await s.restart()
        m = try await s.broker.join(group: "g", member: "m5", topics: ["jobs"])
        try await s.advance(by: 100_000)
        #expect(try await s.fetchAll("g", m.memberID).isEmpty)
        stats = try await s.broker.groupStats("g")
        #expect(stats.partitions.map(\.committed) == [7, 7])
        #expect(stats.partitions.map(\.lag) == [0, 0])
        #expect(stats.partitions.map(\.retriesPending) == [0, 0])
        #expect(try await s.broker.partitionStats(topic: "jobs").map(\.scheduled) == [0, 0])
        await s.broker.close()
    }

    /// A restart while messages and retries are still in the wheel: they fire once, when due.
    @Test func pendingScheduleAndRetriesSurviveRestarts() async throws {
        let s = try await Scenario.make()
        try s.broker.createTopic("jobs", settings: TopicSettings(partitions: 1))
        let t0 = s.now
        let published = try await s.broker.publish(topic: "jobs", (1...5).map { .text("s\($0)", at: t0 + Int64($0) * 1_000) } + [.text("now")])
        var m = try await s.broker.join(group: "g", member: "m", topics: ["jobs"], settings: Self.settings)
        let now = try await s.fetchAll("g", m.memberID)
        #expect(now.texts == ["now"])
        try await s.broker.nack(group: "g", member: m.memberID, now.map(\.receipt), delay: 2_500)
        var seen: [String] = []
        for _ in 0..<6 {
            try await s.restart()
            m = try await s.broker.join(group: "g", member: "m", topics: ["jobs"])
            try await s.advance(by: 1_000)
            let got = try await s.consumeAll("g", m.memberID)
            seen += got.texts
            for d in got where d.text.hasPrefix("s") {
                let i = Int(d.text.dropFirst())!
                #expect(d.id == published[i - 1].id)
                #expect(d.dueAt == t0 + Int64(i) * 1_000)
            }
        }
        #expect(seen == ["s1", "s2", "now", "s3", "s4", "s5"])
        #expect(try await s.broker.partitionStats(topic: "jobs").map(\.scheduled) == [0])
        await s.broker.close()
    }

    /// Dead letters, counters and a redrive across a restart.
    @Test func deadLettersAndRedriveAcrossRestart() async throws {
        let s = try await Scenario.make()
        try s.broker.createTopic("jobs", settings: TopicSettings(partitions: 1))
        _ = try await s.broker.publish(topic: "jobs", [.text("a"), .text("b")])
        var m = try await s.broker.join(group: "g", member: "m", topics: ["jobs"], settings: Self.settings)
        let got = try await s.fetchAll("g", m.memberID)
        try await s.broker.term(group: "g", member: m.memberID, [got[0].receipt], reason: "bad")
        try await s.broker.ack(group: "g", member: m.memberID, [got[1].receipt])
        try await s.restart()
        #expect(try await s.broker.redrive(group: "g") == 1)
        try await s.restart()
        try await s.broker.fireDue()
        m = try await s.broker.join(group: "g", member: "m", topics: ["jobs"])
        #expect(try await s.consumeAll("g", m.memberID).texts == ["a"])
        try await s.restart()
        m = try await s.broker.join(group: "g", member: "m", topics: ["jobs"])
        #expect(try await s.broker.redrive(group: "g") == 0)
        try await s.broker.fireDue()
        #expect(try await s.fetchAll("g", m.memberID).isEmpty)
        await s.broker.close()
    }
}
