import DequeModule
import Foundation

/// Serial executors that share a fixed set of threads, for actors whose work blocks (the
/// firing loops: every hand-over waits for an fdatasync). Each executor keeps its own queue
/// of jobs; an executor with jobs takes a turn on whichever pool thread is free, runs up to
/// `jobsPerTurn` of them, and goes to the back of the line if it has more. No executor is
/// tied to a thread, so one actor's long step (a large fire, a compaction step) holds one
/// thread, not every actor that would have shared it; the others' turns go to the
/// remaining threads. Threads stay constant however many executors there are: a broker
/// with 10,000 partitions runs their loops on `threads` threads, not 10,000.
public final class ExecutorPool: @unchecked Sendable {
    /// The pool the firing loops share.
    public static let firing = ExecutorPool(name: "chime-firing", threads: 16)
    /// Blocking background writes (checkpoints, snapshots, marks: each an atomic file
    /// write with its fsyncs), kept off Swift's cooperative pool, whose few threads every
    /// request needs, and off the firing threads.
    public static let background = ExecutorPool(name: "chime-background", threads: 4)

    /// Jobs one executor runs per turn before the next executor waiting gets the thread.
    static let jobsPerTurn = 32

    private let condition = NSCondition()
    /// Executors with jobs, waiting for a thread, in the order they became ready.
    private var ready: Deque<Work> = []

    private enum Work {
        case turn(Executor)
        case call(() -> Void)
    }
    public let threads: Int

    public init(name: String, threads: Int) {
        precondition(threads > 0, "a pool runs on at least one thread")
        self.threads = threads
        for i in 0..<threads {
            let thread = Thread { [self] in runTurns() }
            thread.name = "\(name)-\(i)"
            thread.start()
        }
    }

    /// A serial executor of this pool: its jobs run one at a time, in order, on any of
    /// the pool's threads.
    public func makeExecutor() -> Executor { Executor(pool: self) }

    /// Runs blocking `work` on a thread of the pool, in line with the executors' turns, and
    /// returns its result to the awaiting task.
    public func perform<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            enqueue(.call { continuation.resume(with: Result { try work() }) })
        }
    }

    fileprivate func schedule(_ executor: Executor) {
        enqueue(.turn(executor))
    }

    private func enqueue(_ work: Work) {
        condition.lock()
        ready.append(work)
        condition.signal()
        condition.unlock()
    }

    private func runTurns() {
        while true {
            condition.lock()
            while ready.isEmpty { condition.wait() }
            let work = ready.removeFirst()
            condition.unlock()
            switch work {
            case .turn(let executor): if executor.runTurn() { schedule(executor) }
            case .call(let body): body()
            }
        }
    }

    public final class Executor: SerialExecutor, @unchecked Sendable {
        private unowned let pool: ExecutorPool
        private let lock = NSLock()
        private var jobs: Deque<UnownedJob> = []
        /// In the pool's ready line or running a turn: at most once at a time, which makes
        /// the executor serial.
        private var scheduled = false

        fileprivate init(pool: ExecutorPool) { self.pool = pool }

        public func enqueue(_ job: consuming ExecutorJob) {
            let job = UnownedJob(job)
            lock.lock()
            jobs.append(job)
            let wake = !scheduled
            scheduled = true
            lock.unlock()
            if wake { pool.schedule(self) }
        }

        public func asUnownedSerialExecutor() -> UnownedSerialExecutor {
            UnownedSerialExecutor(ordinary: self)
        }

        /// Runs up to `jobsPerTurn` jobs; true if more are queued (the executor stays
        /// scheduled and goes back in line), false once it is idle.
        fileprivate func runTurn() -> Bool {
            for _ in 0..<ExecutorPool.jobsPerTurn {
                lock.lock()
                guard let job = jobs.popFirst() else {
                    scheduled = false
                    lock.unlock()
                    return false
                }
                lock.unlock()
                job.runSynchronously(on: asUnownedSerialExecutor())
            }
            lock.lock()
            defer { lock.unlock() }
            if jobs.isEmpty {
                scheduled = false
                return false
            }
            return true
        }
    }
}
