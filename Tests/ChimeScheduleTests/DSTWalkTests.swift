import Testing

@testable import ChimeSchedule

/// Real zones walked through both transitions of 2026, with the instants worked out by hand
/// from the tz rules:
/// - New York: EST (−5) to EDT (−4) on Sun 8 March at 02:00 local = 07:00Z; back on Sun
///   1 November at 02:00 EDT = 06:00Z (01:00–01:59 happens twice).
/// - Berlin: CET (+1) to CEST (+2) on Sun 29 March at 02:00 local = 01:00Z; back on Sun
///   25 October at 03:00 CEST = 01:00Z (02:00–02:59 happens twice).
/// - Lord Howe: +11 to +10:30 on Sun 5 April at 02:00 local = 4 April 15:00Z (01:30–01:59
///   happens twice); +10:30 to +11 on Sun 4 October at 02:00 local = 3 October 15:30Z
///   (02:00–02:29 never happens).
/// - Kolkata: +5:30 all year.
@Suite struct DSTWalkTests {
    /// The first `expected.count` occurrences after `start`.
    private func walk(_ expression: String, _ zone: String, after start: String, _ expected: [String]) throws {
        let schedule = CronSchedule(expression: try CronExpression(parsing: expression), zone: try TimeZoneRules(identifier: zone))
        var cursor = utcMs(start)
        var actual: [String] = []
        for _ in expected {
            guard let next = schedule.next(after: cursor) else { break }
            actual.append(iso(next))
            cursor = next
        }
        #expect(actual == expected.map { iso(utcMs($0)) }, "\(expression) in \(zone) after \(start)")
    }

    @Test func newYorkSpringForward() throws {
        // 02:30 does not exist on 8 March: it fires at 03:00 EDT, the first instant after the gap.
        try walk("30 2 * * *", "America/New_York", after: "2026-03-06T12:00:00Z",
                 ["2026-03-07T07:30:00Z", "2026-03-08T07:00:00Z", "2026-03-09T06:30:00Z"])
        // 02:00, 02:15, 02:30, 02:45 and 03:00 all fall on 07:00Z: once.
        try walk("*/15 * * * *", "America/New_York", after: "2026-03-08T06:30:00Z",
                 ["2026-03-08T06:45:00Z", "2026-03-08T07:00:00Z", "2026-03-08T07:15:00Z"])
        try walk("0 3 * * *", "America/New_York", after: "2026-03-08T05:00:00Z",
                 ["2026-03-08T07:00:00Z", "2026-03-09T07:00:00Z"])
        // Seconds: every 20 s of the missing hour fire once, at the gap's end.
        try walk("*/20 * 2 * * *", "America/New_York", after: "2026-03-08T06:00:00Z",
                 ["2026-03-08T07:00:00Z", "2026-03-09T06:00:00Z", "2026-03-09T06:00:20Z"])
    }

    @Test func newYorkFallBack() throws {
        // 01:30 happens at 05:30Z (EDT) and 06:30Z (EST): only the first fires.
        try walk("30 1 * * *", "America/New_York", after: "2026-10-31T12:00:00Z",
                 ["2026-11-01T05:30:00Z", "2026-11-02T06:30:00Z"])
        try walk("*/15 * * * *", "America/New_York", after: "2026-11-01T04:50:00Z",
                 ["2026-11-01T05:00:00Z", "2026-11-01T05:15:00Z", "2026-11-01T05:30:00Z", "2026-11-01T05:45:00Z",
                  "2026-11-01T07:00:00Z", "2026-11-01T07:15:00Z"])
        try walk("0 * * * *", "America/New_York", after: "2026-11-01T03:30:00Z",
                 ["2026-11-01T04:00:00Z", "2026-11-01T05:00:00Z", "2026-11-01T07:00:00Z", "2026-11-01T08:00:00Z"])
        // From inside the second pass (01:20 EST) the repeated times are already done.
        try walk("*/15 * * * *", "America/New_York", after: "2026-11-01T06:20:00Z", ["2026-11-01T07:00:00Z"])
        try walk("0 2 * * *", "America/New_York", after: "2026-10-31T12:00:00Z", ["2026-11-01T07:00:00Z"])
    }

