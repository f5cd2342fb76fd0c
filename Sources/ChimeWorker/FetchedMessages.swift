import ChimeClient
import DequeModule
import Synchronization

/// A message fetched and held by the pool, with its ticket in the pool's `HeldMessages`.
struct Fetched: Sendable {
    let ticket: Int
    let message: ConsumedMessage
}

/// The messages a pool has fetched and not started: filled by the pool's one fetcher,
/// emptied by its runners. The fetcher fetches again as soon as the buffer is below half
/// the prefetch, while the runners keep working on what is there, so fetching overlaps
/// running; a runner that finds the buffer empty waits for the next fetch.
final class FetchedMessages: Sendable {
    fileprivate struct State {
        var buffer: Deque<Fetched> = []
        var stopped = false
        /// Runners waiting for a message.
        var runners: Deque<CheckedContinuation<Fetched?, Never>> = []
        /// The fetcher, waiting for the buffer to run low.
        var fetcher: CheckedContinuation<Void, Never>?
    }
    private let state = Mutex(State())
    private let refillBelow: Int

    init(prefetch: Int) {
        refillBelow = max(1, prefetch / 2)
    }

    /// The next message for a runner, waiting for one if none is buffered; nil once the
    /// pool stops.
    func take() async -> Fetched? {
        let (now, wake) = state.withLock { s -> (Fetched??, CheckedContinuation<Void, Never>?) in
            if s.stopped { return (.some(nil), nil) }
            guard let m = s.buffer.popFirst() else { return (nil, nil) }
            return (.some(m), s.buffer.count < refillBelow ? s.takeFetcher() : nil)
        }
        wake?.resume()
        if let now { return now }
        return await withCheckedContinuation { (c: CheckedContinuation<Fetched?, Never>) in
            let (ready, wake) = state.withLock { s -> (Fetched??, CheckedContinuation<Void, Never>?) in
                if s.stopped { return (.some(nil), nil) }
                if let m = s.buffer.popFirst() { return (.some(m), s.buffer.count < refillBelow ? s.takeFetcher() : nil) }
                s.runners.append(c)
                return (nil, s.takeFetcher())
            }
            wake?.resume()
            if let ready { c.resume(returning: ready) }
        }
    }

    enum Wanted {
        /// The buffer is below half the prefetch: fetch.
        case fetch
        /// Woken with the buffer still full (`wakeFetcher`): time for a sign of life.
        case heartbeat
        case stopped
    }

    /// For the fetcher: returns once the buffer is below half the prefetch (at once if it
    /// is), when `wakeFetcher` is called, or when the pool stops.
    func waitUntilWanted() async -> Wanted {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let now = state.withLock { s -> Bool in
                if s.stopped || s.buffer.count < refillBelow { return true }
                s.fetcher = c
                return false
            }
            if now { c.resume() }
        }
        return state.withLock { s in s.stopped ? .stopped : s.buffer.count < refillBelow ? .fetch : .heartbeat }
    }

    /// Wakes the fetcher if it waits (its member must show a sign of life while the
    /// buffer stays full behind long jobs).
    func wakeFetcher() {
        state.withLock { $0.takeFetcher() }?.resume()
    }

    /// For the fetcher: what a fetch brought, handed straight to waiting runners first.
    func deliver(_ batch: [Fetched]) {
        var handed: [(CheckedContinuation<Fetched?, Never>, Fetched)] = []
        state.withLock { s in
            var rest = batch[...]
            while let r = s.runners.first, let m = rest.first {
                s.runners.removeFirst()
                rest = rest.dropFirst()
                handed.append((r, m))
            }
            s.buffer.append(contentsOf: rest)
        }
        for (runner, message) in handed { runner.resume(returning: message) }
    }

    /// The pool stops: waiting runners get nil, the fetcher is woken, and what was fetched
    /// and not started is returned (to be given back). Messages delivered after this are
    /// returned by the next call.
    @discardableResult
    func stop() -> [Fetched] {
        let (taken, runners, fetcher) = state.withLock { s in
            s.stopped = true
            defer {
                s.buffer = []
                s.runners = []
                s.fetcher = nil
            }
            return (Array(s.buffer), s.runners, s.fetcher)
        }
        for r in runners { r.resume(returning: nil) }
        fetcher?.resume()
        return taken
    }
}

extension FetchedMessages.State {
    fileprivate mutating func takeFetcher() -> CheckedContinuation<Void, Never>? {
        defer { fetcher = nil }
        return fetcher
    }
}
