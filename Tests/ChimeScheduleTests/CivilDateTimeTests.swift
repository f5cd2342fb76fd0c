import Foundation
import Testing

@testable import ChimeSchedule

/// The search's own calendar arithmetic against Foundation's Gregorian calendar.
@Suite struct CivilDateTimeTests {
    @Test func daysAndDatesAgreeWithFoundationFrom1583To9999() {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        // Foundation switches to the Julian calendar before October 1582: compare after it.
        let first = CivilDateTime.days(year: 1583, month: 1, day: 1)
        let last = CivilDateTime.days(year: 9999, month: 12, day: 31)
        for days in stride(from: first, through: last, by: 37) {
            let date = CivilDateTime.date(fromDays: days)
            let c = calendar.dateComponents([.year, .month, .day, .weekday], from: Date(timeIntervalSince1970: TimeInterval(days * 86_400)))
            #expect(date.year == c.year && date.month == c.month && date.day == c.day, "day \(days)")
            #expect(CivilDateTime.weekday(fromDays: days) == c.weekday! - 1, "day \(days)")
            #expect(CivilDateTime.days(year: date.year, month: date.month, day: date.day) == days)
        }
    }

    @Test func everyDayAroundTheEpochRoundTrips() {
        var previous = CivilDateTime.date(fromDays: -200_001)
        for days in Int64(-200_000)...200_000 {
            let date = CivilDateTime.date(fromDays: days)
            #expect(CivilDateTime.days(year: date.year, month: date.month, day: date.day) == days)
            let nextDay = previous.day < CivilDateTime.daysInMonth(year: previous.year, month: previous.month)
            #expect(nextDay ? date.day == previous.day + 1 : date.day == 1, "day \(days) follows day \(days - 1)")
            previous = date
        }
    }

    @Test func localSecondsSplitIntoFields() {
        let time = CivilDateTime(localSeconds: utcMs("2026-03-08T02:30:15Z") / 1_000)
        #expect(time == CivilDateTime(year: 2026, month: 3, day: 8, hour: 2, minute: 30, second: 15))
        let beforeEpoch = CivilDateTime(localSeconds: -1)
        #expect(beforeEpoch == CivilDateTime(year: 1969, month: 12, day: 31, hour: 23, minute: 59, second: 59))
        #expect(CivilDateTime.weekday(fromDays: 0) == 4, "1970-01-01 was a Thursday")
        #expect(CivilDateTime.daysInMonth(year: 2100, month: 2) == 28 && CivilDateTime.daysInMonth(year: 2000, month: 2) == 29)
    }
}
