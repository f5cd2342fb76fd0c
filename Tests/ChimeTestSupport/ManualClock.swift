import ChimeWheel
import Foundation

/// A `WheelClock` the test moves by hand: its time changes only through `set(_:)` and
/// `advance(by:)`; its wall clock moves with it, and alone by `stepWall(by:)`. A sleep ends when the clock reaches its deadline or when the sleeping
/// task is cancelled (a sleep with no deadline, only then). A broker on manual firing never
/// sleeps on it; a firing loop does, and `deadlines` shows until when.
public final class ManualClock: WheelClock, @unchecked Sendable {
    private let lock = NSLock()
    private var current: Int64
    /// The wall clock minus broker time (ms): changed only by `stepWall(by:)`.
    private var wallAhead: Int64 = 0
    private var sleepers: [Int: (deadline: Int64?, continuation: CheckedContinuation<Void, Never>)] = [:]
    private var cancelled = Set<Int>()
    private var nextID = 0

    /// A clock standing at `start` (ms since the Unix epoch).
    public init(_ start: Int64) { current = start }

    public func now() -> Int64 { lock.withLock { current } }

    public func wallNow() -> Int64 { lock.withLock { current + wallAhead } }

    /// Steps the wall clock by `ms` (either way) without moving broker time: what an
    /// operator or NTP does to a machine's clock.
    public func stepWall(by ms: Int64) { lock.withLock { wallAhead += ms } }

    /// Deadlines of the sleeps in progress (nil = idle sleep).
    public var deadlines: [Int64?] { lock.withLock { sleepers.values.map(\.deadline) } }

    public func sleep(until deadline: Int64?) async {
        let id: Int = lock.withLock { nextID += 1; return nextID }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                let resumeNow: Bool = lock.withLock {
                    if cancelled.contains(id) { return true }
                    if let d = deadline, d <= current { return true }
                    sleepers[id] = (deadline, c)
                    return false
                }
                if resumeNow { c.resume() }
            }
        } onCancel: {
            let c: CheckedContinuation<Void, Never>? = lock.withLock {
                cancelled.insert(id)
                return sleepers.removeValue(forKey: id)?.continuation
            }
            c?.resume()
        }
    }

    /// Puts the clock at `time` (ms) and wakes the sleeps whose deadline it reached.
    public func set(_ time: Int64) { move { _ in time } }

    /// Moves the clock `ms` forward and wakes the sleeps whose deadline it reached.
    public func advance(by ms: Int64) { move { $0 + ms } }

    /// Changes the time (in one step, under the lock) and wakes the sleeps now due.
    private func move(_ newTime: (Int64) -> Int64) {
        let due: [CheckedContinuation<Void, Never>] = lock.withLock {
            let time = newTime(current)
            current = time
            let ids = sleepers.filter { $0.value.deadline.map { $0 <= time } ?? false }.map(\.key)
            return ids.compactMap { sleepers.removeValue(forKey: $0)?.continuation }
        }
        for c in due { c.resume() }
    }
}
