/// Why a duration (`1h30m`, `500ms`) was refused, and where in its text.
public struct DurationParseError: Error, Equatable, CustomStringConvertible, Sendable {
    public enum Code: Sendable, Equatable {
        /// Nothing, or more than `ScheduleInterval.maximumLength` characters.
        case empty, tooLong
        /// A unit without a number before it, or a character that is neither digit nor unit.
        case expectedNumber
        /// A number without a unit, or a unit that is not d, h, m, s or ms.
        case expectedUnit
        /// `1.5h`: fractions are written with the next smaller unit.
        case fraction
        /// A unit repeated or after a smaller one (`30m1h`).
        case unitOrder
        /// Zero, or more than `ScheduleLimits.maximumIntervalMs`.
        case outOfRange
    }

    public let code: Code
    /// 0-based position (in characters) of the problem in the duration's text.
    public let offset: Int
    public let reason: String

    /// - Precondition: `offset >= 0`.
    public init(_ code: Code, at offset: Int, _ reason: String) {
        precondition(offset >= 0)
        self.code = code
        self.offset = offset
        self.reason = reason
    }

    public var description: String { "at position \(offset): \(reason)" }
}

/// A positive duration in ms, read from text such as `30s`, `1h30m`, `500ms` or `2d`: numbers
/// each followed by a unit (`d`, `h`, `m`, `s`, `ms`), largest unit first, each unit at most once.
public struct ScheduleInterval: Sendable, Hashable, CustomStringConvertible {
    public static let maximumLength = 64

    /// The units from largest to smallest, which is the order they must be written in.
    private static let units: [(symbol: String, ms: Int64)] = [
        ("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1_000), ("ms", 1),
    ]

    /// At least 1, at most `ScheduleLimits.maximumIntervalMs`.
    public let milliseconds: Int64

    /// Reads `text`; throws `DurationParseError` with the position and reason of the first problem.
    public init(parsing text: String) throws(DurationParseError) {
        guard text.unicodeScalars.prefix(Self.maximumLength + 1).count <= Self.maximumLength else {
            throw DurationParseError(.tooLong, at: Self.maximumLength, "a duration is at most \(Self.maximumLength) characters")
        }
        let scalars = Array(text.unicodeScalars)
        guard !scalars.isEmpty else { throw DurationParseError(.empty, at: 0, "a duration is empty; write one such as 30s or 1h30m") }
        var position = 0
        var total: Int64 = 0
        var smallestUnitSoFar = -1  // index into `units`
        while position < scalars.count {
            let numberStart = position
            var number: Int64 = 0
            while position < scalars.count, let digit = Self.digit(scalars[position]) {
                // Past the longest interval in ms, bigger numbers are all out of range alike.
                number = min(number * 10 + digit, ScheduleLimits.maximumIntervalMs + 1)
                position += 1
            }
            guard position > numberStart else {
                throw DurationParseError(.expectedNumber, at: position, "expected a number, found '\(scalars[position].escaped(asASCII: true))'")
            }
            if position < scalars.count && scalars[position] == "." {
                throw DurationParseError(.fraction, at: position, "fractions are not supported: write 1h30m, not 1.5h")
            }
            let unitStart = position
            while position < scalars.count && Self.isLowercaseLetter(scalars[position]) { position += 1 }
            let symbol = String(String.UnicodeScalarView(scalars[unitStart..<position]))
            guard let unitIndex = Self.units.firstIndex(where: { $0.symbol == symbol }) else {
                let found = symbol.isEmpty ? "no unit" : "'\(symbol)'"
                throw DurationParseError(.expectedUnit, at: unitStart, "\(found) after \(number); expected d, h, m, s or ms")
            }
            guard unitIndex > smallestUnitSoFar else {
                throw DurationParseError(.unitOrder, at: unitStart, "units go from largest to smallest, each once: d, h, m, s, ms")
            }
            smallestUnitSoFar = unitIndex
            let unitMs = Self.units[unitIndex].ms
            guard number <= (ScheduleLimits.maximumIntervalMs - total) / unitMs else {
                throw DurationParseError(.outOfRange, at: 0, "a duration is at most 100 years")
            }
            total += number * unitMs
        }
        guard total >= 1 else { throw DurationParseError(.outOfRange, at: 0, "a duration is at least 1 ms") }
        self.milliseconds = total
        assert(total <= ScheduleLimits.maximumIntervalMs)
    }

    /// The duration in the form `init(parsing:)` reads: `1h30m`, `500ms`.
    public var description: String {
        var rest = milliseconds
        var text = ""
        for unit in Self.units where rest >= unit.ms {
            text += "\(rest / unit.ms)\(unit.symbol)"
            rest %= unit.ms
        }
        return text
    }

    private static func digit(_ scalar: Unicode.Scalar) -> Int64? {
        scalar.value >= 0x30 && scalar.value <= 0x39 ? Int64(scalar.value - 0x30) : nil
    }

    private static func isLowercaseLetter(_ scalar: Unicode.Scalar) -> Bool {
        scalar.value >= 0x61 && scalar.value <= 0x7A
    }
}
