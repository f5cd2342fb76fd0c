/// Reads one cron expression into bitsets, or says where and why it cannot.
///
/// Works on the input's Unicode scalars so that an error's offset counts characters, never
/// bytes. Every loop advances through an input of at most `CronExpression.maximumLength`
/// scalars and numbers stop growing at `numberCeiling`, so hostile input costs at most a
/// few microseconds and can neither trap nor overflow.
struct CronParser {
    /// The bitsets of one parsed field, and whether it was written starting with `*` (which
    /// decides how day of month and day of week combine, as in Vixie cron).
    struct FieldValue: Equatable {
        var bits: UInt64
        var startsWithWildcard: Bool
    }

    /// A field's text: scalars `start..<end` of the input.
    struct FieldSpan {
        var start: Int
        var end: Int
    }

    /// Larger numbers are out of every range; keeping them at this ceiling means the literal
    /// `99999999999999999999` cannot overflow.
    static let numberCeiling = 1_000_000

    let scalars: [Unicode.Scalar]

    init(_ scalars: [Unicode.Scalar]) {
        self.scalars = scalars
    }

    /// The fields, split on blanks.
    func fieldSpans() -> [FieldSpan] {
        var spans: [FieldSpan] = []
        var index = 0
        while index < scalars.count {
            if isBlank(scalars[index]) {
                index += 1
                continue
            }
            let start = index
            while index < scalars.count && !isBlank(scalars[index]) { index += 1 }
            spans.append(FieldSpan(start: start, end: index))
        }
        return spans
    }

    /// Spaces and tabs separate fields; a line break (from a pasted crontab line) counts as one.
    func isBlank(_ scalar: Unicode.Scalar) -> Bool { scalar == " " || scalar == "\t" || scalar == "\n" || scalar == "\r" }

    /// One field: a comma-separated list of items (`*`, `a`, `a-b`, each with an optional
    /// `/step`).
    func parseField(_ field: CronField, _ span: FieldSpan) throws(CronParseError) -> FieldValue {
        assert(span.start < span.end && span.end <= scalars.count, "a field is never empty")
        var bits: UInt64 = 0
        var position = span.start
        while true {
            bits |= try parseItem(field, from: &position, end: span.end)
            if position == span.end { break }
            assert(scalars[position] == ",", "an item ends at ',' or at the end of its field")
            position += 1
            if position == span.end || scalars[position] == "," {
                throw CronParseError(.expectedValue, at: position, "expected a value after ',' in the \(field.name) field")
            }
        }
        assert(bits != 0, "every item sets at least its first value")
        return FieldValue(bits: bits, startsWithWildcard: scalars[span.start] == "*")
    }

    /// `*`, `a`, `a-b`, then an optional `/step`; leaves `position` at the `,` or the field's end.
    private func parseItem(_ field: CronField, from position: inout Int, end: Int) throws(CronParseError) -> UInt64 {
        let itemStart = position
        var range: ClosedRange<Int>
        var isSingleValue = false
        if scalars[position] == "*" {
            position += 1
            range = field.wildcardBounds
        } else {
            let first = try parseValue(field, from: &position, end: end)
            if position < end && scalars[position] == "-" {
                position += 1
                let lastStart = position
                let last = try parseValue(field, from: &position, end: end)
                guard first <= last else {
                    throw CronParseError(
                        .invertedRange, at: lastStart, "the \(field.name) range \(first)-\(last) starts after it ends")
                }
                range = first...last
            } else {
                range = first...first
                isSingleValue = true
            }
        }
        var step = 1
        if position < end && scalars[position] == "/" {
            position += 1
            step = try parseStep(field, from: &position, end: end)
            // `a/n` means from a to the end of the field, every n.
            if isSingleValue { range = range.lowerBound...field.bounds.upperBound }
        }
        if position < end && scalars[position] != "," {
            throw CronParseError(
                .unexpectedCharacter, at: position,
                "unexpected \(quoted(scalars[position])) in the \(field.name) field")
        }
        assert(position > itemStart, "an item consumes at least one character")
        var bits: UInt64 = 0
        for value in stride(from: range.lowerBound, through: range.upperBound, by: step) {
            bits |= field.bit(for: value)
        }
        return bits
    }

    /// A number or, in the month and day-of-week fields, a name; checked against the field's
    /// bounds.
    private func parseValue(_ field: CronField, from position: inout Int, end: Int) throws(CronParseError) -> Int {
        let start = position
        if position < end && isLetter(scalars[position]) {
            while position < end && isLetter(scalars[position]) { position += 1 }
            return try value(ofName: text(start..<position), field, at: start)
        }
        guard let number = readNumber(from: &position, end: end) else {
            let found = position < end ? "found \(quoted(scalars[position]))" : "found the end of the field"
            throw CronParseError(.expectedValue, at: position, "expected a \(field.name) value, \(found)")
        }
        guard field.bounds.contains(number) else {
            throw CronParseError(
                .valueOutOfRange, at: start,
                "\(field.name) \(text(start..<position)) is out of range \(field.bounds.lowerBound)–\(field.bounds.upperBound)")
        }
        return number
    }

    private func parseStep(_ field: CronField, from position: inout Int, end: Int) throws(CronParseError) -> Int {
        let start = position
        guard let step = readNumber(from: &position, end: end) else {
            throw CronParseError(.expectedValue, at: position, "expected a number after '/'")
        }
        guard step >= 1 else {
            throw CronParseError(.invalidStep, at: start, "step must be at least 1")
        }
        let span = field.wildcardBounds.count
        guard step <= span else {
            throw CronParseError(
                .invalidStep, at: start,
                "step \(text(start..<position)) is larger than the \(span) values of the \(field.name) field")
        }
        return step
    }

    /// Decimal digits, saturating at `numberCeiling`; nil when there are none.
    private func readNumber(from position: inout Int, end: Int) -> Int? {
        var number = 0
        var digits = 0
        while position < end, let digit = digitValue(scalars[position]) {
            number = min(number * 10 + digit, Self.numberCeiling)
            digits += 1
            position += 1
        }
        return digits > 0 ? number : nil
    }

    private func value(ofName name: String, _ field: CronField, at offset: Int) throws(CronParseError) -> Int {
        let names = field.names
        guard !names.isEmpty else {
            throw CronParseError(.unknownName, at: offset, "the \(field.name) field takes numbers, not names like '\(name)'")
        }
        guard let index = names.firstIndex(of: name.uppercased()) else {
            throw CronParseError(
                .unknownName, at: offset,
                "unknown \(field.name) name '\(name)'; expected one of \(names.joined(separator: " "))")
        }
        return field.nameBase + index
    }

    private func digitValue(_ scalar: Unicode.Scalar) -> Int? {
        scalar.value >= 0x30 && scalar.value <= 0x39 ? Int(scalar.value - 0x30) : nil
    }

    private func isLetter(_ scalar: Unicode.Scalar) -> Bool {
        (scalar.value >= 0x41 && scalar.value <= 0x5A) || (scalar.value >= 0x61 && scalar.value <= 0x7A)
    }

    /// The input between two offsets, shortened for messages so that a 250-digit number does
    /// not fill the screen.
    func text(_ range: Range<Int>) -> String {
        let limit = 24
        var result = String(String.UnicodeScalarView(scalars[range].prefix(limit)))
        if range.count > limit { result += "…" }
        return result
    }

    func quoted(_ scalar: Unicode.Scalar) -> String {
        "'\(scalar.escaped(asASCII: true))'"
    }
}