    @Test func berlinSpringForward() throws {
        try walk("30 2 * * *", "Europe/Berlin", after: "2026-03-28T00:00:00Z",
                 ["2026-03-28T01:30:00Z", "2026-03-29T01:00:00Z", "2026-03-30T00:30:00Z"])
        try walk("*/20 * * * *", "Europe/Berlin", after: "2026-03-29T00:30:00Z",
                 ["2026-03-29T00:40:00Z", "2026-03-29T01:00:00Z", "2026-03-29T01:20:00Z"])
    }

    @Test func berlinFallBack() throws {
        try walk("30 2 * * *", "Europe/Berlin", after: "2026-10-24T12:00:00Z",
                 ["2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"])
        try walk("*/30 * * * *", "Europe/Berlin", after: "2026-10-24T23:50:00Z",
                 ["2026-10-25T00:00:00Z", "2026-10-25T00:30:00Z", "2026-10-25T02:00:00Z", "2026-10-25T02:30:00Z"])
        // 03:00 happens once (CET): clocks went from 02:59:59 CEST back to 02:00.
        try walk("0 3 * * *", "Europe/Berlin", after: "2026-10-24T12:00:00Z", ["2026-10-25T02:00:00Z"])
    }

    @Test func lordHoweHalfHourFallBack() throws {
        try walk("45 1 * * *", "Australia/Lord_Howe", after: "2026-04-04T00:00:00Z",
                 ["2026-04-04T14:45:00Z", "2026-04-05T15:15:00Z"])
        try walk("*/15 * * * *", "Australia/Lord_Howe", after: "2026-04-04T14:20:00Z",
                 ["2026-04-04T14:30:00Z", "2026-04-04T14:45:00Z", "2026-04-04T15:30:00Z", "2026-04-04T15:45:00Z"])
        try walk("0 2 * * *", "Australia/Lord_Howe", after: "2026-04-04T12:00:00Z", ["2026-04-04T15:30:00Z"])
    }

    @Test func lordHoweHalfHourSpringForward() throws {
        try walk("15 2 * * *", "Australia/Lord_Howe", after: "2026-10-02T00:00:00Z",
                 ["2026-10-02T15:45:00Z", "2026-10-03T15:30:00Z", "2026-10-04T15:15:00Z"])
        try walk("*/10 * * * *", "Australia/Lord_Howe", after: "2026-10-03T15:15:00Z",
                 ["2026-10-03T15:20:00Z", "2026-10-03T15:30:00Z", "2026-10-03T15:40:00Z"])
    }

    @Test func kolkataHasNoTransitions() throws {
        // The days other zones change theirs are ordinary days at +05:30.
        try walk("30 2 * * *", "Asia/Kolkata", after: "2026-03-07T00:00:00Z",
                 ["2026-03-07T21:00:00Z", "2026-03-08T21:00:00Z"])
        try walk("0 * * * *", "Asia/Kolkata", after: "2026-11-01T04:50:00Z",
                 ["2026-11-01T05:30:00Z", "2026-11-01T06:30:00Z"])
        try walk("*/15 * * * *", "Asia/Kolkata", after: "2026-03-29T00:50:00Z",
                 ["2026-03-29T01:00:00Z", "2026-03-29T01:15:00Z", "2026-03-29T01:30:00Z"])
        try walk("0 0 1 1 *", "Asia/Kolkata", after: "2026-06-01T00:00:00Z", ["2026-12-31T18:30:00Z"])
    }

    @Test func aDaySkippedWholeFiresAtItsEnd() throws {
        // Samoa moved across the date line: 29 December 2011 24:00 (−10) became 31 December
        // 00:00 (+14), at 2011-12-30T10:00Z. 30 December never happened there.
        try walk("0 12 30 12 *", "Pacific/Apia", after: "2011-12-29T00:00:00Z", ["2011-12-30T10:00:00Z", "2012-12-29T22:00:00Z"])
    }
}
