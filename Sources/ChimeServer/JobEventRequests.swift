import ChimeBroker
import ChimeProtocol
import NIOCore

/// Opcodes 33–36: job events (docs/formats.md, "Job events").
extension RequestHandler {
    func jobEventRequest(_ opcode: Opcode, _ payload: ByteBuffer, allocator: ByteBufferAllocator) async throws -> ByteBuffer {
        switch opcode {
        case .jobAbort:
            let r = try JobAbort(payload: payload)
            let outcome = try await broker.abort(r.id.messageID, reason: r.reason)
            return JobAbortReply(outcome: WireAbortOutcome(outcome)).payload(allocator: allocator)
        case .abortNotices:
            let r = try MemberRef(payload: payload)
            let receipts = try await broker.abortNotices(group: r.group, member: r.memberID)
            return AbortNotices(receipts: receipts.map(WireReceipt.init)).payload(allocator: allocator)
        case .jobSnooze:
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
                throw BrokerError(.callbackClosed, "no callback waits for token \(r.token.prefix(100)): not a callback token (<id>.<16 hex digits>)")
            }
            try await broker.completeCallback(token, payload: r.payload)
            return Empty().payload(allocator: allocator)
        default:
            preconditionFailure("not a job event opcode: \(opcode)")
        }
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
