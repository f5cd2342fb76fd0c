/// Why the wheel refused an operation on a scheduled message, or refused to open. Typed, so
/// that a caller (the broker's partition) tells "this id is not pending" from "this due
/// time is out of range" from "a failed hand-over waits for its retry" without reading
/// messages; storage failures underneath stay `StoreError`s.
public struct WheelError: Error, Equatable, CustomStringConvertible, Sendable {
    public enum Code: Sendable, Equatable {
        /// No scheduled message has this id (never scheduled, or its entry was compacted
        /// away and no due time was given to find it).
        case unknownMessage
        /// It was scheduled, but has fired or was cancelled.
        case notPending
        /// Its hand-over has begun (and may be partly applied): it is firing, not pending.
        case beingFired
        /// A due time outside what the wheel's geometry can hold.
        case dueOutOfRange
        /// A hand-over failed and waits for its retry: a message due by then cannot join it.
        case handOverPending
        /// Opening: the destination has applied hand-overs this timer log never made (it
        /// belongs to another log, or this log lost data).
        case foreignDestination
    }

    public let code: Code
    public let message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code): \(message)" }
}
