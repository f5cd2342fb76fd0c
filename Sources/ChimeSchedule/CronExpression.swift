/// A parsed cron expression: which seconds, minutes, hours, days and months it fires at, as
/// bitsets (bit `n` set means value `n` matches), so that matching costs a shift and a mask.
///
/// Accepted text:
/// - 5 fields `minute hour day-of-month month day-of-week`, or 6 with `second` first, separated
///   by blanks (spaces, tabs, line breaks);
/// - in each field `*`, numbers, ranges `a-b`, lists `a,b,c`, steps `*/n`, `a-b/n` and `a/n`
///   (from `a` to the field's end);
/// - month names `JAN`–`DEC` and weekday names `SUN`–`SAT`, case-insensitive; day of week
///   `0`–`7`, where both 0 and 7 are Sunday;
/// - the macros `@yearly` (`@annually`), `@monthly`, `@weekly`, `@daily` (`@midnight`) and
///   `@hourly`. (`@every 30s` is an interval, not a cron expression: `ScheduleSpec.parse` reads it.)
///
/// Day of month and day of week combine as in Vixie cron: when both are restricted, a day
/// matches if either matches; when either field starts with `*` (including `*/2`), both must.
public struct CronExpression: Sendable, Hashable, CustomStringConvertible {
    /// Longer input is refused before it is read.
    public static let maximumLength = 256

    /// The text this was parsed from.
    public let text: String
    /// Bit `n`: second `n` (0–59). Only bit 0 when the expression has 5 fields.
    public let seconds: UInt64
    /// Bit `n`: minute `n` (0–59).
    public let minutes: UInt64
    /// Bit `n`: hour `n` (0–23).
    public let hours: UInt64
    /// Bit `n`: day of month `n` (1–31).
    public let daysOfMonth: UInt64
    /// Bit `n`: month `n` (1–12).
    public let months: UInt64
    /// Bit `n`: weekday `n`, 0 Sunday through 6 Saturday (a 7 in the text sets bit 0).
    public let daysOfWeek: UInt64
    /// The day-of-month field starts with `*`.
    public let dayOfMonthIsWildcard: Bool
    /// The day-of-week field starts with `*`.
    public let dayOfWeekIsWildcard: Bool
    /// The expression has a seconds field (6 fields); otherwise it fires on whole minutes.
    public let hasSecondsField: Bool

    /// Parses `text`; throws `CronParseError` with the position and reason of the first problem.
    public init(parsing text: String) throws(CronParseError) {
        // Bounded before anything else looks at the input (prefix stops counting early).
        guard text.unicodeScalars.prefix(Self.maximumLength + 1).count <= Self.maximumLength else {
            throw CronParseError(
                .tooLong, at: Self.maximumLength, "the expression is longer than \(Self.maximumLength) characters")
        }
        let parser = CronParser(Array(text.unicodeScalars))
        let spans = parser.fieldSpans()
        let values: [CronParser.FieldValue]
        if let first = spans.first, parser.scalars[first.start] == "@" {
            values = try Self.expandMacro(parser, spans)
        } else {
            values = try Self.parseFields(parser, spans)
        }
        self.text = text
        self.hasSecondsField = spans.count == 6
        self.seconds = values[CronField.second.rawValue].bits
        self.minutes = values[CronField.minute.rawValue].bits
        self.hours = values[CronField.hour.rawValue].bits
        self.daysOfMonth = values[CronField.dayOfMonth.rawValue].bits
        self.months = values[CronField.month.rawValue].bits
        self.daysOfWeek = values[CronField.dayOfWeek.rawValue].bits
        self.dayOfMonthIsWildcard = values[CronField.dayOfMonth.rawValue].startsWithWildcard
        self.dayOfWeekIsWildcard = values[CronField.dayOfWeek.rawValue].startsWithWildcard
        checkInvariants()
    }

    public var description: String { text }

    /// Whether the expression fires on a day: `weekday` 0 is Sunday.
    public func matchesDay(dayOfMonth: Int, month: Int, weekday: Int) -> Bool {
        precondition((1...31).contains(dayOfMonth) && (1...12).contains(month) && (0...6).contains(weekday))
        guard months & (1 << UInt64(month)) != 0 else { return false }
        let dayOfMonthMatches = daysOfMonth & (1 << UInt64(dayOfMonth)) != 0
        let dayOfWeekMatches = daysOfWeek & (1 << UInt64(weekday)) != 0
        return combinesDaysByEither
            ? dayOfMonthMatches || dayOfWeekMatches : dayOfMonthMatches && dayOfWeekMatches
    }

