import ChimeBroker
import ChimeStore
import ChimeTestSupport
import Foundation
import Testing

/// Opening a copy of the data directory taken while the broker runs (as a crash leaves it,
/// durability `.always`): no snapshot of the latest state, so the logs and journals after
/// the last snapshots must bring it back.
@Suite struct CrashImageTests {
    func crashImage(of s: Scenario) throws -> TemporaryDirectory {
        let copy = TemporaryDirectory("chime-crash-image")
        try FileManager.default.removeItem(atPath: copy.path)
        try FileManager.default.copyItem(atPath: s.dir.path, toPath: copy.path)
        return copy
    }

    @Test func acksRetriesAndProducersFromTheLogs() async throws {
        let s = try await Scenario.make { $0.durability = .always }
        try s.broker.createTopic("jobs", settings: TopicSettings(partitions: 1))
        let t0 = s.now
        _ = try await s.broker.publish(topic: "jobs", (0..<6).map { .text("m\($0)") }, partition: 0, producer: ProducerStamp(producerID: 1, sequence: 0))
        _ = try await s.broker.publish(topic: "jobs", [.text("s", at: t0 + 5_000, dedup: "d")])
        let settings = GroupSettings(leaseMilliseconds: 60_000, sessionTimeoutMilliseconds: 1_000_000)
        let m = try await s.broker.join(group: "g", member: "m", topics: ["jobs"], settings: settings)
        let got = try await s.fetchAll("g", m.memberID)
        try await s.broker.ack(group: "g", member: m.memberID, [got[0].receipt, got[1].receipt, got[4].receipt])
        try await s.broker.checkpoint()
        try await s.broker.ack(group: "g", member: m.memberID, [got[2].receipt])
        try await s.broker.nack(group: "g", member: m.memberID, [got[3].receipt], delay: 2_000)
        try await s.advance(by: 1_000)

        let image = try crashImage(of: s)
        await s.broker.close()
        var options = s.options
        options.directory = image.path
        let broker = try await Broker.open(options, logger: BrokerFixture.logger)
        let m2 = try await broker.join(group: "g", member: "m", topics: ["jobs"])
        let g = try await broker.groupStats("g")
        #expect(g.partitions.map(\.committed) == [5])
        let first = try await broker.fetch(group: "g", member: m2.memberID, max: 10)
        #expect(first.texts == ["m5"])
        try await broker.ack(group: "g", member: m2.memberID, first.map(\.receipt))
        let retry = try await broker.publish(topic: "jobs", (0..<6).map { .text("m\($0)") }, partition: 0, producer: ProducerStamp(producerID: 1, sequence: 0))
        #expect(retry.allSatisfy { $0.duplicate })
        let dup = try await broker.publish(topic: "jobs", [.text("s2", dedup: "d")])
        #expect(dup.map(\.duplicate) == [true])
        s.clock.advance(by: 1_000)
        try await broker.fireDue()
        let retried = try await broker.fetch(group: "g", member: m2.memberID, max: 10)
        #expect(retried.texts == ["m3"])
        #expect(retried.map(\.source) == [.retry])
        try await broker.ack(group: "g", member: m2.memberID, retried.map(\.receipt))
        s.clock.advance(by: 3_000)
        try await broker.fireDue()
        let fired = try await broker.fetch(group: "g", member: m2.memberID, max: 10)
        #expect(fired.texts == ["s"])
        await broker.close()
    }
}
