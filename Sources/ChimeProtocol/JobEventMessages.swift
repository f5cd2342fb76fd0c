import NIOCore

// Version 9: fences on writes and job events (opcodes 33–36), byte by byte in
// docs/formats.md ("Job events"). Times are milliseconds.

/// A write made only while `token` is the live grant of the lock `lock` (see `LockAcquire`):
/// at the end of a version-9 `publish` or settle as a flag byte, then the lock's name and
/// the token when the flag is 1.
public struct WireFence: Sendable, Equatable {
    public var lock: String
    public var token: Int64

    public init(lock: String, token: Int64) {
        self.lock = lock
        self.token = token
    }

    static func read(_ r: inout WireReader) throws -> WireFence? {
        switch try r.u8("fence flag") {
        case 0: return nil
        case 1: return WireFence(lock: try r.string("fence lock"), token: try r.i64("fence token"))
        case let other: throw ProtocolError(.malformed, "fence flag is 0 or 1, not \(other)")
        }
    }

    static func write(_ fence: WireFence?, into b: inout ByteBuffer) {
        guard let fence else { return b.writeWire(UInt8(0)) }
        b.writeWire(UInt8(1))
        b.writeWire(fence.lock)
        b.writeWire(fence.token)
    }
}

/// `jobAbort` (33): aborts the job `id` with `reason`.
public struct JobAbort: WireMessage {
    public var id: WireMessageID
    public var reason: String

    public init(id: WireMessageID, reason: String) {
        self.id = id
        self.reason = reason
    }
    public init(from r: inout WireReader) throws {
        id = try WireMessageID(from: &r)
        reason = try r.string("reason")
    }
    public func encode(into b: inout ByteBuffer) {
        id.encode(into: &b)
        b.writeWire(reason)
    }
}

/// What an abort did: the job was cancelled before it ran (0), signalled to the members
/// running it (1), or had finished already (2).
public enum WireAbortOutcome: UInt8, Sendable, Equatable {
    case cancelled = 0
    case signalled = 1
    case finished = 2
}

public struct JobAbortReply: WireMessage {
    public var outcome: WireAbortOutcome

    public init(outcome: WireAbortOutcome) { self.outcome = outcome }
    public init(from r: inout WireReader) throws {
        let raw = try r.u8("abort outcome")
        guard let outcome = WireAbortOutcome(rawValue: raw) else { throw ProtocolError(.malformed, "unknown abort outcome \(raw)") }
        self.outcome = outcome
    }
    public func encode(into b: inout ByteBuffer) { b.writeWire(outcome.rawValue) }
}

/// `abortNotices` (34), asked with a `MemberRef`: the leases of the member that were
/// aborted since it last asked (each is told once).
public struct AbortNotices: WireMessage {
    public var receipts: [WireReceipt]

    public init(receipts: [WireReceipt]) { self.receipts = receipts }
    public init(from r: inout WireReader) throws {
        let n = try r.count("receipts", minimumItemBytes: WireReceipt.size)
        receipts = try (0..<n).map { _ in try WireReceipt(from: &r) }
    }
    public func encode(into b: inout ByteBuffer) {
        b.writeWire(UInt32(receipts.count))
        for rc in receipts { rc.encode(into: &b) }
    }
}

/// `jobSnooze` (35): settles a leased job by parking it in the wheel for `milliseconds`,
/// not as a failed attempt: a continuation (`callback` 0) is delivered again then with
/// `state`; a job awaiting a callback (1) is delivered again when its callback is
/// completed, or at the timeout.
public struct JobSnooze: WireMessage {
    public static let maxStateBytes = 64 << 10
    public var group: String
    public var memberID: UInt64
    public var receipt: WireReceipt
    public var milliseconds: Int64
    public var callback: Bool
    public var state: [UInt8]?

    public init(group: String, memberID: UInt64, receipt: WireReceipt, milliseconds: Int64, callback: Bool, state: [UInt8]?) {
        self.group = group
        self.memberID = memberID
        self.receipt = receipt
        self.milliseconds = milliseconds
        self.callback = callback
        self.state = state
    }
    public init(from r: inout WireReader) throws {
        group = try r.string("group")
        memberID = try r.u64("member id")
        receipt = try WireReceipt(from: &r)
        milliseconds = try r.i64("milliseconds")
        let flag = try r.u8("callback flag")
        guard flag <= 1 else { throw ProtocolError(.malformed, "callback flag is 0 or 1, not \(flag)") }
        callback = flag == 1
        state = try r.optionalBytes("state")
    }
    public func encode(into b: inout ByteBuffer) {
        b.writeWire(group)
        b.writeWire(memberID)
        receipt.encode(into: &b)
        b.writeWire(milliseconds)
        b.writeWire(UInt8(callback ? 1 : 0))
        b.writeWire(bytes: state)
    }
}

/// The parked job's id (a scheduled message's) and, for a callback, the token that
/// completes it (empty for a continuation).
public struct JobSnoozeReply: WireMessage {
    public var id: WireMessageID
    public var token: String

    public init(id: WireMessageID, token: String) {
        self.id = id
        self.token = token
    }
    public init(from r: inout WireReader) throws {
        id = try WireMessageID(from: &r)
        token = try r.string("token")
    }
    public func encode(into b: inout ByteBuffer) {
        id.encode(into: &b)
        b.writeWire(token)
    }
}

/// `callbackComplete` (36): completes the callback `token` with `payload`; the answer is
/// empty.
public struct CallbackComplete: WireMessage {
    public static let maxPayloadBytes = 64 << 10
    public var token: String
    public var payload: [UInt8]

    public init(token: String, payload: [UInt8]) {
        self.token = token
        self.payload = payload
    }
    public init(from r: inout WireReader) throws {
        token = try r.string("token")
        payload = try r.bytes("payload")
    }
    public func encode(into b: inout ByteBuffer) {
        b.writeWire(token)
        b.writeWire(bytes: payload)
    }
}

/// A request whose layout depends on the connection's protocol version (a client lays it
/// out for the version its hello settled on before sending it).
public protocol VersionedRequest: WireMessage {
    var version: UInt16 { get set }
    /// Its fence, which a connection older than version 9 cannot carry.
    var fence: WireFence? { get }
}

extension Settle: VersionedRequest {}
extension Publish: VersionedRequest {}
