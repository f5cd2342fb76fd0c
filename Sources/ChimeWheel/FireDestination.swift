import ChimeStore

/// A message handed over by the wheel when it falls due.
public struct FiredMessage: Sendable, Equatable {
    /// The id returned when it was scheduled (its timer-log position).
    public var id: Int64
    public var message: ScheduledMessage
}

/// Where fired messages go: the partition's ready log in the broker, a sink in tests.
///
/// Exactly-once rests on `fireSequence`: the wheel numbers every hand-over, the destination
/// stores the number durably with the messages (the broker: in the appended batch), and
/// after a crash the wheel skips every hand-over numbered at or below
/// `lastFireSequence`. A hand-over is therefore applied once even when the crash fell
/// between the destination's append and the wheel's "fired" marker.
public protocol FireDestination: AnyObject {
    /// The highest `fireSequence` this destination has durably applied, if any.
    var lastFireSequence: UInt64? { get }

    /// Applies one hand-over: messages in due order, FIFO within the same millisecond.
    func deliver(_ messages: [FiredMessage], fireSequence: UInt64) throws
}
