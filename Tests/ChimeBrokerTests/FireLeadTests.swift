import ChimeBroker
import ChimeStore
import ChimeTestSupport
import Testing

/// The firing loops fire a message `fireLead` ms before it is due; consumers still get it
/// only once it is due, each message at its own due time, and a message due now published
/// behind it does not wait for it.
@Suite struct FireLeadTests {
    @Test func aMessageFiredAheadReachesNoConsumerBeforeItsDueTime() async throws {
        let (dir, clock, broker, member) = try await open(lead: 100)
        _ = dir
        let due = clock.now() + 60  // within the lead: fired at once
        let published = try await broker.publish(topic: "jobs", [.text("at-noon", at: due)])
        #expect(try await waitUntilFired(broker, count: 1), "the message is fired ahead of its due time")
        clock.set(due - 1)
        #expect(try await broker.fetch(group: "workers", member: member, max: 10).isEmpty, "not a millisecond early")
        let changesBefore = broker.changes.version

        clock.set(due)
        // The sink's own timer shows it at its due time and wakes waiting fetches.
        for _ in 0..<2_000 where broker.changes.version == changesBefore { try await Task.sleep(for: .milliseconds(2)) }
        #expect(broker.changes.version > changesBefore, "waiting fetches are woken at the due time")
        var got: [Delivery] = []
        for _ in 0..<2_000 where got.isEmpty {
            got += try await broker.fetch(group: "workers", member: member, max: 10)
            if got.isEmpty { try await Task.sleep(for: .milliseconds(2)) }
        }
        #expect(got.map(\.text) == ["at-noon"])
        #expect(got.first?.id == published[0].id)
        #expect(got.first?.dueAt == due)
        await broker.close()
    }

    /// A broker firing `lead` ms ahead on a manual clock, a topic of one partition, and a
    /// member of "workers" in it.
    private func open(lead: Int64) async throws -> (TemporaryDirectory, ManualClock, Broker, UInt64) {
        let dir = TemporaryDirectory()
        let clock = ManualClock(BrokerFixture.epoch)
        var options = BrokerFixture.options(dir.path, clock: clock)
        options.firing = .automatic
        options.fireLead = lead
        let broker = try await Broker.open(options, logger: BrokerFixture.logger)
        try broker.createTopic("jobs", settings: TopicSettings(partitions: 1))
        let m = try await broker.join(group: "workers", member: "w1", topics: ["jobs"])
        return (dir, clock, broker, m.memberID)
    }

    /// Waits (bounded) until the wheel holds nothing and the ready log has `count` messages.
    private func waitUntilFired(_ broker: Broker, count: Int64) async throws -> Bool {
        for _ in 0..<2_000 {
            if let p = try await broker.partitionStats(topic: "jobs").first, p.scheduled == 0, p.logEnd == count { return true }
            try await Task.sleep(for: .milliseconds(2))
        }
        return false
    }

    @Test func aMessageDueNowPublishedBehindOneFiredAheadIsDeliveredAtOnce() async throws {
        let (dir, clock, broker, member) = try await open(lead: 100)
        _ = dir
        let due = clock.now() + 60
        _ = try await broker.publish(topic: "jobs", [.text("at-noon", at: due)])
        #expect(try await waitUntilFired(broker, count: 1))
        _ = try await broker.publish(topic: "jobs", [.text("now")])
        #expect(try await broker.fetch(group: "workers", member: member, max: 10).map(\.text) == ["now"], "not behind the one held back")
        clock.set(due)
        #expect(try await broker.fetch(group: "workers", member: member, max: 10).map(\.text) == ["at-noon"])
        await broker.close()
    }

    @Test func eachMessageOfAHandOverIsShownAtItsOwnDueTime() async throws {
        let (dir, clock, broker, member) = try await open(lead: 100)
        _ = dir
        let t0 = clock.now()
        _ = try await broker.publish(topic: "jobs", [.text("first", at: t0 + 50)])
        #expect(try await waitUntilFired(broker, count: 1))  // the wheel's time is now t0 + 100
        // Both overdue for the wheel: one slot, publish order, the later-due one first.
        _ = try await broker.publish(topic: "jobs", [.text("later", at: t0 + 90), .text("sooner", at: t0 + 80)])
        #expect(try await waitUntilFired(broker, count: 3))
        clock.set(t0 + 79)
        #expect(try await broker.fetch(group: "workers", member: member, max: 10).map(\.text) == ["first"], "only what is due")
        clock.set(t0 + 80)
        let atEighty = try await broker.fetch(group: "workers", member: member, max: 10)
        #expect(atEighty.map(\.text) == ["sooner"], "before the later one ahead of it in the log")
        #expect(atEighty.allSatisfy { $0.dueAt <= clock.now() })
        clock.set(t0 + 89)
        #expect(try await broker.fetch(group: "workers", member: member, max: 10).isEmpty, "not a millisecond early")
        clock.set(t0 + 90)
        #expect(try await broker.fetch(group: "workers", member: member, max: 10).map(\.text) == ["later"])
        await broker.close()
    }

    @Test func abortingAHeldMessageDeliversNothingAheadOfItEarly() async throws {
        let (dir, clock, broker, member) = try await open(lead: 100)
        _ = dir
        let due = clock.now() + 60
        let sent = try await broker.publish(topic: "jobs", [.text("a", at: due), .text("b", at: due)])
        #expect(try await waitUntilFired(broker, count: 2))
        clock.set(due - 1)
        // Aborting b takes everything before it into the group's window.
        _ = try await broker.abort(sent[1].id!, reason: "changed our mind")
        #expect(try await broker.fetch(group: "workers", member: member, max: 10).isEmpty, "a is not due yet")
        clock.set(due)
        #expect(try await broker.fetch(group: "workers", member: member, max: 10).map(\.text) == ["a"])
        await broker.close()
    }
}
