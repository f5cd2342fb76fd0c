import Synchronization

/// How far the beanstalkd journal is synced, shared by the engine (which advances it as
/// the writer's batches land) and the connections' reply tasks (which wait on it): a lock,
/// not the engine actor, so that a reply waiting for the journal does not queue behind
/// the commands the actor is running.
///
/// Positions count the records appended since the engine started; every position up to
/// `synced` was written or failed, and the latest failed ranges are kept.
final class BeanstalkSyncPoint: Sendable {
    private struct State {
        var synced: UInt64 = 0
        var waiters: [(upTo: UInt64, continuation: CheckedContinuation<Void, Never>)] = []
        /// Positions of records that could not be written (the latest 1,024 batches).
        var failed: [ClosedRange<UInt64>] = []
    }

    private let state = Mutex(State())

    var synced: UInt64 { state.withLock { $0.synced } }

    /// Records up to `upTo` are written (or, with `failed`, could not be): the waiters
    /// they cover go on.
    func advance(to upTo: UInt64, failed: Bool) {
        let ready = state.withLock { s -> [CheckedContinuation<Void, Never>] in
            precondition(upTo >= s.synced, "the journal's synced position only rises")
            if failed {
                s.failed.append((s.synced + 1)...upTo)
                if s.failed.count > 1_024 { s.failed.removeFirst() }
            }
            s.synced = upTo
            let done = s.waiters.filter { $0.upTo <= upTo }.map(\.continuation)
            s.waiters.removeAll { $0.upTo <= upTo }
            return done
        }
        for c in ready { c.resume() }
    }

    /// Waits until the records after `after` up to `upTo` are synced; false if one of
    /// them could not be written.
    func written(after: UInt64, upTo: UInt64) async -> Bool {
        guard upTo > after else { return true }
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let now = state.withLock { s -> Bool in
                if s.synced >= upTo { return true }
                s.waiters.append((upTo, c))
                return false
            }
            if now { c.resume() }
        }
        return state.withLock { s in !s.failed.contains { $0.upperBound > after && $0.lowerBound <= upTo } }
    }
}
