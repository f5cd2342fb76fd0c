/// The number in an error reply (docs/formats.md, "error reply"), named once here for the
/// server and the client alike: 1–99 are protocol errors (`ProtocolError`), 100 and up the
/// engine's (`BrokerError` on the server), 199 anything else that went wrong inside the
/// server. A code this build does not name is kept as it came (`rawValue`), so a newer
/// server's codes pass through an older client unchanged.
public struct WireErrorCode: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: UInt16

    public init(rawValue: UInt16) { self.rawValue = rawValue }

    // Protocol errors: the frame or the handshake.
    /// The length field is over the limit (the hello limit before the handshake).
    public static let frameTooLarge = WireErrorCode(rawValue: 1)
    public static let frameTooShort = WireErrorCode(rawValue: 2)
    public static let unknownOpcode = WireErrorCode(rawValue: 3)
    public static let badFlags = WireErrorCode(rawValue: 4)
    public static let malformed = WireErrorCode(rawValue: 5)
    public static let unsupportedVersion = WireErrorCode(rawValue: 6)
    /// Anything but a hello first, a wrong token, or no hello before the hello deadline.
    public static let unauthenticated = WireErrorCode(rawValue: 7)
    public static let tooManyRecords = WireErrorCode(rawValue: 8)

    // Engine errors.
    public static let unknownTopic = WireErrorCode(rawValue: 100)
    public static let topicExists = WireErrorCode(rawValue: 101)
    public static let invalidName = WireErrorCode(rawValue: 102)
    public static let badPartition = WireErrorCode(rawValue: 103)
    public static let messageTooLarge = WireErrorCode(rawValue: 104)
    public static let malformedBatch = WireErrorCode(rawValue: 105)
    public static let corruptBatch = WireErrorCode(rawValue: 106)
    /// The broker does not know this producer's sequence: continue under a new producer id.
    public static let sequenceGap = WireErrorCode(rawValue: 107)
    public static let unknownMessage = WireErrorCode(rawValue: 108)
    public static let unknownGroup = WireErrorCode(rawValue: 109)
    /// The member was dropped (session timeout, left): join again.
    public static let unknownMember = WireErrorCode(rawValue: 110)
    public static let fenced = WireErrorCode(rawValue: 111)
    public static let unknownDelivery = WireErrorCode(rawValue: 112)
    public static let alreadyAcked = WireErrorCode(rawValue: 113)
    public static let leaseExpired = WireErrorCode(rawValue: 114)
    public static let invalidArgument = WireErrorCode(rawValue: 115)
    public static let storage = WireErrorCode(rawValue: 116)
    public static let closed = WireErrorCode(rawValue: 117)
    /// A broker limit (topics, partitions, groups, file descriptors) would be passed.
    public static let limitReached = WireErrorCode(rawValue: 118)
    public static let groupExists = WireErrorCode(rawValue: 119)
    /// A group with live members, or with positions in a topic that still exists, cannot
    /// be deleted.
    public static let groupInUse = WireErrorCode(rawValue: 120)
    public static let unknownSchedule = WireErrorCode(rawValue: 121)
    /// A create of a schedule whose name is taken by another definition.
    public static let scheduleExists = WireErrorCode(rawValue: 122)
    /// A schedule spec that does not parse (the message gives where and why), or options
    /// out of range.
    public static let badSchedule = WireErrorCode(rawValue: 123)
    public static let unknownTimeZone = WireErrorCode(rawValue: 124)
    /// The lock is held (by whom and until when in the message); the acquire's wait, if
    /// any, ran out.
    public static let lockHeld = WireErrorCode(rawValue: 125)
    /// A renew or release under a token that is no longer the lock's live grant.
    public static let lockLost = WireErrorCode(rawValue: 126)
    /// A fenced write whose lock token is not the live grant: nothing was written.
    public static let staleToken = WireErrorCode(rawValue: 127)
    /// Version 9: a callback completed twice, after its timeout, or never issued.
    public static let callbackClosed = WireErrorCode(rawValue: 128)
    /// The connection's token does not grant this request: its scope is too low, or the
    /// topic is outside the token's patterns. Nothing was done; the connection stays open.
    public static let forbidden = WireErrorCode(rawValue: 129)
    /// Anything else that went wrong inside the server.
    public static let internalError = WireErrorCode(rawValue: 199)

    /// Protocol errors: the frame or the handshake was wrong (1–99).
    public var isProtocolError: Bool { (1...99).contains(rawValue) }

    public var description: String { "\(rawValue)" }
}

extension ErrorReply {
    /// The code as a name to compare with (`reply.wireCode == .unknownTopic`).
    public var wireCode: WireErrorCode { WireErrorCode(rawValue: code) }

    public init(_ code: WireErrorCode, message: String) { self.init(code: code.rawValue, message: message) }
}
