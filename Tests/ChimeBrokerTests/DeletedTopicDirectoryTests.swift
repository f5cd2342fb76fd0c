import ChimeStore
import Testing

@testable import ChimeBroker

/// A topic's directory exists only while meta.json vouches for the topic: work that was
/// under way when it was deleted never makes it again.
@Suite struct DeletedTopicDirectoryTests {
    /// A rebalance or re-drive that fetched a topic's partitions before the topic was
    /// deleted opens the group's state in them afterwards. It used to create the group
    /// directory with every missing parent, making `topics/<name>/<n>/groups/<id>` again;
    /// now the partition's directory must still be there, and the topic is unknown.
    @Test func aGroupOpeningAPartitionOfADeletedTopicMakesNoDirectory() async throws {
        let s = try await Scenario.make()
        try s.broker.createTopic("t", settings: TopicSettings(partitions: 2))
        let partitions = try await s.broker.partitions(ofTopic: "t", create: false)
        let group = try s.broker.group("g", create: GroupSettings())
        try await s.broker.deleteTopic("t")
        let error = await #expect(throws: BrokerError.self) { try await group.prepare(partitions[1]) }
        #expect(error?.code == .unknownTopic)
        #expect(!Directory.isDirectory(s.dir.path + "/topics/t"), "a deleted topic's directory came back")
        try await s.restart()
        #expect(s.broker.listTopics().isEmpty)
        await s.broker.close()
    }
}
