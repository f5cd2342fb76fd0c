import Synchronization

/// The threads every firing loop of the process runs on: a fixed number, shared. A loop
/// blocks its thread while it syncs (see `ThreadExecutor`), so loops need threads outside
/// Swift's cooperative pool — but not one each: 10,000 partitions must not mean 10,000
/// threads. Loops are dealt out in turn, so the partitions of one topic, created together,
/// land on different threads; loops on one thread take turns (each fire is short).
public final class FiringThreads: Sendable {
    /// The process's pool: `defaultCount` threads, started on first use, never stopped.
    public static let shared = FiringThreads(name: "chime-firing", count: defaultCount)

    /// Enough for the partitions that are busy at one time to fire in parallel on a small
    /// machine, and few enough to count for nothing beside the rest of the process.
    public static let defaultCount = 8

    private let executors: [ThreadExecutor]
    private let turn = Atomic<Int>(0)

    public init(name: String, count: Int) {
        precondition(count >= 1, "a pool has at least one thread")
        executors = (0..<count).map { ThreadExecutor(name: "\(name)-\($0)") }
    }

    /// The thread for the next loop.
    public func next() -> ThreadExecutor {
        let n = turn.wrappingAdd(1, ordering: .relaxed).oldValue
        return executors[n % executors.count]
    }

    public var count: Int { executors.count }
}
