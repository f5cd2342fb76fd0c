import ChimeStore
import Logging

/// A lock as the broker reports it: its holder, fencing token and expiry (broker time,
/// ms), and the acquirers waiting for it.
public struct LockInfo: Sendable, Equatable, Codable {
    public var name: String
    public var holder: String?
    public var token: Int64?
    public var expiresAt: Int64?
    public var waiters: Int
    public var partition: Int
}

/// A grant: the fencing token, strictly increasing per lock name across restarts, and
/// until when it holds unless renewed.
public struct LockGrant: Sendable, Equatable {
    public var name: String
    public var token: Int64
    public var expiresAt: Int64
}

/// Locks, broker-wide: each name lives in the `__locks` partition its key hash picks
/// (`LockPartition`), of `lockPartitionCount`, under `<data>/locks/<index>/`.
extension Broker {
    /// Fixed: a name's partition never changes, or its tokens would start over elsewhere.
    public static let lockPartitionCount = 8

    static func openLockPartitions(_ options: BrokerOptions, logger: Logger) throws -> [LockPartition] {
        try Directory.create(options.directory + "/locks")
        return try (0..<lockPartitionCount).map { i in
            try LockPartition(index: i, directory: options.directory + "/locks/\(i)", options: options, logger: logger)
        }
    }

    func lockPartition(_ name: String) -> LockPartition {
        let all = lockPartitions
        return all[Int(KeyHash.of(Array(name.utf8)) % UInt64(all.count))]
    }

    /// Grants `name` to `holder` for `ttlMilliseconds`, waiting up to `waitMilliseconds`
    /// (0: `lockHeld` at once if it is held; at most 300 s) behind earlier waiters.
    public func acquireLock(_ name: String, holder: String, ttlMilliseconds: Int64, waitMilliseconds: Int64) async throws -> LockGrant {
        let p = lockPartition(name)
        let lock = try await p.acquire(name, holder: holder, ttl: ttlMilliseconds, wait: waitMilliseconds)
        return LockGrant(name: name, token: lock.token, expiresAt: lock.expiresAt)
    }

    /// Extends the live grant `token` to `ttlMilliseconds` from now (`lockLost` if it is
    /// not the live grant any more).
    public func renewLock(_ name: String, token: Int64, ttlMilliseconds: Int64) async throws -> LockGrant {
        let lock = try await lockPartition(name).renew(name, token: token, ttl: ttlMilliseconds)
        return LockGrant(name: name, token: lock.token, expiresAt: lock.expiresAt)
    }

    /// Releases the live grant `token` of `name`, or (token nil) whoever holds it: the
    /// next waiter has it at once.
    public func releaseLock(_ name: String, token: Int64?) async throws {
        try await lockPartition(name).release(name, token: token)
    }

    public func lock(_ name: String) async throws -> LockInfo {
        try LockPartition.check(name: name)
        let p = lockPartition(name)
        return LockInfo(await p.inspect(name), partition: p.index)
    }

    /// Every lock held or waited for, by name.
    public func locks() async -> [LockInfo] {
        var out: [LockInfo] = []
        for p in lockPartitions { out += await p.list().map { LockInfo($0, partition: p.index) } }
        return out.sorted { $0.name < $1.name }
    }

    /// Refuses a write fenced by (`name`, `token`) unless `token` is the lock's live grant.
    public func checkFence(lock name: String, token: Int64) async throws {
        try LockPartition.check(name: name)
        let p = lockPartition(name)
        guard await p.isCurrent(name, token: token) else {
            let info = await p.inspect(name)
            let now = info.token.map { "; the live grant is token \($0)" } ?? "; nobody holds it"
            throw BrokerError(.staleToken, "lock \(name): token \(token) is not the live grant\(now); nothing was written")
        }
    }
}

extension LockInfo {
    init(_ i: LockPartition.Info, partition: Int) {
        self.init(name: i.name, holder: i.holder, token: i.token, expiresAt: i.expiresAt, waiters: i.waiters, partition: partition)
    }
}
