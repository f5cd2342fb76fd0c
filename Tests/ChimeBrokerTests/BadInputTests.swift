import ChimeBroker
import ChimeStore
import ChimeWheel
import Testing

/// Refused input gets its typed error, stores nothing, and leaves the broker serving.
@Suite struct BadInputTests {
    func serving(_ s: Scenario, _ member: UInt64, expect texts: [String], sourceLocation: SourceLocation = #_sourceLocation) async throws {
        let tag = "ok\(s.now)"
        s.clock.advance(by: 1)
        _ = try await s.broker.publish(topic: "jobs", [.text(tag)], partition: 0)
        let got = try await s.consumeAll("g", member)
        #expect(got.texts.sorted() == (texts + [tag]).sorted(), sourceLocation: sourceLocation)
    }

    @Test func refusalsKeepTheBrokerServing() async throws {
        let s = try await Scenario.make { $0.autoCreateTopics = false }
        try s.broker.createTopic("jobs", settings: TopicSettings(partitions: 2, maxMessageBytes: 64))
        let m = try await s.broker.join(group: "g", member: "m", topics: ["jobs"])

        await expectBrokerError(.unknownTopic) { try await s.broker.publish(topic: "nope", [.text("x")]) }
        await expectBrokerError(.unknownTopic) { try await s.broker.join(group: "g2", member: "m", topics: ["nope"]) }
        await expectBrokerError(.unknownTopic) { try await s.broker.partitionStats(topic: "nope") }
        #expect(s.broker.listTopics().map(\.name) == ["jobs"])
        try await serving(s, m.memberID, expect: [])

        await expectBrokerError(.badPartition) { try await s.broker.publish(topic: "jobs", [.text("x")], partition: 2) }
        await expectBrokerError(.badPartition) { try await s.broker.publish(topic: "jobs", [.text("x")], partition: -1) }
        try await serving(s, m.memberID, expect: [])

        let big = String(repeating: "x", count: 65)
        await expectBrokerError(.messageTooLarge) { try await s.broker.publish(topic: "jobs", [.text(big)]) }
        await expectBrokerError(.messageTooLarge) { try await s.broker.publish(topic: "jobs", [.text(String(repeating: "y", count: 60), key: "12345")]) }
        // One bad message refuses the whole call, whatever partitions the others go to.
        let keys = (0..<8).map { "key\($0)" }
        await expectBrokerError(.messageTooLarge) {
            try await s.broker.publish(topic: "jobs", keys.map { .text("fine", key: $0) } + [.text(big, key: "other")])
        }
        try await serving(s, m.memberID, expect: [])

        var reserved = OutgoingMessage.text("r")
        reserved.headers = [RecordHeader(name: "chime-x", value: [1])]
        await expectBrokerError(.invalidArgument) { try await s.broker.publish(topic: "jobs", [reserved]) }
        await expectBrokerError(.invalidArgument) {
            try await s.broker.publish(topic: "jobs", keys.map { .text("fine", key: $0) } + [reserved])
        }
        await expectBrokerError(.invalidArgument) { try await s.broker.publish(topic: "jobs", [reserved], partition: 1) }
        var scheduledReserved = reserved
        scheduledReserved.due = .at(s.now + 1_000)
        await expectBrokerError(.invalidArgument) { try await s.broker.publish(topic: "jobs", [scheduledReserved]) }
        var fine = OutgoingMessage.text("chime-in-body")
        fine.headers = [RecordHeader(name: "Chime-x", value: [1]), RecordHeader(name: "x-chime-y", value: [2])]
        _ = try await s.broker.publish(topic: "jobs", [fine], partition: 1)
        try await serving(s, m.memberID, expect: ["chime-in-body"])

        for name in ["", "a b", "a/b", "..", ".", "é", String(repeating: "n", count: 201), "tab\t"] {
            await expectBrokerError(.invalidName) { try s.broker.createTopic(name) }
            await expectBrokerError(.invalidName) { try await s.broker.publish(topic: name, [.text("x")]) }
            await expectBrokerError(.invalidName) { try await s.broker.join(group: name, member: "m", topics: ["jobs"]) }
            await expectBrokerError(.invalidName) { try await s.broker.join(group: "g3", member: "m", topics: [name]) }
        }
        await expectBrokerError(.topicExists) { try s.broker.createTopic("jobs") }
        await expectBrokerError(.invalidArgument) { try s.broker.createTopic("zero", settings: TopicSettings(partitions: 0)) }
        await expectBrokerError(.invalidArgument) { try await s.broker.join(group: "g4", member: "m", topics: []) }
        await expectBrokerError(.invalidArgument) {
            try await s.broker.join(group: "g5", member: "m", topics: ["jobs"], settings: GroupSettings(maxInFlight: 0))
        }
        await expectBrokerError(.unknownGroup) { try await s.broker.fetch(group: "never", member: 1, max: 1) }
        await expectBrokerError(.unknownMember) { try await s.broker.fetch(group: "g", member: 12345, max: 1) }
        await expectBrokerError(.invalidArgument) { try await s.broker.nack(group: "g", member: m.memberID, [], delay: -1) }
        #expect(s.broker.listTopics().map(\.name) == ["jobs"])
        #expect(s.broker.listGroups() == ["g"])
        try await serving(s, m.memberID, expect: [])
        #expect(try await s.broker.partitionStats(topic: "jobs").map(\.logEnd) == [5, 1])
        await s.broker.close()
        await expectBrokerError(.closed) { try await s.broker.publish(topic: "jobs", [.text("late")]) }
    }
}

