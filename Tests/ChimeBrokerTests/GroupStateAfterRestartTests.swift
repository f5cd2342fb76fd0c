import ChimeBroker
import ChimeStore
import Testing

/// What a group's state looks like after a restart, before any member is back; and who may
/// create a dead-letter topic when auto-create is off.
@Suite struct GroupStateAfterRestartTests {
    @Test func statsShowTheCommittedPositionBeforeAnyMemberRejoins() async throws {
        let s = try await Scenario.make()
        try s.broker.createTopic("t", settings: TopicSettings(partitions: 2))
        _ = try await s.broker.publish(topic: "t", (0..<6).map { .text("m\($0)") }, partition: 0)
        let m = try await s.broker.join(group: "g", member: "a", topics: ["t"]).memberID
        let got = try await s.broker.fetch(group: "g", member: m, max: 4)
        #expect(got.count == 4)
        try await s.broker.ack(group: "g", member: m, got.map(\.receipt))
        try await s.restart()

        let stats = try await s.broker.groupStats("g")
        let p0 = stats.partitions.first { $0.topic == "t" && $0.partition == 0 }
        #expect(p0?.committed == 4)
        #expect(p0?.lag == 2)
        #expect(stats.members == 0)
    }

    @Test func withAutoCreateOffOnlyAGroupsOwnDeadLetterTopicIsCreated() async throws {
        let s = try await Scenario.make { $0.autoCreateTopics = false }
        await expectBrokerError(.unknownTopic) { try await s.broker.publish(topic: "nobody.dlq", [.text("x")]) }
        try s.broker.createTopic("t", settings: TopicSettings(partitions: 1))
        _ = try await s.broker.publish(topic: "t", [.text("x")])
        let m = try await s.broker.join(group: "g", member: "a", topics: ["t"]).memberID
        let d = try await s.broker.fetch(group: "g", member: m, max: 1)
        let refused = try await s.broker.term(group: "g", member: m, d.map(\.receipt), reason: "bad")
        #expect(refused == [nil])
        #expect(s.broker.listTopics().map(\.name).contains("g.dlq"))
        #expect(!s.broker.listTopics().map(\.name).contains("nobody.dlq"))
    }
}
