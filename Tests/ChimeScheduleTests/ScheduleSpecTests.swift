import Foundation
import Testing

@testable import ChimeSchedule

@Suite struct ScheduleSpecTests {
    // MARK: Durations

    @Test(arguments: [
        ("30s", Int64(30_000)), ("1h30m", 5_400_000), ("500ms", 500), ("2d", 172_800_000),
        ("1d2h3m4s5ms", 93_784_005), ("1s500ms", 1_500), ("90m", 5_400_000), ("1ms", 1),
    ])
    func durationsReadTheirUnits(text: String, milliseconds: Int64) throws {
        #expect(try ScheduleInterval(parsing: text).milliseconds == milliseconds)
    }

    @Test func durationsPrintInTheFormTheyAreRead() throws {
        #expect(try ScheduleInterval(parsing: "90m").description == "1h30m")
        #expect(try ScheduleInterval(parsing: "1d2h3m4s5ms").description == "1d2h3m4s5ms")
        #expect(try ScheduleInterval(parsing: "500ms").description == "500ms")
    }

    @Test(arguments: [
        ("", DurationParseError.Code.empty, 0), ("1.5h", .fraction, 1), ("30", .expectedUnit, 2), ("30x", .expectedUnit, 2),
        ("30H", .expectedUnit, 2), ("h", .expectedNumber, 0), ("1h 30m", .expectedNumber, 2), ("30m1h", .unitOrder, 4),
        ("1s1s", .unitOrder, 3), ("0s", .outOfRange, 0), ("0ms0s", .unitOrder, 4), ("36526d", .outOfRange, 0),
        ("99999999999999999999999d", .outOfRange, 0), ("-5s", .expectedNumber, 0),
    ])
    func badDurationsSayWhereAndWhy(text: String, code: DurationParseError.Code, offset: Int) {
        do {
            let interval = try ScheduleInterval(parsing: text)
            Issue.record("'\(text)' read as \(interval.milliseconds) ms")
        } catch {
            #expect(error.code == code, "'\(text)': \(error)")
            #expect(error.offset == offset, "'\(text)': \(error)")
        }
    }

    @Test func durationsUpToAHundredYearsAreAccepted() throws {
        #expect(try ScheduleInterval(parsing: "36525d").milliseconds == ScheduleLimits.maximumIntervalMs)
        #expect(throws: DurationParseError.self) { try ScheduleInterval(parsing: "36525d1ms") }
        #expect(throws: DurationParseError.self) { try ScheduleInterval(parsing: String(repeating: "1", count: 65)) }
    }

    // MARK: Parsing specs

    @Test func everyParsesIntoAnInterval() throws {
        #expect(try ScheduleSpec.parse("@every 30s") == .every(intervalMs: 30_000, anchorMs: 0))
        #expect(try ScheduleSpec.parse("  @EVERY\t1h30m  ", anchorMs: 7) == .every(intervalMs: 5_400_000, anchorMs: 7))
        #expect(try ScheduleSpec.parse("@every 500ms") == .every(intervalMs: 500, anchorMs: 0))
    }

