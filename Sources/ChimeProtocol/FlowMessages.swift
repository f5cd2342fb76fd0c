import NIOCore

// Version 9: flows (opcodes 37–39), byte by byte in docs/formats.md ("Flows"). A flow is
// named by its text, `<topic id>-<partition>-f<id>`.

/// `flowSpawn` (37): the leased job `receipt` spawns `children` on `childTopic` and, once
/// they have ended (`policy` 0 wait for all, 1 fail fast), `continuation` on
/// `continuationTopic`; the job is acked by it. Records are due now, without dedup keys.
public struct FlowSpawn: WireMessage {
    public var group: String
    public var memberID: UInt64
    public var receipt: WireReceipt
    public var policy: UInt8
    public var childTopic: String
    public var children: [OutgoingRecord]
    public var continuationTopic: String
    public var continuation: OutgoingRecord

    public init(
        group: String, memberID: UInt64, receipt: WireReceipt, policy: UInt8 = 0, childTopic: String, children: [OutgoingRecord],
        continuationTopic: String, continuation: OutgoingRecord
    ) {
        self.group = group
        self.memberID = memberID
        self.receipt = receipt
        self.policy = policy
        self.childTopic = childTopic
        self.children = children
        self.continuationTopic = continuationTopic
        self.continuation = continuation
    }
    public init(from r: inout WireReader) throws {
        group = try r.string("group")
        memberID = try r.u64("member id")
        receipt = try WireReceipt(from: &r)
        policy = try r.u8("policy")
        guard policy <= 1 else { throw ProtocolError(.malformed, "flow policy is 0 or 1, not \(policy)") }
        childTopic = try r.string("child topic")
        let n = try r.count("children", minimumItemBytes: OutgoingRecord.minimumSize, limit: Publish.maxRecords)
        var children: [OutgoingRecord] = []
        children.reserveCapacity(n)
        for _ in 0..<n { children.append(try OutgoingRecord(from: &r)) }
        self.children = children
        continuationTopic = try r.string("continuation topic")
        continuation = try OutgoingRecord(from: &r)
    }
    public var estimatedSize: Int { 64 + children.reduce(0) { $0 + $1.body.count + 32 } + continuation.body.count }
    public func encode(into b: inout ByteBuffer) {
        b.writeWire(group)
        b.writeWire(memberID)
        receipt.encode(into: &b)
        b.writeWire(policy)
        b.writeWire(childTopic)
        b.writeWire(UInt32(children.count))
        for c in children { c.encode(into: &b) }
        b.writeWire(continuationTopic)
        continuation.encode(into: &b)
    }
}

/// The flow a spawn made (or had made before, for a job spawning again).
public struct FlowSpawnReply: WireMessage {
    public var flow: String
    public init(flow: String) { self.flow = flow }
    public init(from r: inout WireReader) throws { flow = try r.string("flow") }
    public func encode(into b: inout ByteBuffer) { b.writeWire(flow) }
}

/// `flowQuery` (38): how flow `flow` stands, and up to `max` of its children's outcomes
/// from `cursor` (0: the first; 0 outcomes asked: the status alone).
public struct FlowQuery: WireMessage {
    public var flow: String
    public var cursor: Int64
    public var max: UInt32
    public init(flow: String, cursor: Int64 = 0, max: UInt32 = 0) {
        self.flow = flow
        self.cursor = cursor
        self.max = max
    }
    public init(from r: inout WireReader) throws {
        flow = try r.string("flow")
        cursor = try r.i64("cursor")
        max = try r.u32("max")
    }
    public func encode(into b: inout ByteBuffer) {
        b.writeWire(flow)
        b.writeWire(cursor)
        b.writeWire(max)
    }
}

public struct WireFlowOutcome: Sendable, Equatable {
    public var index: UInt32
    public var succeeded: Bool
    /// The child's result, or its error (UTF-8).
    public var detail: [UInt8]
    public init(index: UInt32, succeeded: Bool, detail: [UInt8]) {
        self.index = index
        self.succeeded = succeeded
        self.detail = detail
    }
}

