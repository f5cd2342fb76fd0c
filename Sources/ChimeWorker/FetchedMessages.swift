import ChimeClient
import DequeModule
import Synchronization

/// The messages a pool has fetched and not started, shared by its runners. One runner at a
/// time fetches (the consumer's iterator is not shared), the others take what it brought:
/// a runner that finds the buffer below half the prefetch fetches the next batch while the
/// rest keep working, so fetching overlaps running.
final class FetchedMessages: Sendable {
    private struct State {
        var buffer: Deque<ConsumedMessage> = []
        var fetching = false
        /// Runners waiting for a fetch to bring something.
        var waiters: [CheckedContinuation<Void, Never>] = []
    }
    private let state = Mutex(State())
    private let refillBelow: Int
    /// Used only by the runner that holds the fetch (`fetching`).
    private nonisolated(unsafe) var iterator: Consumer.Iterator

    init(_ consumer: Consumer, prefetch: Int) {
        iterator = consumer.makeAsyncIterator()
        refillBelow = max(1, prefetch / 2)
    }

    enum Next {
        case message(ConsumedMessage)
        /// This runner is to fetch (and then call `fetched` or `fetchFailed`).
        case fetch
        /// Another runner is fetching: wait, then ask again.
        case wait
    }

    /// What a runner does next: run a message, fetch, or wait for a fetch.
    func next() -> Next {
        state.withLock { s in
            if !s.fetching && s.buffer.count < refillBelow {
                s.fetching = true
                return .fetch
            }
            if let m = s.buffer.popFirst() { return .message(m) }
            return .wait
        }
    }

    /// Waits until the fetch under way has ended (at once if none is).
    func waitForFetch() async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let now = state.withLock { s -> Bool in
                guard s.fetching && s.buffer.isEmpty else { return true }
                s.waiters.append(c)
                return false
            }
            if now { c.resume() }
        }
    }

    /// The fetch: for the runner `next()` told to fetch.
    func fetch() async throws -> Int {
        let batch: [ConsumedMessage]
        do {
            batch = try await iterator.nextBatch()
        } catch {
            finishFetch([])
            throw error
        }
        finishFetch(batch)
        return batch.count
    }

    private func finishFetch(_ batch: [ConsumedMessage]) {
        let waiters = state.withLock { s -> [CheckedContinuation<Void, Never>] in
            s.buffer.append(contentsOf: batch)
            s.fetching = false
            defer { s.waiters = [] }
            return s.waiters
        }
        for w in waiters { w.resume() }
    }

    /// Everything fetched and not started (the pool is stopping); no more is handed out.
    func drain() -> [ConsumedMessage] {
        let (taken, waiters) = state.withLock { s -> ([ConsumedMessage], [CheckedContinuation<Void, Never>]) in
            defer {
                s.buffer = []
                s.waiters = []
            }
            return (Array(s.buffer), s.waiters)
        }
        for w in waiters { w.resume() }
        return taken
    }

    /// Flushes the member's queued acks and leaves the group (whatever it still holds goes
    /// back, not counted as attempts). Once every runner has stopped.
    func leave() async {
        await iterator.leave()
    }
}
