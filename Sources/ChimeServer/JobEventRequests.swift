import ChimeBroker
import ChimeProtocol
import NIOCore

/// Opcodes 33–36: job events (docs/formats.md, "Job events").
extension RequestHandler {
    /// Aborting a job or a flow needs `admin` on its topic; completing a callback `publish`
    /// on its job's topic; what a worker does with its own deliveries `publish`; reading a
    /// flow `read` on its topic.
    func jobEventRequest(_ opcode: Opcode, _ payload: ByteBuffer, _ access: RequestAccess, allocator: ByteBufferAllocator) async throws -> ByteBuffer {
        switch opcode {
        case .jobAbort:
            let r = try JobAbort(payload: payload)
            try access.require(.admin, message: r.id.messageID)
            let outcome = try await broker.abort(r.id.messageID, reason: r.reason)
            return JobAbortReply(outcome: WireAbortOutcome(outcome)).payload(allocator: allocator)
        case .abortNotices:
            try access.require(.publish)
            let r = try MemberRef(payload: payload)
            let receipts = try await broker.abortNotices(group: r.group, member: r.memberID)
            return AbortNotices(receipts: receipts.map(WireReceipt.init)).payload(allocator: allocator)
        case .jobSnooze:
            try access.require(.publish)
            let r = try JobSnooze(payload: payload)
            if r.callback {
                let token = try await broker.awaitCallback(group: r.group, member: r.memberID, r.receipt.receipt, timeout: r.milliseconds, state: r.state)
                return JobSnoozeReply(id: WireMessageID(token.id), token: token.description).payload(allocator: allocator)
            }
            let id = try await broker.snooze(group: r.group, member: r.memberID, r.receipt.receipt, milliseconds: r.milliseconds, state: r.state)
            return JobSnoozeReply(id: WireMessageID(id), token: "").payload(allocator: allocator)
        case .callbackComplete:
            let r = try CallbackComplete(payload: payload)
            guard let token = CallbackToken(r.token) else {
                throw BrokerError(.callbackClosed, "no callback waits for token \(r.token.prefix(100)): not a callback token (<id>.<due ms>.<16 hex digits>)")
            }
            try access.require(.publish, message: token.id)
            try await broker.completeCallback(token, payload: r.payload)
            return Empty().payload(allocator: allocator)
        case .flowSpawn:
            let r = try FlowSpawn(payload: payload)
            try access.require(.publish, topics: [r.childTopic, r.continuationTopic].filter { !$0.isEmpty })
            let ref = try await broker.spawnFlow(
                group: r.group, member: r.memberID, r.receipt.receipt, childTopic: r.childTopic, children: r.children.map(\.message),
                policy: FlowPolicy(rawValue: r.policy) ?? .waitForAll, continuationTopic: r.continuationTopic, continuation: r.continuation.message)
            return FlowSpawnReply(flow: ref.description).payload(allocator: allocator)
        case .flowQuery:
            let r = try FlowQuery(payload: payload)
            let ref = try Self.flow(r.flow)
            try access.require(.read, topicID: ref.topicID)
            let status = try await broker.flowStatus(ref)
            let page = r.max == 0 ? ([], r.cursor) : try await broker.flowOutcomes(ref, from: r.cursor, max: Int(r.max))
            return FlowQueryReply(
                children: UInt32(status.children), succeeded: UInt32(status.succeeded), failed: UInt32(status.failed), policy: status.policy.rawValue,
                state: status.aborted ? 2 : status.continuation != nil ? 1 : 0, continuation: status.continuation.map(WireMessageID.init),
                outcomes: page.outcomes.map { WireFlowOutcome(index: UInt32($0.index), succeeded: $0.succeeded, detail: $0.detail) }, next: page.next
            ).payload(allocator: allocator)
        case .flowAbort:
            let r = try FlowAbort(payload: payload)
            let ref = try Self.flow(r.flow)
            try access.require(.admin, topicID: ref.topicID)
            let aborted = try await broker.abortFlow(ref, reason: r.reason)
            return FlowAbortReply(aborted: UInt32(aborted)).payload(allocator: allocator)
        default:
            preconditionFailure("not a job event opcode: \(opcode)")
        }
    }
}

extension RequestHandler {
    static func flow(_ text: String) throws -> FlowRef {
        guard let ref = FlowRef(text) else { throw BrokerError(.unknownMessage, "'\(text.prefix(100))' is not a flow (they look like 3-0-f17)") }
        return ref
    }
}

extension WireAbortOutcome {
    init(_ outcome: AbortOutcome) {
        switch outcome {
        case .cancelled: self = .cancelled
        case .signalled: self = .signalled
        case .finished: self = .finished
        }
    }
}
