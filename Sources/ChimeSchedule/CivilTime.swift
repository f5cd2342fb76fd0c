/// Wall-clock date and time on the proleptic Gregorian calendar, counted from 1970-01-01
/// 00:00:00 as "local seconds": the seconds a clock showing this time would show if it were UTC.
///
/// Pure arithmetic (Howard Hinnant's `days_from_civil` / `civil_from_days`), so that the
/// next-occurrence search never asks Foundation about a candidate.
struct CivilDateTime: Equatable, Sendable, CustomStringConvertible {
    static let secondsPerDay: Int64 = 86_400

    var year: Int
    var month: Int
    var day: Int
    var hour: Int
    var minute: Int
    var second: Int

    init(year: Int, month: Int, day: Int, hour: Int = 0, minute: Int = 0, second: Int = 0) {
        self.year = year
        self.month = month
        self.day = day
        self.hour = hour
        self.minute = minute
        self.second = second
    }

    init(localSeconds: Int64) {
        let days = Self.floorDivide(localSeconds, Self.secondsPerDay)
        let secondOfDay = Int(localSeconds - days * Self.secondsPerDay)
        let date = Self.date(fromDays: days)
        self.init(
            year: date.year, month: date.month, day: date.day,
            hour: secondOfDay / 3_600, minute: secondOfDay / 60 % 60, second: secondOfDay % 60)
        assert(self.localSeconds == localSeconds, "the two conversions are inverses")
    }

    var localSeconds: Int64 {
        assert((1...12).contains(month) && (1...31).contains(day) && (0...23).contains(hour))
        assert((0...59).contains(minute) && (0...59).contains(second))
        let days = Self.days(year: year, month: month, day: day)
        return days * Self.secondsPerDay + Int64(hour * 3_600 + minute * 60 + second)
    }

    /// Days since 1970-01-01 of the date part.
    var days: Int64 { Self.days(year: year, month: month, day: day) }

    var description: String {
        func two(_ n: Int) -> String { n < 10 ? "0\(n)" : "\(n)" }
        return "\(year)-\(two(month))-\(two(day)) \(two(hour)):\(two(minute)):\(two(second))"
    }

    /// Days since 1970-01-01 (negative before it).
    static func days(year: Int, month: Int, day: Int) -> Int64 {
        let y = Int64(month <= 2 ? year - 1 : year)
        let era = floorDivide(y, 400)
        let yearOfEra = y - era * 400  // 0...399
        let shiftedMonth = Int64(month > 2 ? month - 3 : month + 9)  // March is 0
        let dayOfYear = (153 * shiftedMonth + 2) / 5 + Int64(day) - 1  // 0...365
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear  // 0...146096
        return era * 146_097 + dayOfEra - 719_468
    }

    static func date(fromDays days: Int64) -> (year: Int, month: Int, day: Int) {
        let shifted = days + 719_468  // days since 0000-03-01
        let era = floorDivide(shifted, 146_097)
        let dayOfEra = shifted - era * 146_097  // 0...146096
        let yearOfEra = (dayOfEra - dayOfEra / 1_460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365  // 0...399
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)  // 0...365
        let shiftedMonth = (5 * dayOfYear + 2) / 153  // March is 0
        let day = Int(dayOfYear - (153 * shiftedMonth + 2) / 5 + 1)
        let month = Int(shiftedMonth < 10 ? shiftedMonth + 3 : shiftedMonth - 9)
        let year = Int(yearOfEra + era * 400) + (month <= 2 ? 1 : 0)
        return (year, month, day)
    }

    /// 0 Sunday … 6 Saturday; 1970-01-01 was a Thursday.
    static func weekday(fromDays days: Int64) -> Int {
        let shifted = days + 4
        return Int(shifted - floorDivide(shifted, 7) * 7)
    }

    static func isLeapYear(_ year: Int) -> Bool {
        year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
    }

    static func daysInMonth(year: Int, month: Int) -> Int {
        switch month {
        case 2: isLeapYear(year) ? 29 : 28
        case 4, 6, 9, 11: 30
        default: 31
        }
    }

    static func floorDivide(_ a: Int64, _ b: Int64) -> Int64 {
        assert(b > 0)
        let quotient = a / b
        return a % b < 0 ? quotient - 1 : quotient
    }
}
