import NIOCore

// Version 8: locks with fencing tokens (opcodes 29–32), byte by byte in docs/formats.md
// ("Locks"). Times are milliseconds; expiries are the broker's clock.

/// `lockAcquire` (29): the lock `name` for `holder`, for `ttlMilliseconds`; waiting up to
/// `waitMilliseconds` (0: answer `lockHeld` at once if it is held).
public struct LockAcquire: WireMessage {
    public var name: String
    public var holder: String
    public var ttlMilliseconds: Int64
    public var waitMilliseconds: Int64

    public init(name: String, holder: String, ttlMilliseconds: Int64, waitMilliseconds: Int64) {
        self.name = name
        self.holder = holder
        self.ttlMilliseconds = ttlMilliseconds
        self.waitMilliseconds = waitMilliseconds
    }
    public init(from r: inout WireReader) throws {
        name = try r.string("name")
        holder = try r.string("holder")
        ttlMilliseconds = try r.i64("ttl")
        waitMilliseconds = try r.i64("wait")
    }
    public func encode(into b: inout ByteBuffer) {
        b.writeWire(name)
        b.writeWire(holder)
        b.writeWire(ttlMilliseconds)
        b.writeWire(waitMilliseconds)
    }
}

/// `lockRenew` (30): extends the live grant `token` of `name` to `ttlMilliseconds` from now.
public struct LockRenew: WireMessage {
    public var name: String
    public var token: Int64
    public var ttlMilliseconds: Int64

    public init(name: String, token: Int64, ttlMilliseconds: Int64) {
        self.name = name
        self.token = token
        self.ttlMilliseconds = ttlMilliseconds
    }
    public init(from r: inout WireReader) throws {
        name = try r.string("name")
        token = try r.i64("token")
        ttlMilliseconds = try r.i64("ttl")
    }
    public func encode(into b: inout ByteBuffer) {
        b.writeWire(name)
        b.writeWire(token)
        b.writeWire(ttlMilliseconds)
    }
}

/// `lockRelease` (31): releases the live grant `token` of `name`; `force` 1 releases it
/// whoever holds it (the token is then not checked).
public struct LockRelease: WireMessage {
    public var name: String
    public var token: Int64
    public var force: Bool

    public init(name: String, token: Int64, force: Bool = false) {
        self.name = name
        self.token = token
        self.force = force
    }
    public init(from r: inout WireReader) throws {
        name = try r.string("name")
        token = try r.i64("token")
        let flag = try r.u8("force")
        guard flag <= 1 else { throw ProtocolError(.malformed, "force is 0 or 1, not \(flag)") }
        force = flag == 1
    }
    public func encode(into b: inout ByteBuffer) {
        b.writeWire(name)
        b.writeWire(token)
        b.writeWire(UInt8(force ? 1 : 0))
    }
}

/// The answer to an acquire or a renew: the fencing token and the expiry.
public struct LockGrantReply: WireMessage {
    public var token: Int64
    public var expiresAt: Int64

    public init(token: Int64, expiresAt: Int64) {
        self.token = token
        self.expiresAt = expiresAt
    }
    public init(from r: inout WireReader) throws {
        token = try r.i64("token")
        expiresAt = try r.i64("expires at")
    }
    public func encode(into b: inout ByteBuffer) {
        b.writeWire(token)
        b.writeWire(expiresAt)
    }
}

/// `lockList` (32): one lock (a name) or every lock held or waited for (empty).
public struct LockListRequest: WireMessage {
    public var name: String

    public init(name: String = "") { self.name = name }
    public init(from r: inout WireReader) throws { name = try r.string("name") }
    public func encode(into b: inout ByteBuffer) { b.writeWire(name) }
}

/// A lock as listed: holder, token and expiry when held (token 0: free), waiters.
public struct WireLock: Sendable, Equatable {
    public var name: String
    public var holder: String?
    public var token: Int64
    public var expiresAt: Int64
    public var waiters: UInt32
    public var partition: UInt32

    public init(name: String, holder: String?, token: Int64, expiresAt: Int64, waiters: UInt32, partition: UInt32) {
        self.name = name
        self.holder = holder
        self.token = token
        self.expiresAt = expiresAt
        self.waiters = waiters
        self.partition = partition
    }

    /// Two strings' lengths, a flag and four numbers.
    static let minimumSize = 4 + 1 + 8 + 8 + 4 + 4
}

public struct LockListReply: WireMessage {
    public var locks: [WireLock]

    public init(locks: [WireLock]) { self.locks = locks }
    public init(from r: inout WireReader) throws {
        let n = try r.count("locks", minimumItemBytes: WireLock.minimumSize)
        var locks: [WireLock] = []
        locks.reserveCapacity(n)
        for _ in 0..<n {
            let name = try r.string("name")
            let flag = try r.u8("holder flag")
            guard flag <= 1 else { throw ProtocolError(.malformed, "holder flag is 0 or 1, not \(flag)") }
            let holder = flag == 1 ? try r.string("holder") : nil
            locks.append(
                WireLock(
                    name: name, holder: holder, token: try r.i64("token"), expiresAt: try r.i64("expires at"), waiters: try r.u32("waiters"),
                    partition: try r.u32("partition")))
        }
        self.locks = locks
    }
    public func encode(into b: inout ByteBuffer) {
        b.writeWire(UInt32(locks.count))
        for l in locks {
            b.writeWire(l.name)
            if let holder = l.holder {
                b.writeWire(UInt8(1))
                b.writeWire(holder)
            } else {
                b.writeWire(UInt8(0))
            }
            b.writeWire(l.token)
            b.writeWire(l.expiresAt)
            b.writeWire(l.waiters)
            b.writeWire(l.partition)
        }
    }
}
