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
