/// The six positions of a cron expression, with what each accepts.
enum CronField: Int, CaseIterable, Sendable {
    case second, minute, hour, dayOfMonth, month, dayOfWeek

    /// As a user reads it in an error message ("minute 61 is out of range 0–59").
    var name: String {
        switch self {
        case .second: "second"
        case .minute: "minute"
        case .hour: "hour"
        case .dayOfMonth: "day of month"
        case .month: "month"
        case .dayOfWeek: "day of week"
        }
    }

    /// The values a number may take. Day of week accepts 7 as a second Sunday.
    var bounds: ClosedRange<Int> {
        switch self {
        case .second, .minute: 0...59
        case .hour: 0...23
        case .dayOfMonth: 1...31
        case .month: 1...12
        case .dayOfWeek: 0...7
        }
    }

    /// What `*` stands for: the bounds, but each weekday once (Sunday as 0).
    var wildcardBounds: ClosedRange<Int> { self == .dayOfWeek ? 0...6 : bounds }

    /// Names the field accepts, case-insensitive; a name's value is `nameBase + index`.
    var names: [String] {
        switch self {
        case .month: ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
        case .dayOfWeek: ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]
        default: []
        }
    }

    var nameBase: Int { self == .month ? 1 : 0 }

    /// The bit a value sets: every value is its own bit, except day of week 7 (Sunday), which
    /// is 0's bit.
    func bit(for value: Int) -> UInt64 {
        assert(bounds.contains(value))
        return UInt64(1) << UInt64(self == .dayOfWeek && value == 7 ? 0 : value)
    }
}
