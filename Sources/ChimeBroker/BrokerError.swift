import ChimeStore
import ChimeWheel

/// What the engine refuses, and why. A struct wrapping a private code so cases can be
/// added without breaking callers; compare with `error.code == .unknownTopic`.
public struct BrokerError: Error, Sendable, Equatable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        fileprivate enum Base: String {
            case unknownTopic, topicExists, invalidName, badPartition, messageTooLarge, malformedBatch, corruptBatch
            case sequenceGap, unknownMessage, unknownGroup, unknownMember, fenced, unknownDelivery, alreadyAcked
            case leaseExpired, invalidArgument, storage, closed, limitReached, groupExists, groupInUse
            case unknownSchedule, scheduleExists, badSchedule, unknownTimeZone
            case lockHeld, lockLost, staleToken, callbackClosed
        }
        fileprivate let base: Base
        public var description: String { base.rawValue }

        /// The topic does not exist and auto-create is off (or the name is reserved).
        public static let unknownTopic = Code(base: .unknownTopic)
        public static let topicExists = Code(base: .topicExists)
        /// A topic or group name outside `[A-Za-z0-9._-]{1,200}`.
        public static let invalidName = Code(base: .invalidName)
        public static let badPartition = Code(base: .badPartition)
        /// A message over the topic's `maxMessageBytes`.
        public static let messageTooLarge = Code(base: .messageTooLarge)
        public static let malformedBatch = Code(base: .malformedBatch)
        /// A batch whose CRC does not match its bytes.
        public static let corruptBatch = Code(base: .corruptBatch)
        /// An idempotent producer skipped sequence numbers (a batch was lost in between).
        public static let sequenceGap = Code(base: .sequenceGap)
        /// Cancel or reschedule of an id that is not pending (fired, cancelled, unknown).
        public static let unknownMessage = Code(base: .unknownMessage)
        public static let unknownGroup = Code(base: .unknownGroup)
        /// The member left, or missed heartbeats for longer than the session timeout.
        public static let unknownMember = Code(base: .unknownMember)
        /// The partition was reassigned: this member's leases on it were revoked.
        public static let fenced = Code(base: .fenced)
        /// An ack/nack/extend/term for a delivery the group never made.
        public static let unknownDelivery = Code(base: .unknownDelivery)
        public static let alreadyAcked = Code(base: .alreadyAcked)
        /// The lease ran out and the message was (or will be) delivered again.
        public static let leaseExpired = Code(base: .leaseExpired)
        public static let invalidArgument = Code(base: .invalidArgument)
        /// The disk refused (I/O error, no space): see `underlying`.
        public static let storage = Code(base: .storage)
        public static let closed = Code(base: .closed)
        /// A limit of the broker's (topics, partitions, groups, file descriptors) would be
        /// passed; the message names it. Nothing was created.
        public static let limitReached = Code(base: .limitReached)
        public static let groupExists = Code(base: .groupExists)
        /// The group cannot be deleted yet: it has live members, or positions in a topic
        /// that still exists.
        public static let groupInUse = Code(base: .groupInUse)
        public static let unknownSchedule = Code(base: .unknownSchedule)
        /// A create of a schedule whose name is taken by a different definition.
        public static let scheduleExists = Code(base: .scheduleExists)
        /// A spec that does not parse (the message gives the position and the reason) or
        /// options out of range.
        public static let badSchedule = Code(base: .badSchedule)
        /// A time zone that is not an IANA name the machine knows.
        public static let unknownTimeZone = Code(base: .unknownTimeZone)
        /// An acquire that could not have the lock: held (the message names the holder and
        /// until when), at once or when its wait ran out.
        public static let lockHeld = Code(base: .lockHeld)
        /// A renew or release under a token that is not the lock's live grant any more: it
        /// expired, was released, or was granted anew.
        public static let lockLost = Code(base: .lockLost)
        /// A write fenced by a lock's token that is not the live grant (a newer one was
        /// given, or the lock expired or was released): refused, nothing written.
        public static let staleToken = Code(base: .staleToken)
        /// A complete whose callback waits no more: completed already, timed out, or never
        /// issued (a token names one parked job, once).
        public static let callbackClosed = Code(base: .callbackClosed)
    }

    public let code: Code
    public let message: String
    /// The storage error behind a `.storage` error.
    public let underlying: StoreError?

    public init(_ code: Code, _ message: String, underlying: StoreError? = nil) {
        self.code = code
        self.message = message
        self.underlying = underlying
    }

    public var description: String { "\(code): \(message)" }

    /// A store error as the broker reports it: bad input keeps its meaning, the rest is storage.
    static func wrapping(_ error: any Error, _ context: String) -> any Error {
        if let wheel = error as? WheelError { return BrokerError(wheel, context) }
        guard let store = error as? StoreError else { return error }
        switch store.code {
        case .corruptBatch: return BrokerError(.corruptBatch, "\(context): \(store.message)", underlying: store)
        case .malformedBatch: return BrokerError(.malformedBatch, "\(context): \(store.message)", underlying: store)
        case .batchTooLarge: return BrokerError(.messageTooLarge, "\(context): \(store.message)", underlying: store)
        default: return BrokerError(.storage, "\(context): \(store)", underlying: store)
        }
    }
}

extension BrokerError {
    /// The wheel's refusal as the broker reports it: an id that is not pending (unknown,
    /// fired, cancelled or firing) is an unknown message; a due time out of range is the
    /// client's invalid argument; a hand-over waiting for its retry is storage trouble.
    init(_ wheel: WheelError, _ context: String) {
        switch wheel.code {
        case .unknownMessage, .notPending, .beingFired: self.init(.unknownMessage, "\(context): \(wheel.message)")
        case .dueOutOfRange: self.init(.invalidArgument, "\(context): \(wheel.message)")
        case .handOverPending, .foreignDestination: self.init(.storage, "\(context): \(wheel.message)")
        }
    }
}

extension BrokerError {
    /// A client batch's broken rule as the broker reports it: damage on the way is a
    /// corrupt batch, bytes that are no batch a malformed one, an oversized message too
    /// large; the rest are the client's invalid arguments.
    init(_ violation: ClientBatchViolation) {
        switch violation {
        case .corrupt: self.init(.corruptBatch, violation.description)
        case .malformed: self.init(.malformedBatch, violation.description)
        case .messageTooLarge: self.init(.messageTooLarge, violation.description)
        case .tooManyRecords, .timestampSkew, .reservedHeader: self.init(.invalidArgument, violation.description)
        }
    }
}
