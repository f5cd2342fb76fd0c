import DequeModule
import Foundation
import HeapModule

/// The threads that run the syncs of every log in the process: a fixed number, shared.
/// A sync blocks its thread for the length of an fdatasync, so syncs run outside Swift's
/// cooperative pool — but a thread per log made threads grow with partitions and groups
/// (four logs per partition with one group). A log with appenders waiting is queued here
/// once; a free thread syncs it, wakes the waiters it covered, and queues it again only if
/// more came meanwhile, so N appenders still share one sync. Logs under `.interval` are
/// also synced on their own clock from a timer queue.
final class SyncThreads: @unchecked Sendable {
    /// The process's pool, started on first use, never stopped.
    static let shared = SyncThreads(name: "chime-sync", count: defaultCount)

    /// Syncs that may run at once: enough for several devices' queues on a small machine.
    static let defaultCount = 8

    private let condition = NSCondition()
    /// Committers waiting for a thread, each at most once (`GroupCommitter.queued`).
    private var ready: Deque<GroupCommitter> = []
    /// Interval syncs by due time; an entry whose committer stopped is dropped when due.
    private var timers = Heap<Timer>()
    private var timerSequence: UInt64 = 0

    private struct Timer: Comparable {
        var due: Date
        /// Breaks ties in order of arming, so the heap's order is total.
        var sequence: UInt64
        var committer: GroupCommitter

        static func < (a: Timer, b: Timer) -> Bool { (a.due, a.sequence) < (b.due, b.sequence) }
        static func == (a: Timer, b: Timer) -> Bool { a.due == b.due && a.sequence == b.sequence }
    }

    init(name: String, count: Int) {
        precondition(count >= 1, "a pool has at least one thread")
        for n in 0..<count {
            let thread = Thread { [self] in runSyncs() }
            thread.name = "\(name)-\(n)"
            thread.start()
        }
    }

    /// Queues a committer for a sync. The committer has marked itself queued under its own
    /// lock, so it is in the queue (or being synced) at most once.
    func submit(_ committer: GroupCommitter) {
        condition.lock()
        ready.append(committer)
        condition.signal()
        condition.unlock()
    }

    /// Asks for `committer.intervalSync()` after `interval` seconds.
    func arm(_ committer: GroupCommitter, after interval: Double) {
        condition.lock()
        timerSequence &+= 1
        timers.insert(Timer(due: Date(timeIntervalSinceNow: interval), sequence: timerSequence, committer: committer))
        // A thread asleep until a later timer must look again.
        condition.signal()
        condition.unlock()
    }

    private func runSyncs() {
        while true {
            condition.lock()
            var job: (committer: GroupCommitter, timed: Bool)? = nil
            while job == nil {
                if let next = ready.popFirst() {
                    job = (next, false)
                } else if let first = timers.min, first.due <= Date() {
                    job = (timers.removeMin().committer, true)
                } else if let first = timers.min {
                    _ = condition.wait(until: first.due)
                } else {
                    condition.wait()
                }
            }
            condition.unlock()
            if job!.timed {
                job!.committer.intervalSync()
            } else {
                job!.committer.syncQueued()
            }
        }
    }
}
