import ChimeBroker
import ChimeTestSupport
import Testing

/// Messages a member gives back by leaving, and messages read without leasing them.
@Suite struct LeaveAndPeekTests {
    /// `chime consume --no-ack --count 10` leaves with ten messages leased; they used to
    /// wait for their leases to run out and then count as attempts, so browsing a topic a
    /// few times dead-lettered its messages. Handed back by a leave, they are delivered again
    /// at once as the same attempt, and never dead-lettered for it.
    @Test func messagesHandedBackByALeaveAreDeliveredAgainAtOnceAndNotCountedAsAttempts() async throws {
        let s = try await Scenario.make()
        try s.broker.createTopic("jobs", settings: TopicSettings(partitions: 1, maxAttempts: 2))
        _ = try await s.broker.publish(topic: "jobs", (0..<5).map { .text("m\($0)") })
        for round in 0..<3 {
            let m = try await s.broker.join(group: "g", member: "browser", topics: ["jobs"])
            let got = try await s.broker.fetch(group: "g", member: m.memberID, max: 10)
            #expect(got.texts == (0..<5).map { "m\($0)" }, "round \(round): everything, at once, in order")
            #expect(got.allSatisfy { $0.attempt == 1 }, "round \(round): attempts \(got.map(\.attempt))")
            try await s.broker.leave(group: "g", member: m.memberID)
        }
        let stats = try await s.broker.groupStats("g")
        #expect(stats.partitions.allSatisfy { $0.deadLettered == 0 })
        await s.broker.close()
    }

    /// A peek reads a partition without leasing anything: from the start, from an offset,
    /// or from where a group stands (skipping what it acked), and the group then gets
    /// every message it has not acked, as if no peek had happened.
    @Test func aPeekReadsWithoutLeasingFromTheStartAnOffsetOrAGroupsPosition() async throws {
        let s = try await Scenario.make()
        try s.broker.createTopic("jobs", settings: TopicSettings(partitions: 1))
        _ = try await s.broker.publish(topic: "jobs", (0..<10).map { .text("m\($0)") })
        let all = try await s.broker.peek(topic: "jobs", partition: 0, max: 100)
        #expect(all.texts == (0..<10).map { "m\($0)" })
        #expect(all.allSatisfy { $0.attempt == 0 && $0.receipt.lease == 0 })
        #expect(try await s.broker.peek(topic: "jobs", partition: 0, from: 7, max: 100).texts == ["m7", "m8", "m9"])
        #expect(try await s.broker.peek(topic: "jobs", partition: 0, max: 4).texts == ["m0", "m1", "m2", "m3"])

        let m = try await s.broker.join(group: "g", member: "w", topics: ["jobs"])
        let first = try await s.broker.fetch(group: "g", member: m.memberID, max: 4)
        // Acked: m0, m1 and m3 (m2 stays in flight); the backlog is m2, m4 … m9.
        let results = try await s.broker.ack(group: "g", member: m.memberID, [first[0].receipt, first[1].receipt, first[3].receipt])
        #expect(results.allSatisfy { $0 == nil })
        let backlog = try await s.broker.peek(topic: "jobs", partition: 0, group: "g", max: 100)
        #expect(backlog.texts == ["m2"] + (4..<10).map { "m\($0)" })
        #expect(try await s.broker.peek(topic: "jobs", partition: 0, from: 6, group: "g", max: 100).texts == ["m6", "m7", "m8", "m9"])

        // Nothing was leased by the peeks: the member gets the rest.
        let rest = try await s.broker.fetch(group: "g", member: m.memberID, max: 100)
        #expect(rest.texts == (4..<10).map { "m\($0)" })
        await s.broker.close()
    }

    @Test func aPeekOfAnUnknownTopicOrPartitionIsRefusedAndCreatesNothing() async throws {
        let s = try await Scenario.make()
        let unknown = await #expect(throws: BrokerError.self) { try await s.broker.peek(topic: "nope", partition: 0, max: 1) }
        #expect(unknown?.code == .unknownTopic)
        #expect(s.broker.listTopics().isEmpty, "a peek never creates the topic")
        try s.broker.createTopic("jobs", settings: TopicSettings(partitions: 2))
        for bad in [-1, 2, Int.max] {
            let error = await #expect(throws: BrokerError.self) { try await s.broker.peek(topic: "jobs", partition: bad, max: 1) }
            #expect(error?.code == .badPartition)
        }
        #expect(try await s.broker.peek(topic: "jobs", partition: 0, from: .max, max: .max).isEmpty)
        await s.broker.close()
    }
}
