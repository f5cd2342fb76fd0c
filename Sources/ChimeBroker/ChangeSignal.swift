import Synchronization

/// Tells waiting fetches that something may have become deliverable: messages appended to a
/// ready or retry log (publish, firing), or room freed by acks. A fetch notes `version`,
/// looks, and if it found nothing waits for a later version (or its deadline) instead of
/// polling. Bumping with nobody waiting costs one uncontended lock.
public final class ChangeSignal: Sendable {
    private struct State {
        var version: UInt64 = 0
        var nextWaiter: UInt64 = 0
        var waiters: [UInt64: CheckedContinuation<Void, Never>] = [:]
    }

    private let state = Mutex(State())

    public init() {}

    public var version: UInt64 { state.withLock { $0.version } }

    /// Something changed: wakes every waiter.
    public func bump() {
        let woken = state.withLock { s -> [CheckedContinuation<Void, Never>] in
            s.version &+= 1
            guard !s.waiters.isEmpty else { return [] }
            defer { s.waiters = [:] }
            return Array(s.waiters.values)
        }
        for c in woken { c.resume() }
    }

    /// Returns once the version is past `seen`, or after `timeout`, or when the task is
    /// cancelled: whichever comes first. The caller looks again in every case.
    public func wait(after seen: UInt64, timeout: Duration) async {
        let id = state.withLock { s -> UInt64 in
            s.nextWaiter &+= 1
            return s.nextWaiter
        }
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                await withTaskCancellationHandler {
                    await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                        let already = self.state.withLock { s -> Bool in
                            // Cancelled already: its handler may have run before this
                            // waiter was registered, and would not wake it.
                            if s.version != seen || Task.isCancelled { return true }
                            s.waiters[id] = c
                            return false
                        }
                        if already { c.resume() }
                    }
                } onCancel: {
                    self.wake(id)
                }
            }
            group.addTask {
                try? await Task.sleep(for: timeout)
                self.wake(id)
            }
            await group.next()
            group.cancelAll()
        }
    }

    private func wake(_ id: UInt64) {
        if let c = state.withLock({ $0.waiters.removeValue(forKey: id) }) { c.resume() }
    }
}
