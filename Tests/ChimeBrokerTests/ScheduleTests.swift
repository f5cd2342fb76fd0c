import ChimeBroker
import ChimeSchedule
import ChimeStore
import ChimeTestSupport
import Foundation
import Testing

/// Schedules fired by the broker through its wheel, on an injected clock: every occurrence
/// once, with its name and time in headers, across restarts; the misfire policies after
/// downtime; update, pause, resume, delete, trigger and backfill.
@Suite struct ScheduleTests {
    static func every(_ ms: Int64, name: String = "tick", topic: String = "jobs", _ options: ScheduleOptions = ScheduleOptions()) -> Schedule {
        Schedule(name: name, spec: .every(intervalMs: ms, anchorMs: 0), target: ScheduleTarget(topic: topic, body: Array("run".utf8)), options: options)
    }

    /// Joins a group over `topic` and takes every occurrence delivered so far, acking it.
    static func occurrences(_ s: Scenario, group: String = "g", topic: String = "jobs") async throws -> [(name: String, at: Int64, delivered: Delivery)] {
        let member = try await s.broker.join(group: group, member: "m", topics: [topic]).memberID
        let got = try await s.consumeAll(group, member)
        try await s.broker.leave(group: group, member: member)
        return got.map { d in (d.header("chime-schedule") ?? "?", Int64(d.header("chime-occurrence") ?? "") ?? -1, d) }
    }

    /// Moves the clock in steps, firing what fell due (and planning what follows) each time.
    static func run(_ s: Scenario, for ms: Int64, step: Int64 = 100) async throws {
        var left = ms
        while left > 0 {
            try await s.advance(by: min(step, left))
            left -= step
        }
    }

