import ChimeBroker
import ChimeProtocol
import NIOCore

/// Opcodes 29–32: locks with fencing tokens (docs/formats.md, "Locks").
extension RequestHandler {
    func lockRequest(_ opcode: Opcode, _ payload: ByteBuffer, allocator: ByteBufferAllocator) async throws -> ByteBuffer {
        switch opcode {
        case .lockAcquire:
            let r = try LockAcquire(payload: payload)
            let grant = try await broker.acquireLock(r.name, holder: r.holder, ttlMilliseconds: r.ttlMilliseconds, waitMilliseconds: r.waitMilliseconds)
            return LockGrantReply(token: grant.token, expiresAt: grant.expiresAt).payload(allocator: allocator)
        case .lockRenew:
            let r = try LockRenew(payload: payload)
            let grant = try await broker.renewLock(r.name, token: r.token, ttlMilliseconds: r.ttlMilliseconds)
            return LockGrantReply(token: grant.token, expiresAt: grant.expiresAt).payload(allocator: allocator)
        case .lockRelease:
            let r = try LockRelease(payload: payload)
            try await broker.releaseLock(r.name, token: r.force ? nil : r.token)
            return Empty().payload(allocator: allocator)
        case .lockList:
            let r = try LockListRequest(payload: payload)
            let locks = r.name.isEmpty ? await broker.locks() : [try await broker.lock(r.name)]
            return LockListReply(locks: locks.map(WireLock.init)).payload(allocator: allocator)
        default:
            preconditionFailure("not a lock opcode: \(opcode)")
        }
    }
}

extension WireLock {
    init(_ l: LockInfo) {
        self.init(
            name: l.name, holder: l.holder, token: l.token ?? 0, expiresAt: l.expiresAt ?? 0, waiters: UInt32(clamping: l.waiters),
            partition: UInt32(l.partition))
    }
}
