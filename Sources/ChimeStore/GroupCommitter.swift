import Foundation

/// Turns many "make this durable" requests into few fdatasyncs. Appenders write their
/// bytes, then wait for the durable offset to pass their last record; the log is queued on
/// the process's sync threads (`SyncThreads`) once, and the sync that runs wakes every
/// waiter it covered, so N concurrent appenders share one sync. Under `.interval` the log
/// is also synced on its own clock, with nobody waiting.
///
/// After a failed sync every waiter gets the error and so does every later request: a
/// failed fdatasync may have dropped dirty pages, so a later one succeeding proves nothing.
final class GroupCommitter: @unchecked Sendable {
    typealias Sync = @Sendable () throws -> Int64

    private let condition = NSCondition()
    private var durable: Int64
    private var waiters: [(target: Int64, continuation: CheckedContinuation<Void, Error>)] = []
    private var failure: StoreError?
    /// In the pool's queue or being synced by one of its threads: never both, never twice.
    private var queued = false
    /// A sync of this log is running (queued, interval or the last one at stop).
    private var syncing = false
    private var stopped = false
    private let interval: Double?
    private let sync: Sync
    private let threads: SyncThreads

    /// `sync` makes everything written so far durable and returns the offset it covered.
    init(durable: Int64, intervalMilliseconds: Int?, threads: SyncThreads = .shared, sync: @escaping Sync) {
        self.durable = durable
        self.interval = intervalMilliseconds.map { Double($0) / 1000 }
        self.sync = sync
        self.threads = threads
        if let interval { threads.arm(self, after: interval) }
    }

    /// The first offset not yet known durable.
    var durableOffset: Int64 {
        condition.lock()
        defer { condition.unlock() }
        return durable
    }

    /// Returns once every offset below `target` is durable.
    func waitUntilDurable(_ target: Int64) async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, Error>) in
            condition.lock()
            // Durability first: an append that made it to disk stays a success even if a
            // later sync failed.
            if durable >= target {
                condition.unlock()
                continuation.resume()
            } else if let failure {
                condition.unlock()
                continuation.resume(throwing: failure)
            } else if stopped {
                condition.unlock()
                continuation.resume(throwing: StoreError(.closed, "the log is closed"))
            } else {
                waiters.append((target, continuation))
                let submit = !queued
                queued = true
                condition.unlock()
                if submit { threads.submit(self) }
            }
        }
    }

    /// After the log was cut back to `offset`: what comes next there is not durable yet,
    /// whatever was before the cut.
    func cut(to offset: Int64) {
        condition.lock()
        durable = min(durable, offset)
        condition.unlock()
    }

    /// Records durability reached outside a sync of this committer (a roll or a flush
    /// synced the data).
    func advance(to offset: Int64) {
        condition.lock()
        durable = max(durable, offset)
        let ready = takeReady()
        condition.unlock()
        for w in ready { w.resume() }
    }

    func fail(_ error: StoreError) {
        condition.lock()
        if failure == nil { failure = error }
        let all = waiters.map(\.continuation)
        waiters.removeAll()
        condition.unlock()
        for w in all { w.resume(throwing: error) }
    }

    /// Syncs what is pending, wakes the waiters and stops: waits for a sync running on the
    /// pool, then runs the last one on the caller's thread.
    func stop() {
        condition.lock()
        while syncing { condition.wait() }
        guard !stopped else {
            condition.unlock()
            return
        }
        stopped = true
        syncing = true
        condition.unlock()
        runSync()
        condition.lock()
        syncing = false
        let rest = waiters.map(\.continuation)
        waiters.removeAll()
        condition.broadcast()
        condition.unlock()
        for w in rest { w.resume(throwing: StoreError(.closed, "the log was closed before this append was synced")) }
    }

    /// On a pool thread: the sync the queue asked for. Queued again when appenders came
    /// while it ran and it did not cover them.
    func syncQueued() {
        condition.lock()
        assert(queued, "only a queued committer is synced from the queue")
        while syncing { condition.wait() }
        guard !stopped else {
            queued = false
            condition.unlock()
            return
        }
        syncing = true
        condition.unlock()
        runSync()
        condition.lock()
        syncing = false
        condition.broadcast()
        let again = !waiters.isEmpty && failure == nil && !stopped
        queued = again
        condition.unlock()
        if again { threads.submit(self) }
    }

    /// On a pool thread: the `.interval` clock's sync, then the next one armed.
    func intervalSync() {
        guard let interval else { preconditionFailure("interval sync of a committer without an interval") }
        condition.lock()
        // A queued sync is about to cover the same ground; a stopped committer is done.
        guard !stopped else {
            condition.unlock()
            return
        }
        let skip = queued || syncing
        if !skip { syncing = true }
        condition.unlock()
        if !skip {
            runSync()
            condition.lock()
            syncing = false
            condition.broadcast()
            condition.unlock()
        }
        threads.arm(self, after: interval)
    }

    private func runSync() {
        do {
            let covered = try sync()
            advance(to: covered)
        } catch {
            fail(error as? StoreError ?? StoreError(.io, "\(error)"))
        }
    }

    private func takeReady() -> [CheckedContinuation<Void, Error>] {
        var ready: [CheckedContinuation<Void, Error>] = []
        waiters.removeAll { w in
            if w.target <= durable { ready.append(w.continuation); return true }
            return false
        }
        return ready
    }
}
