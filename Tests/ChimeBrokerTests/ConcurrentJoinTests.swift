import ChimeStore
import Synchronization
import Testing

@testable import ChimeBroker

/// Members joining at the same moment: a group's rebalance waits for the broker between
/// reading who subscribes to what and applying the result, so rebalances interleave, and
/// the one applied last must still cover every member's topics.
@Suite struct ConcurrentJoinTests {
    /// The broker, with one call for the partitions of one topic held until released (the
    /// test's fault injection: a slow answer at the worst moment).
    final class SlowTopicHost: GroupHost {
        let broker: Broker
        let topic: String
        /// The call for `topic` that waits, counting from 1.
        let heldCall: Int
        private let calls = Mutex(0)
        let (reached, reachedSignal) = AsyncStream<Void>.makeStream()
        let (released, release) = AsyncStream<Void>.makeStream()

        init(_ broker: Broker, holding call: Int, for topic: String) {
            self.broker = broker
            self.topic = topic
            heldCall = call
        }

        func partitions(ofTopic name: String, create: Bool) async throws -> [Partition] {
            if name == topic, calls.withLock({ $0 += 1; return $0 }) == heldCall {
                reachedSignal.yield()
                for await _ in released { break }
            }
            return try await broker.partitions(ofTopic: name, create: create)
        }
        func partition(_ key: PartitionKey) -> Partition? { broker.partition(key) }
        var partitionsWithState: [Partition] { broker.partitionsWithState }
        func topicSettings(_ topicID: UInt32) -> TopicSettings? { broker.topicSettings(topicID) }
        func publishInternal(topic: String, messages: [OutgoingMessage]) async throws {
            try await broker.publishInternal(topic: topic, messages: messages)
        }
        var occurrenceWatch: OccurrenceWatch { broker.occurrenceWatch }
        func flowChildrenEnded(_ ends: [(FlowMembership, succeeded: Bool, detail: [UInt8])]) async throws {
            try await broker.flowChildrenEnded(ends)
        }
    }

    /// The first member's rebalance is held while it reads its topics; the second member
    /// joins and its rebalance completes; then the first one's completes. Applied as read,
    /// it would leave the second member's topic out of the group (the pipeline test's
    /// starved label in CI).
    @Test(arguments: [GroupMode.shared, .partitioned])
    func aRebalanceThatReadTheMembersBeforeAJoinDoesNotUndoIt(mode: GroupMode) async throws {
        let s = try await Scenario.make()
        for t in ["a", "slow", "b"] { try s.broker.createTopic(t, settings: TopicSettings(partitions: 2)) }
        // Call 1 for "slow" is the join's own check of its topics; call 2 its rebalance's.
        let host = SlowTopicHost(s.broker, holding: 2, for: "slow")
        let group = ConsumerGroup(
            name: "g", id: 900, settings: GroupSettings(mode: mode, leaseMilliseconds: 60_000, sessionTimeoutMilliseconds: 60_000),
            options: s.options, host: host, logger: BrokerFixture.logger)
        let first = Task { try await group.join(memberName: "first", topics: ["a", "slow"]).memberID }
        for await _ in host.reached { break }
        let second = try await group.join(memberName: "second", topics: ["b"]).memberID
        host.release.yield()
        let one = try await first.value
        let seenByFirst = try await group.heartbeat(member: one).assignment.map(\.topic)
        let seenBySecond = try await group.heartbeat(member: second).assignment.map(\.topic)
        #expect(seenBySecond == ["b", "b"], "the second member fetches from \(seenBySecond)")
        #expect(seenByFirst.sorted() == ["a", "a", "slow", "slow"], "the first member fetches from \(seenByFirst)")
        await s.broker.close()
    }
}