    @Test func everyErrorsPointIntoTheWholeText() {
        #expect(throws: ScheduleSpecError(.invalidDuration(.fraction), "fractions are not supported: write 1h30m, not 1.5h", offset: 8)) {
            try ScheduleSpec.parse("@every 1.5h")
        }
        #expect(throws: ScheduleSpecError(.invalidDuration(.empty), "a duration is empty; write one such as 30s or 1h30m", offset: 6)) {
            try ScheduleSpec.parse("@every")
        }
        #expect(throws: ScheduleSpecError(.invalidDuration(.outOfRange), "a duration is at least 1 ms", offset: 7)) {
            try ScheduleSpec.parse("@every 0s")
        }
    }

    @Test func cronTextIsCheckedAndKept() throws {
        #expect(try ScheduleSpec.parse("*/5 * * * *", zone: "Europe/Berlin") == .cron(expression: "*/5 * * * *", zone: "Europe/Berlin"))
        #expect(try ScheduleSpec.parse("@daily") == .cron(expression: "@daily", zone: "UTC"))
        #expect(throws: ScheduleSpecError(.invalidCron(.valueOutOfRange), "minute 61 is out of range 0–59", offset: 0)) {
            try ScheduleSpec.parse("61 * * * *")
        }
        #expect(throws: ScheduleSpecError(UnknownTimeZone(identifier: "Mars/Base"))) { try ScheduleSpec.parse("@daily", zone: "Mars/Base") }
        #expect(throws: ScheduleSpecError.self) { try ScheduleSpec.parse("@everyday") }
        #expect((try? ScheduleSpec.parse(String(repeating: " ", count: 300) + "@every 1s")) == nil)
    }

    @Test func outOfRangeValuesAreRefused() {
        let refused: [ScheduleSpec] = [
            .every(intervalMs: 0, anchorMs: 0), .every(intervalMs: ScheduleLimits.maximumIntervalMs + 1, anchorMs: 0),
            .every(intervalMs: 1_000, anchorMs: Int64.max), .fixedRate(intervalMs: 1_000, initialDelayMs: -1, anchorMs: 0),
            .fixedRate(intervalMs: 1_000, initialDelayMs: 0, anchorMs: ScheduleLimits.instantsMs.upperBound + 1),
            .fixedRate(intervalMs: -5, initialDelayMs: 0, anchorMs: 0),
            .fixedDelay(intervalMs: 0, group: "g"), .fixedDelay(intervalMs: 1_000, group: ""), .once(atMs: Int64.min),
        ]
        for spec in refused {
            #expect(throws: ScheduleSpecError.self, "\(spec)") { try spec.timetable() }
        }
    }

    // MARK: Occurrences

    @Test func everyFiresOnTheAnchorsGrid() throws {
        let spec = ScheduleSpec.every(intervalMs: 30_000, anchorMs: 10_000)
        #expect(try spec.next(after: 0) == 10_000)
        #expect(try spec.next(after: 10_000) == 40_000)
        #expect(try spec.next(after: 39_999) == 40_000)
        #expect(try spec.next(after: -100_000) == -80_000, "the anchor sets the phase: times before it too")
        #expect(try spec.nextOccurrences(after: 10_000, count: 3) == [40_000, 70_000, 100_000])
        let hourly = try ScheduleSpec.parse("@every 1h")
        #expect(try hourly.next(after: utcMs("2026-03-08T06:59:59Z")) == utcMs("2026-03-08T07:00:00Z"))
    }

    @Test func fixedRateStartsAfterItsInitialDelay() throws {
        let spec = ScheduleSpec.fixedRate(intervalMs: 1_000, initialDelayMs: 5_000, anchorMs: 100_000)
        #expect(try spec.next(after: 0) == 105_000)
        #expect(try spec.next(after: 104_999) == 105_000)
        #expect(try spec.next(after: 105_000) == 106_000)
        #expect(try spec.nextOccurrences(after: 50_000, count: 4) == [105_000, 106_000, 107_000, 108_000])
        #expect(try ScheduleSpec.fixedRate(intervalMs: 1_000, initialDelayMs: 0, anchorMs: 0).next(after: -1) == 0)
    }

    @Test func onceFiresOnce() throws {
        let spec = ScheduleSpec.once(atMs: 42)
        #expect(try spec.next(after: 41) == 42)
        #expect(try spec.next(after: 42) == nil)
        #expect(try spec.nextOccurrences(after: 0, count: 5) == [42])
    }

    @Test func fixedDelayIsPlannedFromAcks() throws {
        let timetable = try ScheduleSpec.fixedDelay(intervalMs: 5_000, group: "reports").timetable()
        #expect(!timetable.isTimeBased)
        #expect(timetable.next(after: 0) == nil)
        #expect(timetable.next(afterAckAtMs: 1_000) == 6_000)
        #expect(timetable.nextOccurrences(after: 0, count: 3).isEmpty)
        #expect(try ScheduleSpec.once(atMs: 1).timetable().next(afterAckAtMs: 0) == nil)
    }

    @Test func cronSpecsFireInTheirZone() throws {
        let spec = ScheduleSpec.cron(expression: "30 2 * * *", zone: "America/New_York")
        #expect(try spec.nextOccurrences(after: utcMs("2026-03-07T00:00:00Z"), count: 3)
            == ["2026-03-07T07:30:00Z", "2026-03-08T07:00:00Z", "2026-03-09T06:30:00Z"].map(utcMs))
    }

    @Test func gridsEndWithYear9999() throws {
        let last = ScheduleLimits.instantsMs.upperBound
        #expect(try ScheduleSpec.every(intervalMs: 1_000, anchorMs: 0).next(after: last - 500) == nil)
        #expect(try ScheduleSpec.every(intervalMs: 1_000, anchorMs: 0).next(after: Int64.max) == nil)
        #expect(try ScheduleSpec.every(intervalMs: 1_000, anchorMs: 0).next(after: Int64.min) == ScheduleLimits.instantsMs.lowerBound)
        #expect(try ScheduleSpec.fixedDelay(intervalMs: 1_000, group: "g").timetable().next(afterAckAtMs: last) == nil)
    }

    @Test func neverMatchingCronAnswersNilQuickly() throws {
        for text in ["0 0 30 2 *", "0 0 31 4,6,9,11 *", "0 0 0 31 2 *"] {
            let schedule = try ScheduleSpec.cron(expression: text, zone: "Europe/Berlin").timetable()
            #expect(schedule.next(after: utcMs("2026-01-01T00:00:00Z")) == nil, "\(text)")
        }
    }

    @Test func leapDaysAreFoundAcrossACenturyThatSkipsOne() throws {
        let schedule = try ScheduleSpec.cron(expression: "0 0 29 2 *", zone: "UTC").timetable()
        #expect(schedule.next(after: utcMs("2026-01-01T00:00:00Z")) == utcMs("2028-02-29T00:00:00Z"))
        #expect(schedule.next(after: utcMs("2096-03-01T00:00:00Z")) == utcMs("2104-02-29T00:00:00Z"))
    }

    @Test func cronEndsWithYear9999() throws {
        let schedule = try ScheduleSpec.cron(expression: "* * * * * *", zone: "Asia/Kolkata").timetable()
        #expect(schedule.next(after: ScheduleLimits.instantsMs.upperBound) == nil)
        #expect(schedule.next(after: Int64.max) == nil)
        #expect(schedule.next(after: Int64.min) != nil)
        let utcSchedule = try ScheduleSpec.cron(expression: "* * * * * *", zone: "UTC").timetable()
        #expect(utcSchedule.next(after: utcMs("9999-12-31T23:59:58Z")) == utcMs("9999-12-31T23:59:59Z"))
        #expect(utcSchedule.next(after: utcMs("9999-12-31T23:59:59Z")) == nil)
    }

    @Test func cronFiresStrictlyAfterAndOnWholeSeconds() throws {
        let schedule = try ScheduleSpec.cron(expression: "* * * * * *", zone: "Europe/Berlin").timetable()
        let base = utcMs("2026-05-01T10:00:00Z")
        #expect(schedule.next(after: base) == base + 1_000)
        #expect(schedule.next(after: base - 1) == base)
        #expect(schedule.next(after: base + 999) == base + 1_000)
        #expect(schedule.next(after: -1) == 0)
        #expect(schedule.next(after: -1_001) == -1_000, "before the epoch, seconds still round down")
    }

    @Test func specsRoundTripThroughCodable() throws {
        let specs: [ScheduleSpec] = [
            .cron(expression: "0 9 * * MON-FRI", zone: "Europe/Berlin"), .every(intervalMs: 30_000, anchorMs: 5),
            .fixedRate(intervalMs: 1_000, initialDelayMs: 10, anchorMs: 20), .fixedDelay(intervalMs: 60_000, group: "g"),
            .once(atMs: 1_800_000_000_000),
        ]
        let decoded = try JSONDecoder().decode([ScheduleSpec].self, from: JSONEncoder().encode(specs))
        #expect(decoded == specs)
    }
}