    @Test func aScheduleFiresEachOccurrenceOnceNeverEarlyWithItsNameAndTime() async throws {
        let s = try await Scenario.make()
        try s.broker.createTopic("jobs", settings: TopicSettings(partitions: 2))
        let start = s.now
        let info = try await s.broker.writeSchedule(Self.every(1_000), .create)
        #expect(info.nextOccurrence == start + 1_000)
        try await Self.run(s, for: 5_050)
        let got = try await Self.occurrences(s)
        #expect(got.map(\.at) == (1...5).map { start + Int64($0) * 1_000 })
        #expect(got.allSatisfy { $0.name == "tick" && $0.delivered.text == "run" })
        for o in got { #expect(o.delivered.dueAt >= o.at, "occurrence \(o.at) fired at \(o.delivered.dueAt)") }
        #expect(try await s.broker.schedule("tick").lastOccurrence == start + 5_000)
        await s.broker.close()
    }

    @Test func restartsNeitherLoseNorRepeatAnOccurrence() async throws {
        let s = try await Scenario.make()
        try s.broker.createTopic("jobs", settings: TopicSettings(partitions: 1))
        let start = s.now
        _ = try await s.broker.writeSchedule(Self.every(1_000), .create)
        for round in 0..<4 {
            try await Self.run(s, for: 1_000 + Int64(round) * 250)
            try await s.restart()
        }
        try await Self.run(s, for: 1_000)
        let got = try await Self.occurrences(s).map(\.at)
        let expected = Array(stride(from: start + 1_000, through: s.now, by: 1_000))
        #expect(got == expected, "occurrences \(got.map { $0 - start }) against \(expected.map { $0 - start })")
        await s.broker.close()
    }

    /// The crash between planning's two appends: the next occurrence's timer entry is on
    /// disk, the table's `planned` record is not. Made by putting back the table as it was
    /// before the fire, beside everything else as it was after it. The next start finds the
    /// entry in the timer log's tail and takes it as the plan, instead of planning the
    /// occurrence a second time.
    @Test func aPlanWhoseTableRecordWasLostIsFoundInTheTimerLog() async throws {
        let s = try await Scenario.make { $0.durability = .always }
        try s.broker.createTopic("jobs", settings: TopicSettings(partitions: 1, dedupWindowMilliseconds: 0))
        let start = s.now
        _ = try await s.broker.writeSchedule(Self.every(1_000), .create)
        let table = s.dir.path + "/topics/jobs/0/schedules"
        let before = TemporaryDirectory("chime-schedule-table")
        try FileManager.default.removeItem(atPath: before.path)
        try FileManager.default.copyItem(atPath: table, toPath: before.path)
        try await s.advance(by: 1_000)  // occurrence 1 fires; occurrence 2 is planned
        try await s.restart {
            try FileManager.default.removeItem(atPath: table)
            try FileManager.default.copyItem(atPath: before.path, toPath: table)
        }
        try await Self.run(s, for: 3_000)
        #expect(try await Self.occurrences(s).map { ($0.at - start) / 1_000 } == [1, 2, 3, 4])
        await s.broker.close()
    }

    /// The table is rewritten as its rows once it holds many planned records, and a restart
    /// reads the rewritten table: nothing fires twice or goes missing.
    @Test func theTableIsCompactedAndStillServesAfterARestart() async throws {
        let s = try await Scenario.make()
        try s.broker.createTopic("jobs", settings: TopicSettings(partitions: 1))
        let start = s.now
        for n in 0..<10 { _ = try await s.broker.writeSchedule(Self.every(10, name: "fast-\(n)"), .create) }
        let table = s.dir.path + "/topics/jobs/0/schedules"
        func tableBytes() throws -> Int {
            try FileManager.default.contentsOfDirectory(atPath: table).reduce(0) { sum, name in
                sum + ((try FileManager.default.attributesOfItem(atPath: table + "/" + name)[.size] as? Int) ?? 0)
            }
        }
        try await Self.run(s, for: 12_000, step: 10)  // 12,000 planned records
        let grown = try tableBytes()
        try await s.broker.checkpoint()
        let compacted = try tableBytes()
        #expect(compacted * 10 < grown, "table \(grown) bytes before the compaction, \(compacted) after")
        try await s.restart()
        try await Self.run(s, for: 100, step: 10)
        let got = try await Self.occurrences(s)
        for n in 0..<10 {
            let times = got.filter { $0.name == "fast-\(n)" }.map(\.at)
            #expect(times == Array(stride(from: start + 10, through: s.now, by: 10)), "fast-\(n): \(times.count) occurrences")
        }
        await s.broker.close()
    }

    /// A minutely schedule while the broker is down for an hour (and a half minute).
    @Test(arguments: [MisfirePolicy.all, .latest, .none])
    func afterAnHourDownTheMisfirePolicyDecidesWhatFires(policy: MisfirePolicy) async throws {
        let s = try await Scenario.make()
        try s.broker.createTopic("jobs", settings: TopicSettings(partitions: 1))
        let start = s.now
        var options = ScheduleOptions(misfire: policy)
        options.catchUpWindowMilliseconds = 30 * 60_000  // all: the last half hour only
        _ = try await s.broker.writeSchedule(Self.every(60_000, options), .create)
        try await s.restart { s.clock.advance(by: 3_600_000 + 30_000) }
        try await s.advance(by: 0)
        // The catch-up fires at once (one planned after another), then the schedule goes on.
        for _ in 0..<40 { try await s.advance(by: 0) }
        let missed = try await Self.occurrences(s).map { ($0.at - start) / 60_000 }
        switch policy {
        case .all: #expect(missed == Array(31...60), "\(missed)")
        case .latest: #expect(missed == [60], "\(missed)")
        case .none: #expect(missed == [], "\(missed)")
        }
        #expect(try await s.broker.schedule("tick").nextOccurrence == start + 61 * 60_000)
        try await Self.run(s, for: 60_000, step: 10_000)
        #expect(try await Self.occurrences(s).map { ($0.at - start) / 60_000 } == [61])
        await s.broker.close()
    }

    @Test func pausedSchedulesFireNothingAndResumeWithTheNextOccurrence() async throws {
        let s = try await Scenario.make()
        try s.broker.createTopic("jobs", settings: TopicSettings(partitions: 1))
        let start = s.now
        _ = try await s.broker.writeSchedule(Self.every(1_000), .create)
        try await Self.run(s, for: 1_500)
        try await s.broker.controlSchedule("tick", .pause)
        #expect(try await s.broker.schedule("tick").idle == "paused")
        try await Self.run(s, for: 3_000)
        try await s.restart()
        try await Self.run(s, for: 1_000)
        try await s.broker.controlSchedule("tick", .resume)
        try await Self.run(s, for: 1_000)
        #expect(try await Self.occurrences(s).map { ($0.at - start) / 1_000 } == [1, 6])
        await s.broker.close()
    }

    @Test func anUpdateTakesEffectFromTheNextOccurrenceAndSurvivesARestart() async throws {
        let s = try await Scenario.make()
        try s.broker.createTopic("jobs", settings: TopicSettings(partitions: 1))
        let start = s.now
        _ = try await s.broker.writeSchedule(Self.every(10_000), .create)
        try await Self.run(s, for: 10_000, step: 1_000)
        let updated = try await s.broker.writeSchedule(Self.every(3_000), .update)
        #expect(updated.schedule.revision == 2)
        #expect(updated.nextOccurrence == start + 12_000)
        try await s.restart()
        try await Self.run(s, for: 8_000, step: 1_000)
        #expect(try await Self.occurrences(s).map { ($0.at - start) / 1_000 } == [10, 12, 15, 18])
        await s.broker.close()
    }

    @Test func aDeletedScheduleFiresNoMoreEvenAfterARestart() async throws {
        let s = try await Scenario.make()
        try s.broker.createTopic("jobs", settings: TopicSettings(partitions: 1))
        _ = try await s.broker.writeSchedule(Self.every(1_000), .create)
        try await Self.run(s, for: 1_000)
        try await s.broker.controlSchedule("tick", .delete)
        try await s.restart()
        try await Self.run(s, for: 3_000)
        #expect(try await Self.occurrences(s).count == 1)
        await #expect(throws: BrokerError.self) { try await s.broker.schedule("tick") }
        #expect(await s.broker.schedules().isEmpty)
        await s.broker.close()
    }

    @Test func triggerAndBackfillPublishOccurrencesNowOncePerOccurrence() async throws {
        let s = try await Scenario.make()
        try s.broker.createTopic("jobs", settings: TopicSettings(partitions: 1, dedupWindowMilliseconds: 86_400_000))
        let start = s.now
        _ = try await s.broker.writeSchedule(Self.every(60_000), .create)
        try await s.advance(by: 30_000)
        let triggered = try await s.broker.triggerSchedule("tick")
        #expect(!triggered.duplicate)
        #expect(try await s.broker.triggerSchedule("tick").duplicate, "a second trigger in the same millisecond is the same occurrence")
        let first = try await s.broker.backfillSchedule("tick", from: start - 300_000, to: start)
        let again = try await s.broker.backfillSchedule("tick", from: start - 300_000, to: start)
        #expect(first.map { ($0.occurrence - start) / 60_000 } == [-5, -4, -3, -2, -1, 0])
        #expect(first.allSatisfy { !$0.published.duplicate } && again.allSatisfy { $0.published.duplicate })
        let got = try await Self.occurrences(s).map(\.at)
        #expect(got.count == 7, "one trigger and six backfilled: \(got.map { $0 - start })")
        await #expect(throws: BrokerError.self) { try await s.broker.backfillSchedule("tick", from: start, to: start + 120_000) }
        #expect(try await Self.occurrences(s).isEmpty)
        await s.broker.close()
    }

    @Test func createIsIdempotentForTheSameDefinitionAndRefusesAnother() async throws {
        let s = try await Scenario.make()
        try s.broker.createTopic("jobs", settings: TopicSettings(partitions: 4))
        let broker = s.broker
        // Ten workers registering the same schedule at once make one.
        try await withThrowingTaskGroup(of: ScheduleInfo.self) { tasks in
            for _ in 0..<10 { tasks.addTask { try await broker.writeSchedule(Self.every(1_000), .create) } }
            for try await info in tasks { #expect(info.schedule.revision == 1) }
        }
        let taken = await #expect(throws: BrokerError.self) { try await broker.writeSchedule(Self.every(2_000), .create) }
        #expect(taken?.code == .scheduleExists)
        try await Self.run(s, for: 3_000)
        #expect(try await Self.occurrences(s).count == 3)
        let missing = await #expect(throws: BrokerError.self) { try await broker.writeSchedule(Self.every(1_000, name: "other"), .update) }
        #expect(missing?.code == .unknownSchedule)
        await s.broker.close()
    }

    @Test func badSpecsZonesAndOptionsAreTypedErrors() async throws {
        let s = try await Scenario.make()
        try s.broker.createTopic("jobs", settings: TopicSettings(partitions: 1))
        func code(_ schedule: Schedule) async -> BrokerError.Code? {
            do {
                _ = try await s.broker.writeSchedule(schedule, .create)
                return nil
            } catch let error as BrokerError {
                return error.code
            } catch {
                return nil
            }
        }
        let target = ScheduleTarget(topic: "jobs")
        #expect(await code(Schedule(name: "a", spec: .cron(expression: "61 * * * *", zone: "UTC"), target: target)) == .badSchedule)
        #expect(await code(Schedule(name: "b", spec: .cron(expression: "0 3 * * *", zone: "Mars/Olympus"), target: target)) == .unknownTimeZone)
        #expect(await code(Schedule(name: "c", spec: .every(intervalMs: 0, anchorMs: 0), target: target)) == .badSchedule)
        #expect(await code(Schedule(name: "bad/name", spec: .every(intervalMs: 1_000, anchorMs: 0), target: target)) == .invalidName)
        #expect(await code(Self.every(1_000, name: "d", ScheduleOptions(jitterMilliseconds: -1))) == .badSchedule)
        #expect(await code(Self.every(1_000, name: "e", ScheduleOptions(startAt: 10, endAt: 5))) == .badSchedule)
        let reserved = Schedule(
            name: "f", spec: .every(intervalMs: 1_000, anchorMs: 0), target: ScheduleTarget(topic: "jobs", headers: [ScheduleHeader(name: "chime-id", value: [1])]))
        #expect(await code(reserved) == .invalidArgument)
        #expect(await s.broker.schedules().isEmpty)
        await s.broker.close()
    }

    /// Jitter moves when an occurrence fires, never its name: the same instant every time.
    @Test func jitterDelaysAnOccurrenceWithinItsBoundAndKeepsItsNominalTime() async throws {
        let s = try await Scenario.make()
        try s.broker.createTopic("jobs", settings: TopicSettings(partitions: 1))
        let start = s.now
        let info = try await s.broker.writeSchedule(Self.every(10_000, ScheduleOptions(jitterMilliseconds: 5_000)), .create)
        let fireAt = try #require(info.nextFireAt)
        #expect(info.nextOccurrence == start + 10_000)
        #expect(fireAt >= start + 10_000 && fireAt <= start + 15_000)
        try await Self.run(s, for: fireAt - start - 1, step: 500)
        #expect(try await Self.occurrences(s).isEmpty, "fired before its jittered time")
        try await Self.run(s, for: 1)
        #expect(try await Self.occurrences(s).map(\.at) == [start + 10_000])
        await s.broker.close()
    }
}
