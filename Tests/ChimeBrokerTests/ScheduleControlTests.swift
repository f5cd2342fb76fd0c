import ChimeBroker
import ChimeStore
import Testing

/// cancel and reschedule of scheduled messages by id, until they fire.
@Suite struct ScheduleControlTests {
    @Test func cancelAndRescheduleUntilFired() async throws {
        let s = try await Scenario.make()
        try s.broker.createTopic("jobs", settings: TopicSettings(partitions: 2))
        let t0 = s.now
        let published = try await s.broker.publish(topic: "jobs", [
            .text("keep", key: "a", at: t0 + 1_000),
            .text("drop", key: "a", at: t0 + 2_000),
            .text("later", key: "b", at: t0 + 3_000),
            .text("sooner", key: "b", at: t0 + 10_000),
            .text("twice", key: "a", at: t0 + 4_000),
        ])
        let ids = published.map { $0.id! }
        #expect(ids.allSatisfy { $0.kind == .scheduled })

        try await s.broker.cancel(ids[1])
        await expectBrokerError(.unknownMessage) { try await s.broker.cancel(ids[1]) }
        let later = try await s.broker.reschedule(ids[2], to: .at(t0 + 6_000))
        let sooner = try await s.broker.reschedule(ids[3], to: .at(t0 + 500))
        #expect(later != ids[2] && sooner != ids[3])
        #expect(later.partition == ids[2].partition && later.kind == .scheduled)
        // The old id is gone once moved; the new one can be moved again.
        await expectBrokerError(.unknownMessage) { try await s.broker.cancel(ids[2]) }
        let twice1 = try await s.broker.reschedule(ids[4], to: .at(t0 + 5_000))
        let twice2 = try await s.broker.reschedule(twice1, to: .at(t0 + 7_000))

        let m = try await s.broker.join(group: "g", member: "m", topics: ["jobs"])
        var timeline: [(Int64, [String])] = []
        for step in 1...16 {
            try await s.advance(by: 500)
            let got = try await s.consumeAll("g", m.memberID)
            if !got.isEmpty { timeline.append((Int64(step) * 500, got.texts.sorted())) }
            for d in got {
                #expect(d.publishedAt == t0)
                #expect(d.dueAt == d.deliveredAt, "\(d.text) due \(d.dueAt - t0) delivered \(d.deliveredAt - t0)")
                switch d.text {
                case "keep": #expect(d.id == ids[0])
                case "later": #expect(d.id == later)
                case "sooner": #expect(d.id == sooner)
                case "twice": #expect(d.id == twice2)
                default: Issue.record("unexpected \(d.text)")
                }
            }
        }
        #expect(timeline.map(\.0) == [500, 1_000, 6_000, 7_000])
        #expect(timeline.map(\.1) == [["sooner"], ["keep"], ["later"], ["twice"]])

        // Fired ids are no longer pending.
        await expectBrokerError(.unknownMessage) { try await s.broker.cancel(ids[0]) }
        await expectBrokerError(.unknownMessage) { try await s.broker.reschedule(later, to: .at(t0 + 100_000)) }
        await expectBrokerError(.unknownMessage) { try await s.broker.cancel(twice1) }
        #expect(try await s.broker.partitionStats(topic: "jobs").map(\.scheduled) == [0, 0])
        await s.broker.close()
    }

    @Test func unknownAndImmediateIdsAreUnknownMessages() async throws {
        let s = try await Scenario.make()
        let info = try s.broker.createTopic("jobs", settings: TopicSettings(partitions: 2))
        let now = try await s.broker.publish(topic: "jobs", [.text("now")], partition: 0)
        let pending = try await s.broker.publish(topic: "jobs", [.text("pending", at: s.now + 1_000)], partition: 1)
        let immediate = now[0].id!
        #expect(immediate.kind == .ready)
        await expectBrokerError(.unknownMessage) { try await s.broker.cancel(immediate) }
        await expectBrokerError(.unknownMessage) { try await s.broker.reschedule(immediate, to: .at(s.now + 5)) }
        let unknowns = [
            MessageID(topicID: info.id, partition: 1, kind: .scheduled, value: 123_456),
            MessageID(topicID: info.id, partition: 0, kind: .scheduled, value: pending[0].id!.value),  // right position, wrong partition
            MessageID(topicID: info.id, partition: 9, kind: .scheduled, value: 0),
            MessageID(topicID: 999, partition: 0, kind: .scheduled, value: 0),
        ]
        for id in unknowns {
            await expectBrokerError(.unknownMessage) { try await s.broker.cancel(id) }
            await expectBrokerError(.unknownMessage) { try await s.broker.reschedule(id, to: .at(s.now + 5)) }
        }
        #expect(MessageID(pending[0].id!.description) == pending[0].id)
        // The real one is untouched by all that.
        let m = try await s.broker.join(group: "g", member: "m", topics: ["jobs"])
        #expect(try await s.consumeAll("g", m.memberID).texts == ["now"])
        try await s.advance(by: 1_000)
        #expect(try await s.consumeAll("g", m.memberID).texts == ["pending"])
        await s.broker.close()
    }
}