    /// Bits 0, 7, 14, 21, 28: shifted to a weekday's first day, its days of a month.
    private static let everySeventhDay: UInt64 = 1 | 1 << 7 | 1 << 14 | 1 << 21 | 1 << 28

    /// Both day fields are restricted: Vixie cron fires on a day matching either.
    var combinesDaysByEither: Bool { !dayOfMonthIsWildcard && !dayOfWeekIsWildcard }

    /// The days `1...length` of a month whose first day is `firstWeekday` (0 Sunday) that the
    /// day fields accept, as bit `d` for day `d`. The month field is not consulted.
    func matchingDays(monthLength length: Int, firstWeekday: Int) -> UInt64 {
        assert((28...31).contains(length) && (0...6).contains(firstWeekday))
        var byWeekday: UInt64 = 0
        for weekday in 0..<7 where daysOfWeek & (1 << UInt64(weekday)) != 0 {
            let firstDay = (weekday - firstWeekday + 7) % 7 + 1
            byWeekday |= Self.everySeventhDay << UInt64(firstDay)
        }
        let validDays: UInt64 = ((1 << UInt64(length + 1)) - 1) & ~1
        let combined = combinesDaysByEither ? daysOfMonth | byWeekday : daysOfMonth & byWeekday
        return combined & validDays
    }

    private func checkInvariants() {
        assert(seconds != 0 && seconds >> 60 == 0)
        assert(minutes != 0 && minutes >> 60 == 0)
        assert(hours != 0 && hours >> 24 == 0)
        assert(daysOfMonth != 0 && daysOfMonth & 1 == 0 && daysOfMonth >> 32 == 0)
        assert(months != 0 && months & 1 == 0 && months >> 13 == 0)
        assert(daysOfWeek != 0 && daysOfWeek >> 7 == 0)
        assert(hasSecondsField || seconds == 1, "5 fields fire at second 0")
    }

    private static func parseFields(
        _ parser: CronParser, _ spans: [CronParser.FieldSpan]
    ) throws(CronParseError) -> [CronParser.FieldValue] {
        guard spans.count == 5 || spans.count == 6 else {
            let offset = spans.count > 6 ? spans[6].start : parser.scalars.count
            let found = spans.isEmpty ? "none" : "\(spans.count)"
            throw CronParseError(.wrongFieldCount, at: offset, "5 or 6 fields expected, found \(found)")
        }
        let fields = spans.count == 6 ? CronField.allCases : Array(CronField.allCases.dropFirst())
        // Without a seconds field, second 0.
        var values = spans.count == 6 ? [] : [CronParser.FieldValue(bits: 1, startsWithWildcard: false)]
        for (field, span) in zip(fields, spans) {
            values.append(try parser.parseField(field, span))
        }
        assert(values.count == CronField.allCases.count)
        return values
    }

    private static func expandMacro(
        _ parser: CronParser, _ spans: [CronParser.FieldSpan]
    ) throws(CronParseError) -> [CronParser.FieldValue] {
        let macroSpan = spans[0]
        let name = parser.text(macroSpan.start..<macroSpan.end).lowercased()
        let fields: String
        switch name {
        case "@yearly", "@annually": fields = "0 0 0 1 1 *"
        case "@monthly": fields = "0 0 0 1 * *"
        case "@weekly": fields = "0 0 0 * * 0"
        case "@daily", "@midnight": fields = "0 0 0 * * *"
        case "@hourly": fields = "0 0 * * * *"
        case "@every":
            throw CronParseError(
                .unknownMacro, at: macroSpan.start,
                "'@every' is an interval, not a cron expression (read it with ScheduleSpec.parse)")
        default:
            throw CronParseError(
                .unknownMacro, at: macroSpan.start,
                "unknown macro '\(name)'; expected @yearly, @annually, @monthly, @weekly, @daily, @midnight or @hourly")
        }
        guard spans.count == 1 else {
            throw CronParseError(.unexpectedCharacter, at: spans[1].start, "nothing may follow \(name)")
        }
        let expansion = CronParser(Array(fields.unicodeScalars))
        var values: [CronParser.FieldValue] = []
        for (field, span) in zip(CronField.allCases, expansion.fieldSpans()) {
            // The expansions are constants that parse; a failure here is a bug in this table.
            guard let value = try? expansion.parseField(field, span) else { preconditionFailure("macro \(name)") }
            values.append(value)
        }
        return values
    }
}
