import ChimeBroker
import ChimeStore
import Testing

/// Dedup keys within the topic's window, and idempotent producers: duplicates are answered
/// with the first id and not stored again, also across a restart.
@Suite struct DedupTests {
    static let topic = TopicSettings(partitions: 2, dedupWindowMilliseconds: 10_000)

    @Test func dedupKeyWithinTheWindowThenStoredAgainAfterIt() async throws {
        let s = try await Scenario.make()
        try s.broker.createTopic("jobs", settings: Self.topic)
        let first = try await s.broker.publish(topic: "jobs", [.text("one", dedup: "d1"), .text("two", dedup: "d2"), .text("one-again", dedup: "d1")])
        #expect(first.map(\.duplicate) == [false, false, true])
        #expect(first[2].id == first[0].id)
        s.clock.advance(by: 5_000)
        let retry = try await s.broker.publish(topic: "jobs", [.text("one-retry", dedup: "d1"), .text("three", dedup: "d3")])
        #expect(retry.map(\.duplicate) == [true, false])
        #expect(retry[0].id == first[0].id)
        #expect(retry[0].partition == first[0].partition)
        // A scheduled message's dedup key too.
        let sched = try await s.broker.publish(topic: "jobs", [.text("s", at: s.now + 50_000, dedup: "ds")])
        #expect(try await s.broker.publish(topic: "jobs", [.text("s2", at: s.now + 60_000, dedup: "ds")]).map(\.id) == [sched[0].id])

        try await s.restart()
        s.clock.advance(by: 4_999)  // 9 999 ms after "one"
        let stillDup = try await s.broker.publish(topic: "jobs", [.text("one-late", dedup: "d1"), .text("s3", dedup: "ds")])
        #expect(stillDup.map(\.duplicate) == [true, true])
        #expect(stillDup.map(\.id) == [first[0].id, sched[0].id])
        s.clock.advance(by: 1)  // the window of "one" is over
        let stored = try await s.broker.publish(topic: "jobs", [.text("one-new", dedup: "d1"), .text("three-dup", dedup: "d3")])
        #expect(stored.map(\.duplicate) == [false, true])
        #expect(stored[0].id != first[0].id)
        #expect(stored[1].id == retry[1].id)

        let m = try await s.broker.join(group: "g", member: "m", topics: ["jobs"], settings: GroupSettings(sessionTimeoutMilliseconds: 1_000_000))
        #expect(try await s.consumeAll("g", m.memberID).texts.sorted() == ["one", "one-new", "three", "two"])
        try await s.advance(by: 50_000)
        #expect(try await s.consumeAll("g", m.memberID).texts == ["s"])
        await s.broker.close()
    }

    @Test func silentProducersAreForgottenAfterTheExpiryAcrossRestarts() async throws {
        let s = try await Scenario.make { $0.producerExpiryMilliseconds = 100_000 }
        try s.broker.createTopic("jobs", settings: Self.topic)
        let (quiet, busy) = (Int64(5), Int64(6))
        _ = try await s.broker.publish(topic: "jobs", [.text("q0")], partition: 0, producer: ProducerStamp(producerID: quiet, sequence: 0))
        _ = try await s.broker.publish(topic: "jobs", [.text("b0")], partition: 0, producer: ProducerStamp(producerID: busy, sequence: 0))
        s.clock.advance(by: 60_000)
        _ = try await s.broker.publish(topic: "jobs", [.text("b1")], partition: 0, producer: ProducerStamp(producerID: busy, sequence: 1))
        // Remembered across a restart with their last-seen times (snapshot version 2).
        try await s.broker.checkpoint()
        try await s.restart()
        s.clock.advance(by: 50_000)  // quiet: silent 110 s; busy: 50 s
        try await s.broker.checkpoint()
        await expectBrokerError(.sequenceGap) {
            try await s.broker.publish(topic: "jobs", [.text("q1")], partition: 0, producer: ProducerStamp(producerID: quiet, sequence: 1))
        }
        let again = try await s.broker.publish(topic: "jobs", [.text("q-new")], partition: 0, producer: ProducerStamp(producerID: quiet, sequence: 0))
        #expect(again.map(\.duplicate) == [false], "forgotten: starts over at 0")
        let retry = try await s.broker.publish(topic: "jobs", [.text("b1")], partition: 0, producer: ProducerStamp(producerID: busy, sequence: 1))
        #expect(retry.map(\.duplicate) == [true], "still known: its retry is a duplicate")
        await s.broker.close()
    }

