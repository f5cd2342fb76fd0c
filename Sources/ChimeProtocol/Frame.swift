import NIOCore

/// One frame of the Chime wire protocol, version 1 (docs/formats.md, "Wire protocol"):
///
///     0  u32 length         bytes after this field (8 + payload), checked against the
///                           limit before anything is allocated for the frame
///     4  u8  opcode         what the frame asks or answers (`Opcode`)
///     5  u8  flags          bit 0: a response; bit 1: an error response; others 0
///     6  u16 reserved       0
///     8  u32 correlationID  chosen by the client, echoed by the response
///    12  ...                payload, per opcode
///
/// All integers are little-endian, like every on-disk format of Chime.
public struct Frame: Sendable, Equatable {
    public static let headerSize = 12
    /// Bytes of the header counted in `length` (everything after the length field).
    static let lengthCovered = 8

    public struct Flags: OptionSet, Sendable, Hashable {
        public let rawValue: UInt8
        public init(rawValue: UInt8) { self.rawValue = rawValue }
        public static let response = Flags(rawValue: 1)
        public static let error = Flags(rawValue: 2)
        static let known: Flags = [.response, .error]
    }

    public var opcode: Opcode
    public var flags: Flags
    public var correlationID: UInt32
    public var payload: ByteBuffer

    public init(opcode: Opcode, flags: Flags = [], correlationID: UInt32, payload: ByteBuffer) {
        self.opcode = opcode
        self.flags = flags
        self.correlationID = correlationID
        self.payload = payload
    }

    public var isResponse: Bool { flags.contains(.response) }
    public var isError: Bool { flags.contains(.error) }

    /// Writes the whole frame.
    public func write(to out: inout ByteBuffer) {
        out.writeInteger(UInt32(Self.lengthCovered + payload.readableBytes), endianness: .little)
        out.writeInteger(opcode.rawValue)
        out.writeInteger(flags.rawValue)
        out.writeInteger(UInt16(0), endianness: .little)
        out.writeInteger(correlationID, endianness: .little)
        var body = payload
        out.writeBuffer(&body)
    }
}

/// Requests and their responses (a response carries the request's opcode).
public enum Opcode: UInt8, Sendable, CaseIterable {
    case hello = 1
    case createTopic = 2
    case listTopics = 3
    case deleteTopic = 4
    case publish = 5
    case cancel = 6
    case reschedule = 7
    case join = 8
    case heartbeat = 9
    case leave = 10
    case fetch = 11
    case ack = 12
    case nack = 13
    case extend = 14
    case term = 15
    case stats = 16
    /// Version 2: records already in the store's batch format.
    case publishRecords = 17
    /// Version 4: read messages without leasing them (a browse).
    case peek = 18
    /// Version 5: groups as objects of their own.
    case createGroup = 19
    case configureGroup = 20
    case describeGroup = 21
    case deleteGroup = 22
    /// Version 5: give leased messages back unprocessed (no attempt counted).
    case release = 23
    /// Version 6: where a job stands, by its message id.
    case jobStatus = 24
    /// Version 7: schedules.
    case scheduleWrite = 25
    case scheduleControl = 26
    case scheduleBackfill = 27
    case scheduleList = 28
    /// Version 8: locks with fencing tokens.
    case lockAcquire = 29
    case lockRenew = 30
    case lockRelease = 31
    case lockList = 32
    /// Version 9: job events.
    case jobAbort = 33
    case abortNotices = 34
    case jobSnooze = 35
    case callbackComplete = 36
    case flowSpawn = 37
    case flowQuery = 38
    case flowAbort = 39

    /// The first protocol version with this opcode: on a connection that chose an older
    /// one it is unknown.
    public var sinceVersion: UInt16 {
        switch self {
        case .publishRecords: 2
        case .peek: 4
        case .createGroup, .configureGroup, .describeGroup, .deleteGroup, .release: 5
        case .jobStatus: 6
        case .scheduleWrite, .scheduleControl, .scheduleBackfill, .scheduleList: 7
        case .lockAcquire, .lockRenew, .lockRelease, .lockList: 8
        case .jobAbort, .abortNotices, .jobSnooze, .callbackComplete, .flowSpawn, .flowQuery, .flowAbort: 9
        default: 1
        }
    }
}
