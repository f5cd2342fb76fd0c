import ChimeBroker
import ChimeStore
import Foundation
import Testing

/// Per-key limits the broker enforces for every member at once, and how one fetch shares
/// itself among several topics.
@Suite struct GroupLimitTests {
    @Test func keyConcurrencyCapsOneKeyInFlightAcrossMembersAndLetsTheNextGoWhenOneIsDone() async throws {
        let s = try await Scenario.make()
        try s.broker.createTopic("jobs", settings: TopicSettings(partitions: 1))
        _ = try await s.broker.publish(topic: "jobs", (0..<6).map { .text("k\($0)", key: "k") } + [.text("other", key: "o")])
        try s.broker.createGroup(
            "g", settings: GroupSettings(mode: .shared, leaseMilliseconds: 600_000, sessionTimeoutMilliseconds: 1_000_000, keyConcurrency: 2))
        let a = try await s.broker.join(group: "g", member: "a", topics: ["jobs"]).memberID
        let b = try await s.broker.join(group: "g", member: "b", topics: ["jobs"]).memberID
        let first = try await s.broker.fetch(group: "g", member: a, max: 10)
        #expect(first.texts == ["k0", "k1", "other"], "two of key k, and the other key")
        #expect(try await s.broker.fetch(group: "g", member: b, max: 10).isEmpty, "k is at its limit for every member")
        #expect(try await s.broker.ack(group: "g", member: a, [first[0].receipt]) == [nil])
        #expect(try await s.broker.fetch(group: "g", member: b, max: 10).texts == ["k2"])
        await s.broker.close()
    }

    @Test func aRetryAndANewMessageOfOneKeyCountTogether() async throws {
        let s = try await Scenario.make()
        try s.broker.createTopic("jobs", settings: TopicSettings(partitions: 1))
        _ = try await s.broker.publish(topic: "jobs", [.text("a", key: "k"), .text("b", key: "k"), .text("c", key: "k")])
        try s.broker.createGroup("g", settings: GroupSettings(leaseMilliseconds: 600_000, sessionTimeoutMilliseconds: 1_000_000, keyConcurrency: 2))
        let m = try await s.broker.join(group: "g", member: "m", topics: ["jobs"]).memberID
        let got = try await s.broker.fetch(group: "g", member: m, max: 10)
        #expect(got.texts == ["a", "b"])
        // "a" goes through the wheel to the retry log; at its retry "b" is still out, and
        // "c" has waited: the retry takes the second place, "c" waits on.
        #expect(try await s.broker.nack(group: "g", member: m, [got[0].receipt], delay: 1_000, reason: "later") == [nil])
        #expect(try await s.broker.fetch(group: "g", member: m, max: 10).texts == ["c"])
        try await s.advance(by: 1_000)
        #expect(try await s.broker.fetch(group: "g", member: m, max: 10).isEmpty, "b and c are out: k is at its limit")
        #expect(try await s.broker.ack(group: "g", member: m, [got[1].receipt]) == [nil])
        #expect(try await s.broker.fetch(group: "g", member: m, max: 10).texts == ["a"])
        await s.broker.close()
    }

    @Test func keyRateLimitSpacesOneKeysDeliveriesAndLeavesOtherKeysAlone() async throws {
        let s = try await Scenario.make()
        try s.broker.createTopic("jobs", settings: TopicSettings(partitions: 1))
        _ = try await s.broker.publish(topic: "jobs", (0..<4).map { .text("k\($0)", key: "k") } + (0..<3).map { .text("o\($0)", key: "o\($0)") })
        try s.broker.createGroup(
            "g", settings: GroupSettings(mode: .shared, leaseMilliseconds: 600_000, sessionTimeoutMilliseconds: 1_000_000, keyRateLimit: 2, keyRateBurst: 1))
        let a = try await s.broker.join(group: "g", member: "a", topics: ["jobs"]).memberID
        let b = try await s.broker.join(group: "g", member: "b", topics: ["jobs"]).memberID
        #expect(try await s.broker.fetch(group: "g", member: a, max: 10).texts == ["k0", "o0", "o1", "o2"])
        #expect(try await s.broker.fetch(group: "g", member: b, max: 10).isEmpty, "k's next token is 500 ms away, for every member")
        s.clock.advance(by: 499)
        #expect(try await s.broker.fetch(group: "g", member: b, max: 10).isEmpty)
        s.clock.advance(by: 1)
        #expect(try await s.broker.fetch(group: "g", member: b, max: 10).texts == ["k1"])
        s.clock.advance(by: 1_000)
        #expect(try await s.broker.fetch(group: "g", member: a, max: 10).texts == ["k2"], "a burst of one: a second's wait gives one")
        await s.broker.close()
    }

    @Test func aFetchOverSeveralTopicsTakesAnEvenShareOfEachAndFillsUpFromTheBusyOnes() async throws {
        let s = try await Scenario.make()
        for t in ["a", "b", "c"] { try s.broker.createTopic(t, settings: TopicSettings(partitions: 2)) }
        for p in 0..<2 {
            _ = try await s.broker.publish(topic: "a", (0..<50).map { .text("a\(p)-\($0)") }, partition: p)
            _ = try await s.broker.publish(topic: "b", (0..<50).map { .text("b\(p)-\($0)") }, partition: p)
        }
        _ = try await s.broker.publish(topic: "c", [.text("c-0"), .text("c-1")], partition: 0)
        try s.broker.createGroup("g", settings: GroupSettings(mode: .shared, sessionTimeoutMilliseconds: 1_000_000))
        let m = try await s.broker.join(group: "g", member: "m", topics: ["a", "b", "c"]).memberID
        let got = try await s.broker.fetch(group: "g", member: m, max: 30)
        let byTopic = Dictionary(grouping: got, by: \.topic).mapValues(\.count)
        #expect(got.count == 30)
        #expect(byTopic["c"] == 2, "the small topic gives all it has")
        #expect(byTopic["a"] == 14 && byTopic["b"] == 14, "the rest is shared evenly: \(byTopic)")
        await s.broker.close()
    }

