import Foundation
import Testing

@testable import ChimeSchedule

@Suite struct CronExpressionParsingTests {
    /// The bits of a set of values.
    private func bits(_ values: some Sequence<Int>) -> UInt64 {
        values.reduce(0) { $0 | 1 << UInt64($1) }
    }

    // MARK: Valid forms

    @Test func starsMatchEveryValueAndFiveFieldsFireAtSecondZero() throws {
        let expression = try CronExpression(parsing: "* * * * *")
        #expect(expression.seconds == 1 && !expression.hasSecondsField)
        #expect(expression.minutes == bits(0...59))
        #expect(expression.hours == bits(0...23))
        #expect(expression.daysOfMonth == bits(1...31))
        #expect(expression.months == bits(1...12))
        #expect(expression.daysOfWeek == bits(0...6))
        #expect(expression.dayOfMonthIsWildcard && expression.dayOfWeekIsWildcard)
    }

    @Test func listsRangesAndStepsCombine() throws {
        let expression = try CronExpression(parsing: "5,10-12,*/20 1-10/3 10/7 2-11/4 *")
        #expect(expression.minutes == bits([0, 5, 10, 11, 12, 20, 40]))
        #expect(expression.hours == bits([1, 4, 7, 10]))
        #expect(expression.daysOfMonth == bits([10, 17, 24, 31]), "a/n runs to the field's end")
        #expect(expression.months == bits([2, 6, 10]))
        #expect(!expression.dayOfMonthIsWildcard)
    }

    @Test func sixFieldsPutSecondsFirst() throws {
        let expression = try CronExpression(parsing: "*/10 30 2 * * *")
        #expect(expression.hasSecondsField)
        #expect(expression.seconds == bits(stride(from: 0, to: 60, by: 10)))
        #expect(expression.minutes == bits([30]) && expression.hours == bits([2]))
    }

    @Test func monthAndWeekdayNamesAreCaseInsensitive() throws {
        let expression = try CronExpression(parsing: "0 0 * jan-Mar,DEC mon-FRI")
        #expect(expression.months == bits([1, 2, 3, 12]))
        #expect(expression.daysOfWeek == bits(1...5))
        #expect(try CronExpression(parsing: "0 0 * * sat,Sun").daysOfWeek == bits([0, 6]))
    }

    @Test func sundayIsBothZeroAndSeven() throws {
        #expect(try CronExpression(parsing: "0 0 * * 7").daysOfWeek == bits([0]))
        #expect(try CronExpression(parsing: "0 0 * * 5-7").daysOfWeek == bits([0, 5, 6]))
        #expect(try CronExpression(parsing: "0 0 * * 0-7").daysOfWeek == bits(0...6))
        #expect(try CronExpression(parsing: "0 0 * * */2").daysOfWeek == bits([0, 2, 4, 6]))
    }

