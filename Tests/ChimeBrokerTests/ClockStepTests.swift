import ChimeBroker
import ChimeTestSupport
import ChimeWheel
import Testing

/// A step of the wall clock, either way, makes no delay fire early or late: a delay is
/// counted from when the broker receives it on broker time, which never steps; an absolute
/// time is read on the wall clock as it is when the message arrives.
@Suite struct ClockStepTests {
    @Test(arguments: [-3_600_000, 3_600_000] as [Int64])
    func aDelayFiresAfterItsDurationWhicheverWayTheWallClockStepped(step: Int64) async throws {
        let s = try await Scenario.make()
        try s.broker.createTopic("jobs")
        let m = try await s.broker.join(group: "g", member: "m", topics: ["jobs"])
        s.clock.stepWall(by: step)
        let received = s.now
        _ = try await s.broker.publish(topic: "jobs", [
            OutgoingMessage(body: Array("in 30 s".utf8), due: .after(30_000)),
            OutgoingMessage(body: Array("at the wall's +30 s".utf8), due: .at(s.clock.wallNow() + 30_000)),
        ])
        for _ in 0..<6 {
            try await s.advance(by: 5_000 - (s.now - received == 25_000 ? 1 : 0))
            #expect(try await s.consumeAll("g", m.memberID).isEmpty, "nothing before 30 s have passed (\(s.now - received) ms)")
        }
        try await s.advance(by: 1)
        let got = try await s.consumeAll("g", m.memberID)
        #expect(got.textSet == ["in 30 s", "at the wall's +30 s"])
        #expect(got.allSatisfy { $0.dueAt == received + 30_000 })
        await s.broker.close()
    }

    @Test func aDelayOrATimeOutOfRangeIsRefused() async throws {
        let s = try await Scenario.make()
        try s.broker.createTopic("jobs")
        for due in [Due.after(-1), .after(.max), .after(Broker.maxDelayMilliseconds + 1), .at(.max)] {
            await expectBrokerError(.invalidArgument) { _ = try await s.broker.publish(topic: "jobs", [OutgoingMessage(body: [1], due: due)]) }
        }
        let id = try await s.broker.publish(topic: "jobs", [OutgoingMessage(body: [1], due: .after(1_000))])[0].id!
        await expectBrokerError(.invalidArgument) { _ = try await s.broker.reschedule(id, to: .after(-5)) }
        let moved = try await s.broker.reschedule(id, to: .after(Broker.maxDelayMilliseconds))
        #expect(moved.kind == .scheduled)
        #expect(try await s.broker.partitionStats(topic: "jobs").map(\.scheduled).reduce(0, +) == 1)
        await s.broker.close()
    }

    /// The wall clock stepped back an hour while the broker was stopped: broker time starts
    /// where the wheels had reached, not an hour earlier, so a delay given after the restart
    /// is not taken as long overdue (the wheel never goes back).
    @Test func aWallClockSteppedBackWhileStoppedMakesNoNewDelayEarly() async throws {
        let dir = TemporaryDirectory("chime-clock-step")
        let epoch = BrokerFixture.epoch
        let readings = ClockReadings(wallMilliseconds: epoch)
        var broker = try await Broker.open(BrokerFixture.options(dir.path, clock: readings.clock()), logger: BrokerFixture.logger)
        try broker.createTopic("jobs")
        _ = try await broker.publish(topic: "jobs", [OutgoingMessage(body: Array("pending".utf8), due: .after(60_000))])
        readings.elapse(ms: 10_000)
        try await broker.fireDue()
        await broker.close()

        readings.stepWall(ms: -3_600_000)
        readings.elapse(ms: 5_000)  // stopped for 5 s
        let clock = readings.clock()
        broker = try await Broker.open(BrokerFixture.options(dir.path, clock: clock), logger: BrokerFixture.logger)
        #expect(clock.now() >= epoch + 10_000, "broker time holds at what the wheel reached")
        let m = try await broker.join(group: "g", member: "m", topics: ["jobs"])
        let received = clock.now()
        _ = try await broker.publish(topic: "jobs", [OutgoingMessage(body: Array("fresh".utf8), due: .after(30_000))])
        try await broker.fireDue()
        #expect(try await broker.fetch(group: "g", member: m.memberID, max: 10).isEmpty, "nothing is due yet")
        for step in 1...6 {
            readings.elapse(ms: step == 6 ? 4_999 : 5_000)  // a fetch each 5 s keeps the member in
            try await broker.fireDue()
            #expect(try await broker.fetch(group: "g", member: m.memberID, max: 10).isEmpty, "not before 30 s have passed")
        }
        readings.elapse(ms: 1)
        try await broker.fireDue()
        let fresh = try await broker.fetch(group: "g", member: m.memberID, max: 10)
        #expect(fresh.map(\.text) == ["fresh"])
        #expect(fresh.first?.dueAt == received + 30_000)
        // The message from before the stop is due 60 s after it was received, in broker time.
        while clock.now() < epoch + 60_000 {
            readings.elapse(ms: min(5_000, epoch + 60_000 - clock.now()))
            try await broker.fireDue()
            if clock.now() < epoch + 60_000 { #expect(try await broker.fetch(group: "g", member: m.memberID, max: 10).isEmpty) }
        }
        #expect(try await broker.fetch(group: "g", member: m.memberID, max: 10).map(\.text) == ["pending"])
        await broker.close()
    }
}
