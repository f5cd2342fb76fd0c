import ChimeBroker
import ChimeStore
import Testing

/// The group's rate limit is shared by all its members and measured on the injected clock.
@Suite struct RateLimitTests {
    @Test func rateIsSharedAcrossMembers() async throws {
        let s = try await Scenario.make()
        try s.broker.createTopic("jobs", settings: TopicSettings(partitions: 4))
        for p in 0..<4 { _ = try await s.broker.publish(topic: "jobs", (0..<50).map { .text("p\(p)-\($0)") }, partition: p) }
        let settings = GroupSettings(sessionTimeoutMilliseconds: 1_000_000, rateLimit: 10)
        let a = try await s.broker.join(group: "g", member: "a", topics: ["jobs"], settings: settings)
        let b = try await s.broker.join(group: "g", member: "b", topics: ["jobs"])
        // At one instant, both members together get the burst (10) and no more.
        let burstA = try await s.broker.fetch(group: "g", member: a.memberID, max: 100)
        let burstB = try await s.broker.fetch(group: "g", member: b.memberID, max: 100)
        #expect(burstA.count + burstB.count == 10)
        var perSecond: [Int] = []
        var all = burstA + burstB
        for _ in 0..<5 {
            var count = 0
            for _ in 0..<10 {
                s.clock.advance(by: 100)
                for member in [a.memberID, b.memberID] {
                    let got = try await s.broker.fetch(group: "g", member: member, max: 100)
                    count += got.count
                    all += got
                    try await s.broker.ack(group: "g", member: member, got.map(\.receipt))
                }
            }
            perSecond.append(count)
        }
        #expect(perSecond == [10, 10, 10, 10, 10])
        // Nothing twice, and each partition in log order.
        #expect(all.textSet.count == all.count)
        for (p, texts) in all.byPartition { #expect(texts == (0..<texts.count).map { "p\(p)-\($0)" }) }
        await s.broker.close()
    }

    @Test func changingTheRateTakesEffect() async throws {
        let s = try await Scenario.make()
        try s.broker.createTopic("jobs", settings: TopicSettings(partitions: 1))
        _ = try await s.broker.publish(topic: "jobs", (0..<100).map { .text("m\($0)") })
        let m = try await s.broker.join(group: "g", member: "m", topics: ["jobs"], settings: GroupSettings(sessionTimeoutMilliseconds: 1_000_000, rateLimit: 2))
        #expect(try await s.broker.fetch(group: "g", member: m.memberID, max: 100).count == 2)
        try await s.broker.configure(group: "g", GroupSettings(sessionTimeoutMilliseconds: 1_000_000, rateLimit: 20))
        s.clock.advance(by: 1_000)
        #expect(try await s.broker.fetch(group: "g", member: m.memberID, max: 100).count == 20)
        try await s.broker.configure(group: "g", GroupSettings(sessionTimeoutMilliseconds: 1_000_000))
        #expect(try await s.broker.fetch(group: "g", member: m.memberID, max: 100).count == 78)
        await s.broker.close()
    }
}