    /// Which topic is served first changes from fetch to fetch: over many one-message
    /// fetches, every topic comes first some of the time.
    @Test func theTopicServedFirstChangesFromFetchToFetch() async throws {
        let s = try await Scenario.make()
        for t in ["a", "b", "c"] {
            try s.broker.createTopic(t, settings: TopicSettings(partitions: 1))
            _ = try await s.broker.publish(topic: t, (0..<40).map { .text("\(t)\($0)") })
        }
        try s.broker.createGroup("g", settings: GroupSettings(mode: .shared, sessionTimeoutMilliseconds: 1_000_000))
        let m = try await s.broker.join(group: "g", member: "m", topics: ["a", "b", "c"]).memberID
        var first: [String: Int] = [:]
        for _ in 0..<60 {
            let got = try await s.broker.fetch(group: "g", member: m, max: 1)
            first[got[0].topic, default: 0] += 1
            #expect(try await s.broker.ack(group: "g", member: m, got.map(\.receipt)) == [nil])
        }
        #expect(first.keys.sorted() == ["a", "b", "c"], "\(first)")
        #expect(first.values.allSatisfy { $0 >= 8 }, "no topic starved: \(first)")
        await s.broker.close()
    }

    @Test func aGroupsModeAndLimitsSurviveARestart() async throws {
        let s = try await Scenario.make()
        let settings = GroupSettings(
            mode: .shared, leaseMilliseconds: 5_000, sessionTimeoutMilliseconds: 7_000, keyConcurrency: 3, keyRateLimit: 2.5, keyRateBurst: 5)
        #expect(try s.broker.createGroup("g", settings: settings) == settings)
        try await s.restart()
        #expect(try s.broker.groupSettings("g") == settings)
        await s.broker.close()
    }

    @Test func settingsWrittenBeforeModesAndKeyLimitsReadAsTheirDefaults() throws {
        let old = #"{"keyOrdering":true,"leaseMilliseconds":5000,"maxInFlight":7,"maxWindow":100,"sessionTimeoutMilliseconds":9000}"#
        let s = try JSONDecoder().decode(GroupSettings.self, from: Data(old.utf8))
        #expect(s == GroupSettings(maxInFlight: 7, leaseMilliseconds: 5_000, sessionTimeoutMilliseconds: 9_000, keyOrdering: true, maxWindow: 100))
        #expect(s.mode == .partitioned && s.keyConcurrency == nil && s.keyRateLimit == nil)
    }

    @Test func settingsThatContradictOrOverflowAreRefusedAndNothingChanges() async throws {
        let s = try await Scenario.make()
        try s.broker.createGroup("g")
        await expectBrokerError(.invalidArgument) { try await s.broker.configure(group: "g") { $0.keyOrdering = true; $0.keyConcurrency = 3 } }
        await expectBrokerError(.invalidArgument) { try await s.broker.configure(group: "g") { $0.keyConcurrency = 0 } }
        await expectBrokerError(.invalidArgument) { try await s.broker.configure(group: "g") { $0.keyRateLimit = .infinity } }
        await expectBrokerError(.invalidArgument) { try await s.broker.configure(group: "g") { $0.keyRateBurst = 0.5; $0.keyRateLimit = 1 } }
        #expect(try s.broker.groupSettings("g") == s.options.defaultGroup)
        await expectBrokerError(.groupExists) { try s.broker.createGroup("g") }
        #expect(try s.broker.createGroup("g", settings: GroupSettings(mode: .shared), ifAbsent: true) == s.options.defaultGroup)
        await s.broker.close()
    }

    @Test func aGroupIsDeletedOnlyWithoutLiveMembersAndWithoutPositionsInLiveTopics() async throws {
        let s = try await Scenario.make()
        try s.broker.createTopic("jobs", settings: TopicSettings(partitions: 1))
        _ = try await s.broker.publish(topic: "jobs", [.text("x")])
        try s.broker.createGroup("g", settings: GroupSettings(sessionTimeoutMilliseconds: 10_000))
        let m = try await s.broker.join(group: "g", member: "m", topics: ["jobs"]).memberID
        _ = try await s.consumeAll("g", m)
        await expectBrokerError(.groupInUse) { try await s.broker.deleteGroup("g") }
        s.clock.advance(by: 10_001)
        // The member timed out, but the group still has its position in jobs.
        await expectBrokerError(.groupInUse) { try await s.broker.deleteGroup("g") }
        #expect(try await s.broker.groupStats("g").members == 0)
        try await s.broker.deleteTopic("jobs")
        try await s.broker.deleteGroup("g")
        #expect(!s.broker.listGroups().contains("g"))
        await expectBrokerError(.unknownGroup) { try s.broker.groupSettings("g") }
        await expectBrokerError(.unknownGroup) { try await s.broker.deleteGroup("g") }
        // The name is free, and a new group starts from nothing; the deletion is durable.
        try s.broker.createTopic("jobs", settings: TopicSettings(partitions: 1))
        _ = try await s.broker.publish(topic: "jobs", [.text("y")])
        try s.broker.createGroup("g", settings: GroupSettings(mode: .shared))
        try await s.restart()
        #expect(try s.broker.groupSettings("g").mode == .shared)
        let again = try await s.broker.join(group: "g", member: "m", topics: ["jobs"]).memberID
        #expect(try await s.consumeAll("g", again).texts == ["y"])
        await s.broker.close()
    }
}
