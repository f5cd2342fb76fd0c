import ChimeBroker
import ChimeStore
import ChimeTestSupport
import Testing

@Suite struct SmokeTests {
    @Test func publishFireDeliverAck() async throws {
        let dir = try TemporaryDirectory()
        let clock = ManualClock(BrokerFixture.epoch)
        let broker = try await Broker.open(BrokerFixture.options(dir.path, clock: clock), logger: BrokerFixture.logger)
        try broker.createTopic("jobs", settings: TopicSettings(partitions: 2))
        let now = clock.now()
        let published = try await broker.publish(topic: "jobs", [.text("a"), .text("b", at: now + 1000), .text("c", key: "k")])
        #expect(published.count == 3)
        #expect(published.allSatisfy { $0.id != nil && !$0.duplicate })
        let m = try await broker.join(group: "workers", member: "w1", topics: ["jobs"])
        #expect(m.assignment.count == 2)
        var got = try await broker.fetch(group: "workers", member: m.memberID, max: 10)
        #expect(Set(got.map(\.text)) == ["a", "c"])
        let results = try await broker.ack(group: "workers", member: m.memberID, got.map(\.receipt))
        #expect(results.allSatisfy { $0 == nil })
        clock.advance(by: 1000)
        #expect(try await broker.fireDue() == 1)
        got = try await broker.fetch(group: "workers", member: m.memberID, max: 10)
        #expect(got.map(\.text) == ["b"])
        #expect(got.first?.id == published[1].id)
        #expect(got.first?.dueAt == now + 1000)
        try await broker.ack(group: "workers", member: m.memberID, got.map(\.receipt))
        await broker.close()

        // Reopen: nothing is delivered again.
        let again = try await Broker.open(BrokerFixture.options(dir.path, clock: clock), logger: BrokerFixture.logger)
        let m2 = try await again.join(group: "workers", member: "w1", topics: ["jobs"])
        #expect(try await again.fetch(group: "workers", member: m2.memberID, max: 10).isEmpty)
        await again.close()
    }
}
