import ChimeBroker
import ChimeStore
import Testing

/// Publishes racing on one partition: dedup and idempotence hold across the partition's
/// suspension points (the wheel's schedule, the sync).
@Suite struct ConcurrentPublishTests {
    @Test func concurrentScheduledPublishesWithOneDedupKeyStoreOnce() async throws {
        let s = try await Scenario.make()
        try s.broker.createTopic("jobs", settings: TopicSettings(partitions: 1))
        let broker = s.broker
        let due = s.now + 1_000
        for round in 0..<20 {
            let results = try await withThrowingTaskGroup(of: PublishedMessage.self) { group in
                for k in 0..<4 {
                    group.addTask { try await broker.publish(topic: "jobs", [.text("r\(round)-\(k)", at: due, dedup: "key\(round)")])[0] }
                }
                var out: [PublishedMessage] = []
                for try await r in group { out.append(r) }
                return out
            }
            #expect(results.filter { !$0.duplicate }.count == 1, "round \(round): \(results)")
            #expect(Set(results.map(\.id)).count == 1, "round \(round): \(results)")
        }
        #expect(try await s.broker.partitionStats(topic: "jobs").map(\.scheduled) == [20])
        await s.broker.close()
    }

    /// A topic's files are opened outside the broker's state lock: publishes that
    /// auto-create one new topic together, and explicit creates racing them, make it once,
    /// and every publish is stored.
    @Test func concurrentAutoCreatingPublishesMakeTheTopicOnceAndStoreEverything() async throws {
        let s = try await Scenario.make()
        let broker = s.broker
        for round in 0..<10 {
            let topic = "new-\(round)"
            let created = try await withThrowingTaskGroup(of: Int.self) { group in
                for k in 0..<8 {
                    group.addTask {
                        if k == 3 {
                            do {
                                try broker.createTopic(topic)
                                return 1
                            } catch let error as BrokerError where error.code == .topicExists {
                                return 0
                            }
                        }
                        _ = try await broker.publish(topic: topic, [.text("\(round)-\(k)")])
                        return 0
                    }
                }
                return try await group.reduce(0, +)
            }
            #expect(broker.listTopics().filter { $0.name == topic }.count == 1)
            #expect(created <= 1)
            #expect(try await broker.partitionStats(topic: topic).reduce(0) { $0 + $1.logEnd } == 7, "round \(round)")
        }
        try await s.restart()
        #expect(s.broker.listTopics().count == 10, "every topic was recorded in meta.json")
        await s.broker.close()
    }

    @Test func concurrentRetriesOfOneProducerBatchStoreOnce() async throws {
        let s = try await Scenario.make()
        try s.broker.createTopic("jobs", settings: TopicSettings(partitions: 1))
        let broker = s.broker
        let due = s.now + 1_000
        for round in 0..<10 {
            let stamp = ProducerStamp(producerID: 3, sequence: Int32(round * 2))
            let results = try await withThrowingTaskGroup(of: [PublishedMessage].self) { group in
                for _ in 0..<3 {
                    group.addTask {
                        try await broker.publish(topic: "jobs", [.text("a\(round)", at: due), .text("b\(round)", at: due + 1)], partition: 0, producer: stamp)
                    }
                }
                var out: [[PublishedMessage]] = []
                for try await r in group { out.append(r) }
                return out
            }
            #expect(results.filter { !$0[0].duplicate }.count == 1, "round \(round): \(results)")
            #expect(Set(results.map { $0.map(\.id) }).count == 1, "round \(round): \(results)")
        }
        #expect(try await s.broker.partitionStats(topic: "jobs").map(\.scheduled) == [20])
        await s.broker.close()
    }
}
