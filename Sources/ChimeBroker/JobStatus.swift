import ChimeStore
import DequeModule

/// Where a message — a job, to a worker — stands, by the id its publish returned. Times
/// are broker time, ms (as in deliveries). See `Broker.jobStatus`.
public enum JobState: Sendable, Equatable {
    /// Waiting in the wheel for its due time.
    case scheduled(dueAt: Int64)
    /// Ready, and not leased by any member of the group.
    case ready
    /// Leased to `member` for its `attempt`-th delivery, until `leaseDeadline`.
    case running(member: UInt64, attempt: Int, leaseDeadline: Int64)
    /// Failed `attempts` times and waiting in the wheel for the next attempt (nil when that
    /// time has come and it waits for delivery).
    case retrying(nextAttemptAt: Int64?, attempts: Int, lastError: String?)
    /// Acked by the group.
    case succeeded
    /// Acked by the group before the broker last started, and not a dead letter: it
    /// succeeded, unless it was then waiting in the wheel for a retry (retries are
    /// remembered in memory only; see `JobOutcomes`).
    case finished
    /// Moved to the group's dead-letter topic after `attempts` attempts.
    case dead(reason: String, attempts: Int)
    /// Cancelled before it was due.
    case cancelled
    /// Aborted (`Broker.abort`): while a member ran it, or before it ran. Remembered in
    /// memory, as retries are.
    case aborted(whileRunning: Bool, reason: String)
    /// Parked in the wheel until `until`, not as a failed attempt: a continuation, or a job
    /// awaiting its callback (`until` is then its timeout).
    case waiting(until: Int64, callback: Bool)
}

/// A job's state in one group (`group` nil: the same for every group, as before it is due).
public struct JobStatus: Sendable, Equatable {
    public var group: String?
    public var state: JobState

    public init(group: String?, state: JobState) {
        self.group = group
        self.state = state
    }
}

/// What became of the messages a group moved out of a log — retried or dead-lettered —
/// keyed by the partition and the ready-log offset the message was first stored at. Only
/// these are recorded (acks, the hot path, record nothing: an acked offset with no entry
/// here succeeded). Bounded: past `capacity` the oldest entries go, and from then on an
/// acked message with no entry is no longer known to have succeeded.
struct JobOutcomes {
    enum Outcome: Equatable {
        /// Handed to the wheel at timer position `timerID`, due at `nextAttemptAt`.
        case retrying(timerID: Int64, nextAttemptAt: Int64, attempts: Int, lastError: String?)
        case dead(reason: String, attempts: Int)
        case aborted(whileRunning: Bool, reason: String)
        /// Parked in the wheel at timer position `timerID` until `until` (`Broker.snooze`).
        case waiting(timerID: Int64, until: Int64, callback: Bool)
    }
    struct Key: Hashable {
        var partition: PartitionKey
        var readyOffset: Int64
    }

    static let defaultCapacity = 100_000
    let capacity: Int
    private var outcomes: [Key: Outcome] = [:]
    private var order: Deque<Key> = []
    /// Entries were dropped to stay within `capacity`.
    private(set) var forgotSome = false

    init(capacity: Int = Self.defaultCapacity) {
        precondition(capacity > 0, "a capacity of at least one outcome")
        self.capacity = capacity
    }

    var count: Int { outcomes.count }

    subscript(key: Key) -> Outcome? { outcomes[key] }

    /// The outcomes kept, oldest first, while `body` returns true.
    func forEach(while body: (Key, Outcome) throws -> Bool) rethrows {
        for key in order {
            guard let o = outcomes[key] else { continue }
            guard try body(key, o) else { return }
        }
    }

    /// The most UTF-8 bytes of an error text kept (a client's reason can be 64 KiB; the
    /// whole text stays in the message's headers and dead letter).
    static let maxTextBytes = 200

    mutating func record(_ outcome: Outcome, for key: Key) {
        let kept: Outcome =
            switch outcome {
            case .retrying(let timerID, let next, let attempts, let error):
                .retrying(timerID: timerID, nextAttemptAt: next, attempts: attempts, lastError: error.map(Self.shortened))
            case .dead(let reason, let attempts):
                .dead(reason: Self.shortened(reason), attempts: attempts)
            case .aborted(let whileRunning, let reason):
                .aborted(whileRunning: whileRunning, reason: Self.shortened(reason))
            case .waiting: outcome
            }
        if outcomes.updateValue(kept, forKey: key) == nil { order.append(key) }
        while outcomes.count > capacity, let oldest = order.popFirst() {
            outcomes[oldest] = nil
            forgotSome = true
        }
    }

    /// `text` cut to `maxTextBytes` at a character boundary, with "…" when cut.
    static func shortened(_ text: String) -> String {
        guard text.utf8.count > maxTextBytes else { return text }
        var out = ""
        for c in text {
            guard out.utf8.count + c.utf8.count <= maxTextBytes - 3 else { break }
            out.append(c)
        }
        return out + "…"
    }

    /// A topic deleted: its entries go.
    mutating func drop(topicID: UInt32) {
        order.removeAll { $0.partition.topicID == topicID }
        outcomes = outcomes.filter { $0.key.partition.topicID != topicID }
    }
}

/// Finding a message in a record log by its id, for a status query (not a hot path: reads
/// batch headers, and records only where a batch's time range can hold the message).
enum MessageSearch {
    /// The most bytes one search reads before it gives up.
    static let maxBytes = 256 << 20

    /// The first record of `log` from `start` on that `matches` (the last, for `last`: a
    /// retry log can hold several copies of one message, one per retry). `timestamp`: the
    /// record's timestamp, when known (fired messages are stamped with their due time), to
    /// skip batches that cannot hold it and records that do not have it.
    static func find(
        in log: RecordLog, from start: Int64, timestamp: Int64? = nil, last: Bool = false, _ matches: (Record) -> Bool
    ) throws -> StoredRecord? {
        var found: StoredRecord?
        var read = 0
        try log.scan(from: max(start, log.startOffset), chunkBytes: 1 << 20, while: { (last || found == nil) && read < maxBytes }) { batches, from in
            for b in batches where last || found == nil {
                read += b.bytes.count
                // (A batch's first timestamp is its first record's, not its least.)
                if let t = timestamp, t > b.header.maxTimestamp { continue }
                for r in try b.records() where r.offset >= from {
                    if let t = timestamp, r.record.timestamp != t { continue }
                    guard matches(r.record) else { continue }
                    found = r
                    if !last { break }
                }
            }
        }
        return found
    }

    /// Whether `record` carries the broker's id header naming `id`.
    static func carries(_ id: MessageID, _ record: Record) -> Bool {
        let meta = RecordMeta.split(record.headers).meta
        return meta.idKind == id.kind && meta.idValue == id.value
    }
}
