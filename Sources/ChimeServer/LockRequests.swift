import ChimeBroker
import ChimeProtocol
import NIOCore

/// Opcodes 29–32: locks with fencing tokens (docs/formats.md, "Locks").
extension RequestHandler {
    /// Locks belong to no topic: every lock request needs a grant without topic patterns —
    /// `publish` to take, renew and release one's own (a fencing token orders writers; it is
    /// no credential), `admin` to release by force, `read` to list.
    func lockRequest(_ opcode: Opcode, _ payload: ByteBuffer, _ access: RequestAccess, allocator: ByteBufferAllocator) async throws -> ByteBuffer {
        switch opcode {
        case .lockAcquire:
            try access.require(.publish, topic: nil)
            let r = try LockAcquire(payload: payload)
            let grant = try await broker.acquireLock(r.name, holder: r.holder, ttlMilliseconds: r.ttlMilliseconds, waitMilliseconds: r.waitMilliseconds)
            return LockGrantReply(token: grant.token, expiresAt: grant.expiresAt).payload(allocator: allocator)
        case .lockRenew:
            try access.require(.publish, topic: nil)
            let r = try LockRenew(payload: payload)
            let grant = try await broker.renewLock(r.name, token: r.token, ttlMilliseconds: r.ttlMilliseconds)
            return LockGrantReply(token: grant.token, expiresAt: grant.expiresAt).payload(allocator: allocator)
        case .lockRelease:
            let r = try LockRelease(payload: payload)
            try access.require(r.force ? .admin : .publish, topic: nil)
            try await broker.releaseLock(r.name, token: r.force ? nil : r.token)
            return Empty().payload(allocator: allocator)
        case .lockList:
            let r = try LockListRequest(payload: payload)
            try access.require(.read, topic: nil)
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
