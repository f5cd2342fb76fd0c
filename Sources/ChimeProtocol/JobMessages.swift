import NIOCore

/// Version 6: a job's status by its message id (`jobStatus`, opcode 24).
public struct JobStatusRequest: WireMessage {
    public var id: WireMessageID
    /// The group to ask about; empty: every group that consumes the message's partition.
    public var group: String

    public init(id: WireMessageID, group: String = "") {
        self.id = id
        self.group = group
    }
    public init(from r: inout WireReader) throws {
        id = try WireMessageID(from: &r)
        group = try r.string("group")
    }
    public func encode(into b: inout ByteBuffer) {
        id.encode(into: &b)
        b.writeWire(group)
    }
}

/// Where a job stands (docs/formats.md, "jobStatus"). Times are ms, broker time.
public enum WireJobState: Sendable, Equatable {
    case scheduled(dueAt: Int64)
    case ready
    case running(member: UInt64, attempt: Int, leaseDeadline: Int64)
    /// `nextAttemptAt` nil: its time has come and it waits for delivery.
    case retrying(nextAttemptAt: Int64?, attempts: Int, lastError: String?)
    case succeeded
    /// Acked before the broker last started, not a dead letter: succeeded, unless it was
    /// then waiting for a retry.
    case finished
    case dead(reason: String, attempts: Int)
    case cancelled
    /// Version 9: aborted — while it ran, or before.
    case aborted(whileRunning: Bool, reason: String)
    /// Version 9: parked in the wheel until `until` — a continuation, or a job awaiting its
    /// callback (then `until` is the timeout).
    case waiting(until: Int64, callback: Bool)

    /// Its name as the CLI and JSON show it.
    public var name: String {
        switch self {
        case .scheduled: "scheduled"
        case .ready: "ready"
        case .running: "running"
        case .retrying: "retrying"
        case .succeeded: "succeeded"
        case .finished: "finished"
        case .dead: "dead"
        case .cancelled: "cancelled"
        case .aborted: "aborted"
        case .waiting(_, let callback): callback ? "awaiting-callback" : "snoozed"
        }
    }

    /// As a connection of `version` can read it: the states of version 9 as the nearest of
    /// version 8 (an aborted job as cancelled, a parked one as retrying).
    public func laidOut(for version: UInt16) -> WireJobState {
        guard version < ProtocolVersion.fences else { return self }
        switch self {
        case .aborted: return .cancelled
        case .waiting(let until, _): return .retrying(nextAttemptAt: until, attempts: 0, lastError: nil)
        default: return self
        }
    }
}

/// A job's state in one group (nil: the same in every group).
public struct WireJobStatus: Sendable, Equatable {
    public var group: String?
    public var state: WireJobState

    public init(group: String?, state: WireJobState) {
        self.group = group
        self.state = state
    }

    init(from r: inout WireReader) throws {
        let g = try r.string("group")
        group = g.isEmpty ? nil : g
        switch try r.u8("job state") {
        case 0: state = .scheduled(dueAt: try r.i64("due at"))
        case 1: state = .ready
        case 2: state = .running(member: try r.u64("member"), attempt: Int(try r.u32("attempt")), leaseDeadline: try r.i64("lease deadline"))
        case 3:
            let next = try r.optionalI64("next attempt at")
            let attempts = Int(try r.u32("attempts"))
            let error = try r.string("last error")
            state = .retrying(nextAttemptAt: next, attempts: attempts, lastError: error.isEmpty ? nil : error)
        case 4: state = .succeeded
        case 5: state = .finished
        case 6: state = .dead(reason: try r.string("reason"), attempts: Int(try r.u32("attempts")))
        case 7: state = .cancelled
        case 8:
            let flag = try r.u8("while running")
            guard flag <= 1 else { throw ProtocolError(.malformed, "while-running flag is 0 or 1, not \(flag)") }
            state = .aborted(whileRunning: flag == 1, reason: try r.string("reason"))
        case 9:
            let until = try r.i64("until")
            let flag = try r.u8("callback")
            guard flag <= 1 else { throw ProtocolError(.malformed, "callback flag is 0 or 1, not \(flag)") }
            state = .waiting(until: until, callback: flag == 1)
        case let other: throw ProtocolError(.malformed, "unknown job state \(other)")
        }
    }

    func encode(into b: inout ByteBuffer) {
        b.writeWire(group ?? "")
        switch state {
        case .scheduled(let dueAt):
            b.writeWire(UInt8(0))
            b.writeWire(dueAt)
        case .ready: b.writeWire(UInt8(1))
        case .running(let member, let attempt, let deadline):
            b.writeWire(UInt8(2))
            b.writeWire(member)
            b.writeWire(UInt32(clamping: attempt))
            b.writeWire(deadline)
        case .retrying(let next, let attempts, let error):
            b.writeWire(UInt8(3))
            b.writeWire(optional: next)
            b.writeWire(UInt32(clamping: attempts))
            b.writeWire(error ?? "")
        case .succeeded: b.writeWire(UInt8(4))
        case .finished: b.writeWire(UInt8(5))
        case .dead(let reason, let attempts):
            b.writeWire(UInt8(6))
            b.writeWire(reason)
            b.writeWire(UInt32(clamping: attempts))
        case .cancelled: b.writeWire(UInt8(7))
        case .aborted(let whileRunning, let reason):
            b.writeWire(UInt8(8))
            b.writeWire(UInt8(whileRunning ? 1 : 0))
            b.writeWire(reason)
        case .waiting(let until, let callback):
            b.writeWire(UInt8(9))
            b.writeWire(until)
            b.writeWire(UInt8(callback ? 1 : 0))
        }
    }
}

/// The answer to `jobStatus`: one status per group (or one for all).
public struct JobStatusReply: WireMessage {
    public var statuses: [WireJobStatus]

    public init(statuses: [WireJobStatus]) { self.statuses = statuses }
    public init(from r: inout WireReader) throws {
        statuses = try (0..<r.count("statuses", minimumItemBytes: 3)).map { _ in try WireJobStatus(from: &r) }
    }
    public func encode(into b: inout ByteBuffer) {
        b.writeWire(UInt32(statuses.count))
        for s in statuses { s.encode(into: &b) }
    }
}
