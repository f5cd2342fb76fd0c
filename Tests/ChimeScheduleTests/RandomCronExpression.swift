/// A random cron expression, written as text and, independently of the parser, as the sets of
/// values it stands for: the reference tests match wall-clock fields against these sets
/// (`ReferenceTimeline.Matcher`), and the parser tests check that the parser reads the text
/// into the same sets.
struct RandomCronExpression: CustomStringConvertible {
    var text: String
    var hasSeconds: Bool
    var seconds: Set<Int>
    var minutes: Set<Int>
    var hours: Set<Int>
    var daysOfMonth: Set<Int>
    var months: Set<Int>
    /// 0 Sunday … 6 Saturday (a 7 in the text is stored as 0).
    var daysOfWeek: Set<Int>
    var dayOfMonthStartsWithStar: Bool
    var dayOfWeekStartsWithStar: Bool

    var description: String { text }

    /// Biased towards what DST tests need: the small hours (where transitions happen), Sundays
    /// (when they happen in the zones tested), and steps that cross a gap several times.
    static func make(using rng: inout SeededGenerator, allowSeconds: Bool = true) -> RandomCronExpression {
        let hasSeconds = allowSeconds && Int.random(in: 0..<4, using: &rng) == 0
        let second = hasSeconds ? field(0...59, interesting: [0, 15, 30, 59], using: &rng) : Field(text: "0", values: [0])
        let minute = field(0...59, interesting: [0, 15, 30, 45, 59], using: &rng)
        let hour = field(0...23, interesting: [0, 1, 2, 3, 23], using: &rng)
        let dayOfMonth = Int.random(in: 0..<3, using: &rng) == 0
            ? field(1...31, interesting: [1, 4, 5, 8, 25, 29, 30, 31], using: &rng) : Field(text: "*", values: Set(1...31))
        let month = Int.random(in: 0..<3, using: &rng) == 0
            ? field(1...12, interesting: [3, 4, 10, 11], names: monthNames, using: &rng) : Field(text: "*", values: Set(1...12))
        let dayOfWeek = Int.random(in: 0..<3, using: &rng) == 0
            ? field(0...7, interesting: [0, 7, 6], names: weekdayNames, using: &rng) : Field(text: "*", values: Set(0...6))
        let fields = (hasSeconds ? [second.text] : []) + [minute.text, hour.text, dayOfMonth.text, month.text, dayOfWeek.text]
        return RandomCronExpression(
            text: fields.joined(separator: Bool.random(using: &rng) ? " " : " \t "),
            hasSeconds: hasSeconds, seconds: second.values, minutes: minute.values, hours: hour.values,
            daysOfMonth: dayOfMonth.values, months: month.values,
            daysOfWeek: Set(dayOfWeek.values.map { $0 % 7 }),
            dayOfMonthStartsWithStar: dayOfMonth.startsWithStar, dayOfWeekStartsWithStar: dayOfWeek.startsWithStar)
    }

    static let monthNames = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
    static let weekdayNames = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]

    /// A field's text and the values it stands for.
    struct Field {
        var text: String
        var values: Set<Int>
        var startsWithStar: Bool { text.hasPrefix("*") }
    }

    /// One field: 1 to 3 comma-separated items.
    private static func field(
        _ bounds: ClosedRange<Int>, interesting: [Int], names: [String] = [], using rng: inout SeededGenerator
    ) -> Field {
        var texts: [String] = []
        var values = Set<Int>()
        for _ in 0..<Int.random(in: 1...3, using: &rng) {
            let item = item(bounds, interesting: interesting, names: names, using: &rng)
            texts.append(item.text)
            values.formUnion(item.values)
        }
        return Field(text: texts.joined(separator: ","), values: values)
    }

    private static func item(
        _ bounds: ClosedRange<Int>, interesting: [Int], names: [String], using rng: inout SeededGenerator
    ) -> Field {
        // `*` stands for each weekday once, so day of week stops at 6 there.
        let starBounds = bounds.upperBound == 7 ? 0...6 : bounds
        func value() -> Int {
            Bool.random(using: &rng) ? interesting.randomElement(using: &rng)! : Int.random(in: bounds, using: &rng)
        }
        func written(_ value: Int) -> String {
            // Never 7 as SUN: `SAT-SUN` would be the range 6-0, and `SUN/2` would start at 0.
            let index = value - (names.count == 12 ? 1 : 0)
            guard index < names.count, Int.random(in: 0..<3, using: &rng) == 0 else { return "\(value)" }
            let name = names[index]
            return Bool.random(using: &rng) ? name : name.lowercased()
        }
        func values(_ range: ClosedRange<Int>, step: Int) -> Set<Int> { Set(stride(from: range.lowerBound, through: range.upperBound, by: step)) }
        switch Int.random(in: 0..<7, using: &rng) {
        case 0:
            return Field(text: "*", values: Set(starBounds))
        case 1:
            let step = Int.random(in: 1...min(20, starBounds.count), using: &rng)
            return Field(text: "*/\(step)", values: values(starBounds, step: step))
        case 2:
            let start = value()
            let step = Int.random(in: 1...min(10, starBounds.count), using: &rng)
            return Field(text: "\(written(start))/\(step)", values: values(start...bounds.upperBound, step: step))
        case 3, 4:
            let (a, b) = (value(), value())
            return Field(text: "\(written(min(a, b)))-\(written(max(a, b)))", values: Set(min(a, b)...max(a, b)))
        case 5:
            let (a, b) = (value(), value())
            let step = Int.random(in: 1...6, using: &rng)
            return Field(text: "\(written(min(a, b)))-\(written(max(a, b)))/\(step)", values: values(min(a, b)...max(a, b), step: step))
        default:
            let single = value()
            return Field(text: written(single), values: [single])
        }
    }
}
