import ChimeProtocol
import Foundation

/// A lock granted by the broker: its fencing token (strictly increasing per name, across
/// broker restarts) and its expiry (the broker's clock, ms since the Unix epoch).
public struct LockLease: Sendable, Equatable {
    public var name: String
    public var token: Int64
    public var expiresAt: Int64
}

/// The lock was lost while `withLock`'s body ran: its renewal was refused (it expired, or
/// was released by force) or could not be confirmed before the lease ran out. The body's
/// task was cancelled.
public struct LockLostError: Error, CustomStringConvertible, Sendable {
    public var name: String
    public var token: Int64
    public var reason: String
    public var description: String { "lock \(name) (token \(token)) was lost: \(reason)" }
}

/// Locks with fencing tokens (protocol version 8), held on the broker: a holder that stops
/// renewing loses its lock at the expiry, and the next waiter has it at once.
extension ChimeClient {
    /// The longest one acquire waits on the broker; longer waits ask again.
    static let longestBrokerWait: Duration = .seconds(300)

    /// Waits for `name` (first come, first served) up to `wait`, then holds it for `ttl`
    /// unless renewed. Throws `lockHeld` (a `ClientError`) when the wait runs out.
    public func acquire(_ name: String, ttl: Duration, wait: Duration = .seconds(30)) async throws -> LockLease {
        let deadline = ContinuousClock.now + wait
        while true {
            let left = ContinuousClock.now.duration(to: deadline)
            let slice = min(max(left, .zero), Self.longestBrokerWait)
            do {
                let reply = try await call(
                    .lockAcquire, LockAcquire(name: name, holder: connector.optionsName, ttlMilliseconds: Self.milliseconds(ttl), waitMilliseconds: Self.milliseconds(slice)),
                    as: LockGrantReply.self)
                return LockLease(name: name, token: reply.token, expiresAt: reply.expiresAt)
            } catch let error as ClientError where error.wireCode == .lockHeld && ContinuousClock.now < deadline {
                continue  // a wait longer than the broker's longest: ask again
            }
        }
    }

    /// The lock if it is free now, else nil at once: the skip-locked pattern (a worker
    /// moves on to the next item).
    public func tryAcquire(_ name: String, ttl: Duration) async throws -> LockLease? {
        do {
            let reply = try await call(
                .lockAcquire, LockAcquire(name: name, holder: connector.optionsName, ttlMilliseconds: Self.milliseconds(ttl), waitMilliseconds: 0), as: LockGrantReply.self)
            return LockLease(name: name, token: reply.token, expiresAt: reply.expiresAt)
        } catch let error as ClientError where error.wireCode == .lockHeld {
            return nil
        }
    }

    /// Extends `lease` to `ttl` from now; `lockLost` when it is no longer the live grant.
    public func renew(_ lease: LockLease, ttl: Duration) async throws -> LockLease {
        let reply = try await call(.lockRenew, LockRenew(name: lease.name, token: lease.token, ttlMilliseconds: Self.milliseconds(ttl)), as: LockGrantReply.self)
        return LockLease(name: lease.name, token: reply.token, expiresAt: reply.expiresAt)
    }

    /// Releases `lease`: the next waiter has the lock at once. `lockLost` when it was no
    /// longer the live grant.
    public func release(_ lease: LockLease) async throws {
        _ = try await call(.lockRelease, LockRelease(name: lease.name, token: lease.token), as: Empty.self)
    }

    /// Releases `name` whoever holds it (an operator's last resort: the holder may still be
    /// working, and its fenced writes are refused from now on).
    public func forceRelease(_ name: String) async throws {
        _ = try await call(.lockRelease, LockRelease(name: name, token: 0, force: true), as: Empty.self)
    }

    /// One lock: holder, token and expiry if held, and its waiters.
    public func inspectLock(_ name: String) async throws -> WireLock {
        guard let lock = try await call(.lockList, LockListRequest(name: name), as: LockListReply.self).locks.first else {
            throw ClientError.protocolViolation("the broker answered no lock for \(name)")
        }
        return lock
    }

    /// Every lock held or waited for.
    public func locks() async throws -> [WireLock] {
        try await call(.lockList, LockListRequest(), as: LockListReply.self).locks
    }

    /// Runs `body` holding `name`: acquired (waiting up to `wait`), renewed every third of
    /// `ttl`, released at the end. When the lease is lost — a renewal refused, or none
    /// confirmed before the expiry the last one gave — the body's task is cancelled and
    /// `LockLostError` thrown. The token is the body's to fence its writes with.
    public func withLock<T: Sendable>(
        _ name: String, ttl: Duration = .seconds(30), wait: Duration = .seconds(30), _ body: @escaping @Sendable (LockLease) async throws -> T
    ) async throws -> T {
        let lease = try await acquire(name, ttl: ttl, wait: wait)
        let lost = LostFlag()
        let result: Result<T, any Error> = await withTaskGroup(of: Result<T, any Error>?.self) { tasks in
            tasks.addTask {
                do { return .success(try await body(lease)) } catch { return .failure(error) }
            }
            tasks.addTask { [self] in
                // Renews at a third of the TTL; the lease is lost at the last confirmed expiry
                // (measured locally from when the renewal was sent, never later than the broker's).
                var validUntil = ContinuousClock.now + ttl
                while !Task.isCancelled {
                    try? await Task.sleep(for: ttl / 3)
                    if Task.isCancelled { return nil }
                    let sent = ContinuousClock.now
                    do {
                        _ = try await withDeadline(validUntil) { try await self.renew(lease, ttl: ttl) }
                        validUntil = sent + ttl
                    } catch let error as ClientError where error.wireCode == .lockLost {
                        lost.set("the broker refused the renewal: \(error.message)")
                        return nil
                    } catch {
                        if ContinuousClock.now >= validUntil {
                            lost.set("no renewal confirmed before the lease ran out (\(error))")
                            return nil
                        }
                    }
                }
                return nil
            }
            // The first to end — the body (done) or the renewer (lost) — stops the other.
            var outcome: Result<T, any Error>?
            for await r in tasks {
                tasks.cancelAll()
                if let r { outcome = r }
            }
            return outcome ?? .failure(CancellationError())
        }
        if let reason = lost.reason { throw LockLostError(name: name, token: lease.token, reason: reason) }
        // Released at the end; one that was lost meanwhile has nothing to release.
        do { try await release(lease) } catch let error as ClientError where error.wireCode == .lockLost {}
        return try result.get()
    }

    /// `operation`'s result, or `CancellationError` if it has none by `deadline`.
    private func withDeadline<R: Sendable>(_ deadline: ContinuousClock.Instant, _ operation: @escaping @Sendable () async throws -> R) async throws -> R {
        try await withThrowingTaskGroup(of: R?.self) { tasks in
            tasks.addTask { try await operation() }
            tasks.addTask {
                try await Task.sleep(until: deadline, clock: .continuous)
                return nil
            }
            defer { tasks.cancelAll() }
            guard let first = try await tasks.next(), let value = first else { throw CancellationError() }
            return value
        }
    }
}

/// Why `withLock` lost its lease, set once by its renewer.
private final class LostFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value: String?
    var reason: String? { lock.withLock { value } }
    func set(_ reason: String) { lock.withLock { if value == nil { value = reason } } }
}
