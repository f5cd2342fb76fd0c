import Foundation

/// Turns many "make this durable" requests into few fdatasyncs. Appenders write their
/// bytes, then wait for the durable offset to pass their last record; one thread runs the
/// sync and wakes every waiter it covered, so N concurrent appenders share one sync.
/// Under `.interval` the thread also syncs on its own clock, with nobody waiting.
///
/// After a failed sync every waiter gets the error and so does every later request: a
/// failed fdatasync may have dropped dirty pages, so a later one succeeding proves nothing.
final class GroupCommitter: @unchecked Sendable {
    typealias Sync = @Sendable () throws -> Int64

    private let condition = NSCondition()
    private var durable: Int64
    private var waiters: [(target: Int64, continuation: CheckedContinuation<Void, Error>)] = []
    private var failure: StoreError?
    private var stopping = false
    private var stopped = false
    private let interval: Double?
    private let sync: Sync
    private var thread: Thread?

    /// `sync` makes everything written so far durable and returns the offset it covered.
    init(durable: Int64, intervalMilliseconds: Int?, name: String, sync: @escaping Sync) {
        self.durable = durable
        self.interval = intervalMilliseconds.map { Double($0) / 1000 }
        self.sync = sync
        // The thread holds the committer until `stop()`; the owning log always stops it on close.
        let thread = Thread { self.run() }
        thread.name = name
        self.thread = thread
        thread.start()
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
                condition.signal()
                condition.unlock()
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

    /// Records durability reached outside the thread (a roll or a flush synced the data).
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

    /// Syncs what is pending, wakes the waiters and ends the thread.
    func stop() {
        condition.lock()
        stopping = true
        condition.signal()
        while !stopped { condition.wait() }
        condition.unlock()
    }

    private func takeReady() -> [CheckedContinuation<Void, Error>] {
        var ready: [CheckedContinuation<Void, Error>] = []
        waiters.removeAll { w in
            if w.target <= durable { ready.append(w.continuation); return true }
            return false
        }
        return ready
    }

    private func run() {
        while true {
            condition.lock()
            if let interval {
                let deadline = Date(timeIntervalSinceNow: interval)
                while waiters.isEmpty && !stopping && condition.wait(until: deadline) {}
            } else {
                while waiters.isEmpty && !stopping { condition.wait() }
            }
            let finishing = stopping
            condition.unlock()

            do {
                let covered = try sync()
                advance(to: covered)
            } catch {
                fail(error as? StoreError ?? StoreError(.io, "\(error)"))
            }

            if finishing {
                condition.lock()
                let rest = waiters.map(\.continuation)
                waiters.removeAll()
                stopped = true
                condition.broadcast()
                condition.unlock()
                for w in rest { w.resume(throwing: StoreError(.closed, "the log was closed before this append was synced")) }
                return
            }
        }
    }
}