@Suite struct BadDueTimeTests {
    /// A due time past what the wheel can hold is bad input, refused before anything of
    /// the call is stored; rescheduling to it too (the message stays pending).
    @Test func dueTimeBeyondTheWheel() async throws {
        let s = try await Scenario.make()
        try s.broker.createTopic("jobs", settings: TopicSettings(partitions: 1))
        try await s.broker.fireDue()
        let limit = WheelGeometry.slots256.limit
        await expectBrokerError(.invalidArgument) {
            try await s.broker.publish(topic: "jobs", [.text("now"), .text("never", at: limit)])
        }
        let pending = try await s.broker.publish(topic: "jobs", [.text("soon", at: s.now + 1_000)])
        await expectBrokerError(.invalidArgument) { try await s.broker.reschedule(pending[0].id!, to: .at(Int64.max)) }
        let m = try await s.broker.join(group: "g", member: "m", topics: ["jobs"])
        #expect(try await s.fetchAll("g", m.memberID).isEmpty)
        try await s.advance(by: 1_000)
        #expect(try await s.consumeAll("g", m.memberID).texts == ["soon"])
        #expect(try await s.broker.partitionStats(topic: "jobs").map(\.logEnd) == [1])
        await s.broker.close()
    }
}

@Suite struct BadDurationTests {
    /// Relative times that would overflow when added to the clock are refused, not trapped on.
    @Test func hugeDelaysAndLeasesAreRefused() async throws {
        let s = try await Scenario.make()
        try s.broker.createTopic("jobs", settings: TopicSettings(partitions: 1))
        _ = try await s.broker.publish(topic: "jobs", [.text("m")])
        await expectBrokerError(.invalidArgument) {
            try await s.broker.join(group: "bad", member: "m", topics: ["jobs"], settings: GroupSettings(leaseMilliseconds: .max))
        }
        let m = try await s.broker.join(group: "g", member: "m", topics: ["jobs"], settings: GroupSettings(sessionTimeoutMilliseconds: .max))
        let got = try await s.broker.fetch(group: "g", member: m.memberID, max: 1)
        await expectBrokerError(.invalidArgument) { try await s.broker.nack(group: "g", member: m.memberID, got.map(\.receipt), delay: .max) }
        await expectBrokerError(.invalidArgument) { try await s.broker.extend(group: "g", member: m.memberID, got.map(\.receipt), by: .max) }
        #expect(try await s.broker.nack(group: "g", member: m.memberID, got.map(\.receipt), delay: Broker.maxDelayMilliseconds) == [nil])
        s.clock.advance(by: 1_000_000_000)
        #expect(try await s.broker.fetch(group: "g", member: m.memberID, max: 1).isEmpty)
        await s.broker.close()
    }
}