public struct FlowQueryReply: WireMessage {
    public var children: UInt32
    public var succeeded: UInt32
    public var failed: UInt32
    public var policy: UInt8
    /// 0 running, 1 done (its continuation published), 2 aborted.
    public var state: UInt8
    public var continuation: WireMessageID?
    public var outcomes: [WireFlowOutcome]
    /// The cursor of the next page; nil after the last.
    public var next: Int64?

    public init(
        children: UInt32, succeeded: UInt32, failed: UInt32, policy: UInt8, state: UInt8, continuation: WireMessageID?, outcomes: [WireFlowOutcome],
        next: Int64?
    ) {
        self.children = children
        self.succeeded = succeeded
        self.failed = failed
        self.policy = policy
        self.state = state
        self.continuation = continuation
        self.outcomes = outcomes
        self.next = next
    }
    public init(from r: inout WireReader) throws {
        children = try r.u32("children")
        succeeded = try r.u32("succeeded")
        failed = try r.u32("failed")
        policy = try r.u8("policy")
        state = try r.u8("state")
        guard policy <= 1, state <= 2 else { throw ProtocolError(.malformed, "flow policy \(policy) or state \(state) unknown") }
        switch try r.u8("continuation flag") {
        case 0: continuation = nil
        case 1: continuation = try WireMessageID(from: &r)
        case let other: throw ProtocolError(.malformed, "continuation flag is 0 or 1, not \(other)")
        }
        let n = try r.count("outcomes", minimumItemBytes: 9)
        var outcomes: [WireFlowOutcome] = []
        outcomes.reserveCapacity(n)
        for _ in 0..<n {
            let index = try r.u32("index")
            let ok = try r.u8("succeeded")
            guard ok <= 1 else { throw ProtocolError(.malformed, "succeeded is 0 or 1, not \(ok)") }
            outcomes.append(WireFlowOutcome(index: index, succeeded: ok == 1, detail: try r.bytes("detail")))
        }
        self.outcomes = outcomes
        next = try r.optionalI64("next")
    }
    public var estimatedSize: Int { 64 + outcomes.reduce(0) { $0 + 16 + $1.detail.count } }
    public func encode(into b: inout ByteBuffer) {
        b.writeWire(children)
        b.writeWire(succeeded)
        b.writeWire(failed)
        b.writeWire(policy)
        b.writeWire(state)
        if let continuation {
            b.writeWire(UInt8(1))
            continuation.encode(into: &b)
        } else {
            b.writeWire(UInt8(0))
        }
        b.writeWire(UInt32(outcomes.count))
        for o in outcomes {
            b.writeWire(o.index)
            b.writeWire(UInt8(o.succeeded ? 1 : 0))
            b.writeWire(bytes: o.detail)
        }
        b.writeWire(optional: next)
    }
}

/// `flowAbort` (39): aborts flow `flow` and its children that have not ended. Reply: u32
/// how many children were aborted.
public struct FlowAbort: WireMessage {
    public var flow: String
    public var reason: String
    public init(flow: String, reason: String) {
        self.flow = flow
        self.reason = reason
    }
    public init(from r: inout WireReader) throws {
        flow = try r.string("flow")
        reason = try r.string("reason")
    }
    public func encode(into b: inout ByteBuffer) {
        b.writeWire(flow)
        b.writeWire(reason)
    }
}

public struct FlowAbortReply: WireMessage {
    public var aborted: UInt32
    public init(aborted: UInt32) { self.aborted = aborted }
    public init(from r: inout WireReader) throws { aborted = try r.u32("aborted") }
    public func encode(into b: inout ByteBuffer) { b.writeWire(aborted) }
}

/// When a flow's continuation goes (`FlowSpawn.policy`).
public enum WireFlowPolicy: UInt8, Sendable {
    /// Once every child has ended.
    case waitForAll = 0
    /// At the first child that fails (the others are aborted), or once all succeeded.
    case failFast = 1
}
