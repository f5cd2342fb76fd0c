import ChimeBroker
import ChimeStore
import Foundation
import Testing

/// Producer and dedup state rebuilt from the logs alone, as after a crash before the
/// snapshot was written (the snapshot files are removed between close and open).
@Suite struct ProducerRecoveryTests {
    func dropProducerSnapshots(_ s: Scenario) throws {
        let topics = s.dir.path + "/topics"
        for topic in try FileManager.default.contentsOfDirectory(atPath: topics) {
            for p in try FileManager.default.contentsOfDirectory(atPath: topics + "/" + topic) {
                try? FileManager.default.removeItem(atPath: "\(topics)/\(topic)/\(p)/producers.snapshot")
            }
        }
    }

    func restartFromLogs(_ s: Scenario) async throws {
        await s.broker.close()
        try dropProducerSnapshots(s)
        try await s.restart()
    }

    @Test func dedupAndSequencesFromTheLogs() async throws {
        let s = try await Scenario.make()
        try s.broker.createTopic("jobs", settings: TopicSettings(partitions: 1, dedupWindowMilliseconds: 10_000))
        let t0 = s.now
        let first = try await s.broker.publish(topic: "jobs", [
            .text("now", dedup: "d-now"), .text("soon", at: t0 + 1_000, dedup: "d-soon"), .text("far", at: t0 + 60_000, dedup: "d-far"),
        ])
        let stamped = try await s.broker.publish(
            topic: "jobs", [.text("p0"), .text("p1", dedup: "d-now"), .text("p2")], partition: 0, producer: ProducerStamp(producerID: 9, sequence: 0))
        #expect(stamped.map(\.duplicate) == [false, true, false])
        let stampedLater = try await s.broker.publish(
            topic: "jobs", [.text("q0", at: t0 + 2_000)], partition: 0, producer: ProducerStamp(producerID: 10, sequence: 0))
        try await s.advance(by: 1_000)  // "soon" fires into the ready log

        try await restartFromLogs(s)
        let again = try await s.broker.publish(topic: "jobs", [
            .text("now2", dedup: "d-now"), .text("soon2", dedup: "d-soon"), .text("far2", dedup: "d-far"),
        ])
        #expect(again.map(\.duplicate) == [true, true, true])
        #expect(again.map(\.id) == first.map(\.id))
        let retried = try await s.broker.publish(
            topic: "jobs", [.text("p0"), .text("p1", dedup: "d-now"), .text("p2")], partition: 0, producer: ProducerStamp(producerID: 9, sequence: 0))
        #expect(retried.map(\.duplicate) == [true, true, true])
        let retriedLater = try await s.broker.publish(
            topic: "jobs", [.text("q0", at: t0 + 2_000)], partition: 0, producer: ProducerStamp(producerID: 10, sequence: 0))
        #expect(retriedLater.map(\.duplicate) == [true])
        #expect(stampedLater.map(\.duplicate) == [false])
        await expectBrokerError(.sequenceGap) {
            try await s.broker.publish(topic: "jobs", [.text("p9")], partition: 0, producer: ProducerStamp(producerID: 9, sequence: 4))
        }
        let next = try await s.broker.publish(topic: "jobs", [.text("p3")], partition: 0, producer: ProducerStamp(producerID: 9, sequence: 3))
        #expect(next.map(\.duplicate) == [false])

        // Past the window (counted from the publish, also for the fired one), stored again.
        s.clock.advance(by: 9_000)
        let expired = try await s.broker.publish(topic: "jobs", [.text("now3", dedup: "d-now"), .text("soon3", dedup: "d-soon")])
        #expect(expired.map(\.duplicate) == [false, false])

        let m = try await s.broker.join(group: "g", member: "m", topics: ["jobs"], settings: GroupSettings(sessionTimeoutMilliseconds: 1_000_000))
        try await s.advance(by: 0)
        #expect(try await s.consumeAll("g", m.memberID).texts == ["now", "p0", "p2", "soon", "p3", "now3", "soon3", "q0"])
        await s.broker.close()
    }
}