    @Test func macrosStandForTheirExpressions() throws {
        let macros = [
            "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *", "@weekly": "0 0 * * 0",
            "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *",
        ]
        for (macro, fields) in macros {
            let fromMacro = try CronExpression(parsing: macro)
            let fromFields = try CronExpression(parsing: fields)
            #expect(
                [fromMacro.seconds, fromMacro.minutes, fromMacro.hours, fromMacro.daysOfMonth, fromMacro.months, fromMacro.daysOfWeek]
                    == [fromFields.seconds, fromFields.minutes, fromFields.hours, fromFields.daysOfMonth, fromFields.months, fromFields.daysOfWeek],
                "\(macro)")
            #expect(fromMacro.dayOfMonthIsWildcard == fromFields.dayOfMonthIsWildcard)
            #expect(fromMacro.dayOfWeekIsWildcard == fromFields.dayOfWeekIsWildcard)
        }
        #expect(try CronExpression(parsing: "  @DAILY ").hours == bits([0]))
    }

    @Test func blanksAroundAndBetweenFieldsAreIgnored() throws {
        let expression = try CronExpression(parsing: "  0\t\t5   * * *  ")
        #expect(expression.minutes == bits([0]) && expression.hours == bits([5]))
        #expect(try CronExpression(parsing: "0 5 * * *\r\n").hours == bits([5]), "a pasted crontab line")
    }

    @Test func restrictedDayFieldsMatchEitherAsInVixieCron() throws {
        // 2026-07-01 is a Wednesday.
        let either = try CronExpression(parsing: "0 0 1,15 * MON")
        #expect(either.matchesDay(dayOfMonth: 1, month: 7, weekday: 3))
        #expect(either.matchesDay(dayOfMonth: 6, month: 7, weekday: 1))
        #expect(!either.matchesDay(dayOfMonth: 7, month: 7, weekday: 2))
        // A field that starts with `*` counts as unrestricted, `*/2` included: both must match.
        let both = try CronExpression(parsing: "0 0 */2 * MON")
        #expect(both.matchesDay(dayOfMonth: 13, month: 7, weekday: 1))
        #expect(!both.matchesDay(dayOfMonth: 6, month: 7, weekday: 1))
        #expect(!both.matchesDay(dayOfMonth: 1, month: 7, weekday: 3))
        // `1-31` covers every day but is restricted: with a weekday, every day matches.
        #expect(try CronExpression(parsing: "0 0 1-31 * MON").matchesDay(dayOfMonth: 7, month: 7, weekday: 2))
        #expect(!(try CronExpression(parsing: "0 0 * * MON").matchesDay(dayOfMonth: 7, month: 7, weekday: 2)))
        #expect(!(try CronExpression(parsing: "0 0 1 2 *").matchesDay(dayOfMonth: 1, month: 3, weekday: 0)), "month must match")
    }

    @Test func randomExpressionsParseIntoTheSetsTheyWereWrittenFrom() throws {
        let seed = testSeed(default: 0xC0DE)
        var rng = SeededGenerator(seed: seed)
        for _ in 0..<2_000 {
            let random = RandomCronExpression.make(using: &rng)
            let parsed = try CronExpression(parsing: random.text)
            let context = Comment(rawValue: "seed \(seed): '\(random.text)'")
            #expect(parsed.hasSecondsField == random.hasSeconds, context)
            #expect(parsed.seconds == bits(random.seconds), context)
            #expect(parsed.minutes == bits(random.minutes), context)
            #expect(parsed.hours == bits(random.hours), context)
            #expect(parsed.daysOfMonth == bits(random.daysOfMonth), context)
            #expect(parsed.months == bits(random.months), context)
            #expect(parsed.daysOfWeek == bits(random.daysOfWeek), context)
            #expect(parsed.dayOfMonthIsWildcard == random.dayOfMonthStartsWithStar, context)
            #expect(parsed.dayOfWeekIsWildcard == random.dayOfWeekStartsWithStar, context)
        }
    }

    // MARK: Errors: where and why

    private func refusal(_ text: String) -> CronParseError? {
        do {
            _ = try CronExpression(parsing: text)
            return nil
        } catch {
            return error
        }
    }

    @Test(arguments: [
        ("61 * * * *", CronParseError.Code.valueOutOfRange, 0, "minute 61 is out of range 0–59"),
        ("0 24 * * *", .valueOutOfRange, 2, "hour 24 is out of range 0–23"),
        ("0 0 0 * *", .valueOutOfRange, 4, "day of month 0 is out of range 1–31"),
        ("0 0 * 13 *", .valueOutOfRange, 6, "month 13 is out of range 1–12"),
        ("0 0 * * 8", .valueOutOfRange, 8, "day of week 8 is out of range 0–7"),
        ("60 0 0 * * *", .valueOutOfRange, 0, "second 60 is out of range 0–59"),
        ("* * * *", .wrongFieldCount, 7, "5 or 6 fields expected, found 4"),
        ("* * *", .wrongFieldCount, 5, "5 or 6 fields expected, found 3"),
        ("", .wrongFieldCount, 0, "5 or 6 fields expected, found none"),
        ("   ", .wrongFieldCount, 3, "5 or 6 fields expected, found none"),
        ("* * * * * * *", .wrongFieldCount, 12, "5 or 6 fields expected, found 7"),
        ("*/ * * * *", .expectedValue, 2, "expected a number after '/'"),
        ("*/x * * * *", .expectedValue, 2, "expected a number after '/'"),
        ("*/0 * * * *", .invalidStep, 2, "step must be at least 1"),
        ("*/61 * * * *", .invalidStep, 2, "step 61 is larger than the 60 values of the minute field"),
        ("0 0 * * */8", .invalidStep, 10, "step 8 is larger than the 7 values of the day of week field"),
        ("0 5-3 * * *", .invertedRange, 4, "the hour range 5-3 starts after it ends"),
        ("0 0 * DEC-JAN *", .invertedRange, 10, "the month range 12-1 starts after it ends"),
        ("1,,2 * * * *", .expectedValue, 2, "expected a value after ',' in the minute field"),
        ("1, * * * *", .expectedValue, 2, "expected a value after ',' in the minute field"),
        (",1 * * * *", .expectedValue, 0, "expected a minute value, found ','"),
        ("0 0 * * MON-", .expectedValue, 12, "expected a day of week value, found the end of the field"),
        ("5x * * * *", .unexpectedCharacter, 1, "unexpected 'x' in the minute field"),
        ("*-5 * * * *", .unexpectedCharacter, 1, "unexpected '-' in the minute field"),
        ("1-2-3 * * * *", .unexpectedCharacter, 3, "unexpected '-' in the minute field"),
        ("*/5/2 * * * *", .unexpectedCharacter, 3, "unexpected '/' in the minute field"),
        ("0 0 * * MON1", .unexpectedCharacter, 11, "unexpected '1' in the day of week field"),
        ("0 0 * FOO *", .unknownName, 6, "unknown month name 'FOO'; expected one of JAN FEB MAR APR MAY JUN JUL AUG SEP OCT NOV DEC"),
        ("0 0 * * MONDAY", .unknownName, 8, "unknown day of week name 'MONDAY'; expected one of SUN MON TUE WED THU FRI SAT"),
        ("abc * * * *", .unknownName, 0, "the minute field takes numbers, not names like 'abc'"),
        ("0 0 ? * MON", .expectedValue, 4, "expected a day of month value, found '?'"),
        ("0 0 * * é", .expectedValue, 8, "expected a day of week value, found '\\u{00E9}'"),
        ("@foo", .unknownMacro, 0, "unknown macro '@foo'; expected @yearly, @annually, @monthly, @weekly, @daily, @midnight or @hourly"),
        ("@every 5s", .unknownMacro, 0, "'@every' is an interval, not a cron expression (read it with ScheduleSpec.parse)"),
        ("@daily 5", .unexpectedCharacter, 7, "nothing may follow @daily"),
    ])
    func eachErrorSaysWhereAndWhy(text: String, code: CronParseError.Code, offset: Int, reason: String) {
        let error = refusal(text)
        #expect(error?.code == code, "'\(text)'")
        #expect(error?.offset == offset, "'\(text)'")
        #expect(error?.reason == reason, "'\(text)'")
        #expect(error.map { $0.description == "at position \(offset): \(reason)" } == true)
    }

    // MARK: Hostile input

    @Test func hugeNumbersAreOutOfRangeWithoutOverflow() {
        let huge = "99999999999999999999"
        #expect(refusal("\(huge) * * * *") == CronParseError(.valueOutOfRange, at: 0, "minute 99999999999999999999 is out of range 0–59"))
        #expect(refusal("1-\(huge) * * * *")?.code == .valueOutOfRange)
        #expect(refusal("*/\(huge) * * * *")?.code == .invalidStep)
        #expect(refusal("*/1000000 * * * *") == CronParseError(.invalidStep, at: 2, "step 1000000 is larger than the 60 values of the minute field"))
        let longNumber = String(repeating: "9", count: 200)
        let shortened = String(repeating: "9", count: 24) + "…"
        #expect(refusal("\(longNumber) * * * *")?.reason == "minute \(shortened) is out of range 0–59", "long literals are shortened")
    }

    @Test func inputLongerThan256CharactersIsRefusedBeforeParsing() {
        let long = "0 0 * * * " + String(repeating: " ", count: 247)
        #expect(long.count == 257)
        #expect(refusal(long) == CronParseError(.tooLong, at: 256, "the expression is longer than 256 characters"))
        #expect(refusal(String(repeating: "1,", count: 5_000_000))?.code == .tooLong)
        #expect((try? CronExpression(parsing: "0 0 * * *" + String(repeating: " ", count: 247))) != nil, "256 is allowed")
    }

    @Test func widestExpressionsStayCheap() throws {
        // Many items, each a whole range: 256 characters of work at most.
        let items = Array(repeating: "0-59", count: 30).joined(separator: ",")
        let hours = Array(repeating: "0-23", count: 10).joined(separator: ",")
        let expression = try CronExpression(parsing: "\(items) \(hours) * * *")
        #expect(expression.minutes == bits(0...59))
    }

    @Test func randomGarbageIsRefusedWithAPositionInsideTheInput() {
        let seed = testSeed(default: 0xBAD)
        var rng = SeededGenerator(seed: seed)
        let alphabet = Array(" \t*/-,0123456789JANMONjanmonx@é?#L\u{0}\u{301}")
        var accepted = 0
        for _ in 0..<5_000 {
            let length = Int.random(in: 0...40, using: &rng)
            let text = String((0..<length).map { _ in alphabet.randomElement(using: &rng)! })
            guard let error = refusal(text) else {
                accepted += 1
                continue
            }
            #expect(error.offset <= text.unicodeScalars.count, "seed \(seed): '\(text)' -> \(error)")
            #expect(!error.reason.isEmpty)
        }
        #expect(accepted < 5_000)
    }
}