    @Test func idempotentProducerRetriesAreDuplicatesAndGapsAreRefused() async throws {
        let s = try await Scenario.make()
        try s.broker.createTopic("jobs", settings: Self.topic)
        let p = Int64(77)
        let b0 = try await s.broker.publish(topic: "jobs", [.text("a0"), .text("a1")], partition: 1, producer: ProducerStamp(producerID: p, sequence: 0))
        #expect(b0.map(\.duplicate) == [false, false])
        let retry0 = try await s.broker.publish(topic: "jobs", [.text("a0"), .text("a1")], partition: 1, producer: ProducerStamp(producerID: p, sequence: 0))
        #expect(retry0.map(\.duplicate) == [true, true])
        #expect(retry0.map(\.id) == b0.map(\.id))
        // A batch mixing now and later.
        let b1 = try await s.broker.publish(
            topic: "jobs", [.text("a2"), .text("a3", at: s.now + 1_000)], partition: 1, producer: ProducerStamp(producerID: p, sequence: 2))
        #expect(b1.map(\.duplicate) == [false, false])
        await expectBrokerError(.sequenceGap) {
            try await s.broker.publish(topic: "jobs", [.text("gap")], partition: 1, producer: ProducerStamp(producerID: p, sequence: 7))
        }
        await expectBrokerError(.sequenceGap) {
            try await s.broker.publish(topic: "jobs", [.text("new")], partition: 1, producer: ProducerStamp(producerID: 78, sequence: 3))
        }
        await expectBrokerError(.invalidArgument) {
            try await s.broker.publish(topic: "jobs", [.text("x")], producer: ProducerStamp(producerID: p, sequence: 4))
        }
        // Sequences are per partition: partition 0 starts at 0 for the same producer.
        let other = try await s.broker.publish(topic: "jobs", [.text("b0")], partition: 0, producer: ProducerStamp(producerID: p, sequence: 0))
        #expect(other.map(\.duplicate) == [false])

        try await s.restart()
        let retry1 = try await s.broker.publish(
            topic: "jobs", [.text("a2"), .text("a3", at: s.now + 1_000)], partition: 1, producer: ProducerStamp(producerID: p, sequence: 2))
        #expect(retry1.map(\.duplicate) == [true, true])
        await expectBrokerError(.sequenceGap) {
            try await s.broker.publish(topic: "jobs", [.text("gap")], partition: 1, producer: ProducerStamp(producerID: p, sequence: 5))
        }
        let b2 = try await s.broker.publish(topic: "jobs", [.text("a4")], partition: 1, producer: ProducerStamp(producerID: p, sequence: 4))
        #expect(b2.map(\.duplicate) == [false])

        let m = try await s.broker.join(group: "g", member: "m", topics: ["jobs"])
        let now = try await s.consumeAll("g", m.memberID)
        #expect(now.byPartition == [1: ["a0", "a1", "a2", "a4"], 0: ["b0"]])
        try await s.advance(by: 1_000)
        #expect(try await s.consumeAll("g", m.memberID).texts == ["a3"])
        #expect(try await s.broker.partitionStats(topic: "jobs").map(\.logEnd) == [1, 5])
        await s.broker.close()
    }

    /// A producer batch made only of scheduled messages is remembered through the timer log.
    @Test func scheduledOnlyProducerBatchSurvivesRestartWithoutSnapshot() async throws {
        let s = try await Scenario.make()
        try s.broker.createTopic("jobs", settings: Self.topic)
        let stamp = ProducerStamp(producerID: 5, sequence: 0)
        _ = try await s.broker.publish(topic: "jobs", [.text("x", at: s.now + 100), .text("y", at: s.now + 200)], partition: 0, producer: stamp)
        try await s.restart()
        let retry = try await s.broker.publish(topic: "jobs", [.text("x", at: s.now + 100), .text("y", at: s.now + 200)], partition: 0, producer: stamp)
        #expect(retry.map(\.duplicate) == [true, true])
        let next = try await s.broker.publish(topic: "jobs", [.text("z")], partition: 0, producer: ProducerStamp(producerID: 5, sequence: 2))
        #expect(next.map(\.duplicate) == [false])
        await s.broker.close()
    }
}
