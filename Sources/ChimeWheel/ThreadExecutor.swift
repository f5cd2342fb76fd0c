import DequeModule
import Foundation

/// A serial executor with a thread of its own, for an actor whose work blocks: the firing
/// loop syncs the timer log and its destination (fdatasync, milliseconds) on every
/// hand-over. On Swift's cooperative pool — one thread per core — that would take a core
/// away from every other partition, group and producer for the length of each sync; on its
/// own thread it only waits for the disk. The thread ends when `shutdown` is called and the
/// jobs already queued have run.
public final class ThreadExecutor: SerialExecutor, @unchecked Sendable {
    private let condition = NSCondition()
    private var jobs: Deque<UnownedJob> = []
    private var stopping = false

    public init(name: String) {
        let thread = Thread { [self] in runJobs() }
        thread.name = name
        thread.start()
    }

    public func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        condition.lock()
        jobs.append(job)
        condition.signal()
        condition.unlock()
    }

    public func asUnownedSerialExecutor() -> UnownedSerialExecutor {
        UnownedSerialExecutor(ordinary: self)
    }

    /// Lets the thread end once the queue is empty.
    public func shutdown() {
        condition.lock()
        stopping = true
        condition.signal()
        condition.unlock()
    }

    private func runJobs() {
        while true {
            condition.lock()
            while jobs.isEmpty && !stopping { condition.wait() }
            guard let job = jobs.popFirst() else {
                condition.unlock()
                return  // stopping, and nothing left
            }
            condition.unlock()
            job.runSynchronously(on: asUnownedSerialExecutor())
        }
    }
}
