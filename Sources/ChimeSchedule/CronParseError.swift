/// Why a cron expression was refused, and where: `offset` is the 0-based position (in
/// Unicode scalars, which for the ASCII a valid expression is made of are its characters) of
/// the first character that is wrong, so that a tool can point at it.
public struct CronParseError: Error, Equatable, CustomStringConvertible, Sendable {
    public enum Code: Sendable, Equatable {
        /// The expression is longer than `CronExpression.maximumLength`.
        case tooLong
        /// Not 5 or 6 fields (or nothing at all).
        case wrongFieldCount
        /// A character that has no place there (`5x`, `*/5/2`, `1--2`, a letter in a number).
        case unexpectedCharacter
        /// A number (or name) is missing: after `-`, `/` or `,`, or at the start of a list item.
        case expectedValue
        /// A number or name outside the field's range (`minute 61`, `JANUARY`, `month 0`).
        case valueOutOfRange
        /// A name in a field that has none, or one the field does not know.
        case unknownName
        /// A range whose start comes after its end (`5-3`).
        case invertedRange
        /// A step of 0, or one larger than the field's span (`*/61` for minutes).
        case invalidStep
        /// `@something` that is not one of the macros (or `@every`, which is an interval).
        case unknownMacro
    }

    public let code: Code
    /// 0-based position of the offending character in the input.
    public let offset: Int
    /// What is wrong, in words a user understands ("minute 61 is out of range 0–59").
    public let reason: String

    /// - Precondition: `offset >= 0`.
    public init(_ code: Code, at offset: Int, _ reason: String) {
        precondition(offset >= 0, "an offset is a position in the input")
        self.code = code
        self.offset = offset
        self.reason = reason
    }

    public var description: String { "at position \(offset): \(reason)" }
}
