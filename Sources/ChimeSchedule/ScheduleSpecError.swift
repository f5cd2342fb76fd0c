/// Why a schedule spec was refused. For text (`ScheduleSpec.parse`), `offset` points into it.
public struct ScheduleSpecError: Error, Equatable, CustomStringConvertible, Sendable {
    public enum Code: Sendable, Equatable {
        /// Text longer than `CronExpression.maximumLength` characters.
        case tooLong
        /// The cron expression does not parse (`message` is the `CronParseError`'s reason).
        case invalidCron(CronParseError.Code)
        /// The `@every` duration does not parse.
        case invalidDuration(DurationParseError.Code)
        case unknownTimeZone
        /// An interval below 1 ms or above `ScheduleLimits.maximumIntervalMs`.
        case intervalOutOfRange
        /// An initial delay below 0 or above `ScheduleLimits.maximumIntervalMs`.
        case delayOutOfRange
        /// An anchor or instant outside `ScheduleLimits.instantsMs` (years 1–9999).
        case instantOutOfRange
        /// A fixed-delay spec without the group whose acks plan it.
        case missingGroup
    }

    public let code: Code
    public let message: String
    /// 0-based position in the text `ScheduleSpec.parse` read, when the problem is in it.
    public let offset: Int?

    public init(_ code: Code, _ message: String, offset: Int? = nil) {
        self.code = code
        self.message = message
        self.offset = offset
    }

    init(_ error: CronParseError) {
        self.init(.invalidCron(error.code), error.reason, offset: error.offset)
    }

    init(_ error: DurationParseError, shiftedBy shift: Int) {
        self.init(.invalidDuration(error.code), error.reason, offset: error.offset + shift)
    }

    init(_ error: UnknownTimeZone) {
        self.init(.unknownTimeZone, error.description)
    }

    public var description: String {
        offset.map { "at position \($0): \(message)" } ?? message
    }
}
