import ChimeBroker
import ChimeProtocol
import NIOCore

/// Opcodes 29–32: locks with fencing tokens (docs/formats.md, "Locks").
extension RequestHandler {
    /// Taking, renewing and releasing one's own lock need `publish`; a forced release needs
    /// `admin`, and listing locks `read`, both without topic patterns (locks belong to no topic).
    func lockRequest(_ opcode: Opcode, _ payload: ByteBuffer, _ access: RequestAccess, allocator: ByteBufferAllocator) async throws -> ByteBuffer {
        switch opcode {
        case .lockAcquire:
            try access.require(.publish)
            let r = try LockAcquire(payload: payload)
            let grant = try await broker.acquireLock(r.name, holder: r.holder, ttlMilliseconds: r.ttlMilliseconds, waitMilliseconds: r.waitMilliseconds)
            return LockGrantReply(token: grant.token, expiresAt: grant.expiresAt).payload(allocator: allocator)
        case .lockRenew:
            try access.require(.publish)
            let r = try LockRenew(payload: payload)
            let grant = try await broker.renewLock(r.name, token: r.token, ttlMilliseconds: r.ttlMilliseconds)
            return LockGrantReply(token: grant.token, expiresAt: grant.expiresAt).payload(allocator: allocator)
        case .lockRelease:
            let r = try LockRelease(payload: payload)
            if r.force { try access.require(.admin, topic: nil) } else { try access.require(.publish) }
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
