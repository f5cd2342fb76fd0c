import ChimeStore

/// A message handed over by the wheel when it falls due.
///
/// The record is kept as the timer entry holds it (`payload`: varint keyLength + 1, key,
/// varint headerCount, headers, body — the tail of a ready-log record), copied once out of
/// the timer log: a destination writing record batches appends it as it is
/// (`RecordBatchBuilder.append(timestamp:payload:adding:)`) instead of decoding it into
/// arrays and encoding it again. `message` decodes it for whoever wants the fields.
public struct FiredMessage: Sendable, Equatable {
    /// The id returned when it was scheduled (its timer-log position).
    public var id: Int64
    public var dueAt: Int64
    public var publishedAt: Int64
    public var destination: UInt32
    /// The record part of the timer entry (checked well-formed when read).
    public var payload: [UInt8]

    public init(id: Int64, dueAt: Int64, publishedAt: Int64, destination: UInt32, payload: [UInt8]) {
        self.id = id
        self.dueAt = dueAt
        self.publishedAt = publishedAt
        self.destination = destination
        self.payload = payload
    }

    /// The message, decoded.
    public var message: ScheduledMessage {
        let parts = payload.withUnsafeBytes { TimerEntry.decodePayload($0) }!  // checked when read
        return ScheduledMessage(
            dueAt: dueAt, publishedAt: publishedAt, destination: destination, key: parts.key, headers: parts.headers, body: parts.body)
    }
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

    /// Applies one hand-over: slot by slot in time order, each slot's messages in publish
    /// order (a message placed in a slot overdue can be due before the ones ahead of it).
    ///
    /// A firing loop with a fire lead (`FiringLoop.init(fireLead:)`) hands messages over
    /// up to that many milliseconds before they fall due: the destination stores them at
    /// once and holds them back from its readers until they are due (the broker: each
    /// message until its own due time, its readers woken on a timer of the sink's own).
    func deliver(_ messages: [FiredMessage], fireSequence: UInt64) throws
}
