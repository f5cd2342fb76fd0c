import ChimeStore
import ChimeWheel
import Logging
import Synchronization

/// A record log the wheel hands messages to — a partition's ready log, or a group's retry
/// log of that partition — and the last fire tag it holds. Batches the wheel writes carry
/// `producerId = -2`, and the first record of a hand-over a `chime-fire` header; a mark
/// file (`fired.mark`: log offset + tag at that offset) saves scanning the whole log on
/// opening.
final class FiredLog: @unchecked Sendable {
    static let firedProducerID: Int64 = -2
    private static let markMagic: UInt32 = 0x4C46_4843  // "CHFL"

    let log: RecordLog
    private let markPath: String
    private let tag: Mutex<FireTag?>
    /// Hand-overs appended ahead of their due time, in log order, until they are due.
    private let holds = Mutex<[Hold]>([])

    private struct Hold {
        /// The hand-over's first offset (while it is appended: the log's end before it).
        var from: Int64
        /// Its end (exclusive); nil while it is being appended, when readers stop at `from`.
        var to: Int64?
        /// Its latest due time (broker time, ms): the sink drops the hold then.
        var until: Int64
    }

    /// Where readers' view of the log ends and which of it was fired ahead of its due time.
    ///
    /// The view ends at the log's end, or at the start of a hand-over still being appended
    /// (its offsets are not known yet, and a producer's batch appended meanwhile may come
    /// first). Messages fired ahead are readable as soon as they are appended; `ahead` says
    /// which they are, and a reader holds each back until its due time, its record's
    /// timestamp (`ConsumerGroup`). (The end is read first: a batch it covers had its hold
    /// registered before it was appended.)
    func readable(now: Int64) -> (end: Int64, ahead: FiredAhead) {
        let end = log.endOffset
        return holds.withLock { holds in
            guard !holds.isEmpty else { return (end, FiredAhead(ranges: [])) }
            var ranges: [Range<Int64>] = []
            for h in holds {
                guard let to = h.to else { return (min(h.from, end), FiredAhead(ranges: ranges)) }
                if h.until > now { ranges.append(h.from..<to) }
            }
            return (end, FiredAhead(ranges: ranges))
        }
    }

    /// Forgets the holds that ended by `now`; whether there were any.
    func release(through now: Int64) -> Bool {
        holds.withLock { holds in
            let before = holds.count
            holds.removeAll { $0.to != nil && $0.until <= now }
            return holds.count < before
        }
    }

    var lastTag: FireTag? { tag.withLock { $0 } }

    init(log: RecordLog, markPath: String, logger: Logger) throws {
        self.log = log
        self.markPath = markPath
        var start = log.startOffset
        var found: FireTag? = nil
        if var r = SnapshotReader(path: markPath, magic: Self.markMagic), let offset = r.i64(), let has = r.u8() {
            if has == 1, let s = r.u64(), let p = r.u16(), let n = r.u16() { found = FireTag(sequence: s, part: p, parts: n) }
            if offset >= start && offset <= log.endOffset { start = offset } else { found = nil }
        }
        // Scan what came after the mark; only the wheel's batches are decoded.
        try log.scan(from: start, damaged: { error in
            logger.warning("damaged batch while looking for fire marks", metadata: ["error": "\(error)"])
        }) { batches, from in
            for b in batches where b.header.producerId == Self.firedProducerID && b.nextOffset > from {
                if let first = try b.records().first, let t = RecordMeta.split(first.record.headers).meta.fire { found = t }
            }
        }
        tag = Mutex(found)
    }

    /// Appends one hand-over's part atomically and makes it durable before returning: the
    /// wheel writes its "fired" marker next, and the marker must never be on disk without
    /// the messages.
    ///
    /// Each record is the fired message's own bytes (`FiredMessage.payload`) with the
    /// record timestamp set to its due time; `withID` adds the `chime-id` header (id and
    /// publish time) that a message fired into the ready log carries.
    /// Readers hold the part's messages back until each is due (`readable`); the hold is
    /// dropped at `holdUntil`, its latest due time. Returns the offset of the first record
    /// appended.
    @discardableResult
    func appendFired(_ messages: [FiredMessage], withID: Bool, tag newTag: FireTag, holdUntil: Int64) throws -> Int64 {
        var batches: [[UInt8]] = []
        var builder = RecordBatchBuilder(producerId: Self.firedProducerID, capacity: min(1 << 20, messages.count * 200 + 256))
        for (i, f) in messages.enumerated() {
            let id = withID ? RecordHeader(name: ReservedHeader.id, value: ReservedHeader.messageID(.scheduled, f.id, publishedAt: f.publishedAt)) : nil
            let fire = i == 0 ? RecordHeader(name: ReservedHeader.fire, value: newTag.bytes) : nil
            let ok = f.payload.withUnsafeBytes { builder.append(timestamp: f.dueAt, payload: $0, adding: id, fire) }
            guard ok else { throw StoreError(.malformedBatch, "fired message \(f.id) has a malformed record") }
            if builder.sectionSize >= 1 << 20 {
                batches.append(try builder.build())
                builder.reset()
            }
        }
        if !builder.isEmpty { batches.append(try builder.build()) }
        // Under the tag's lock: a mark taken meanwhile must not cover this batch and name
        // the tag before it (`saveMark`).
        return try tag.withLock { last in
            // Registered before the append makes the batches readable, at or after the log's
            // end of now; readers stop there until the append has placed it (a producer's
            // batch appended meanwhile waits those microseconds too).
            let from = log.endOffset
            holds.withLock { $0.append(Hold(from: from, to: nil, until: holdUntil)) }
            func place(_ range: Range<Int64>) {
                holds.withLock { holds in
                    guard let i = holds.lastIndex(where: { $0.to == nil && $0.from == from }) else { preconditionFailure("a hold being appended is registered") }
                    holds[i].from = range.lowerBound
                    holds[i].to = range.upperBound
                }
            }
            let appended: AppendResult
            do {
                appended = try log.append(contentsOf: batches)
            } catch {
                // Whatever a failed append could not take back stays held until due.
                place(from..<max(from, log.endOffset))
                throw error
            }
            place(appended.baseOffset..<appended.nextOffset)
            // (Under `never` nothing is promised across a power loss; the process dying is
            // covered, the page cache keeps what was written.)
            if log.configuration.durability != .never { try log.flush() }
            last = newTag
            return appended.baseOffset
        }
    }

    /// Remembers where scanning can start next time (everything durable so far is covered).
    func saveMark() throws {
        let (offset, t) = tag.withLock { (log.durableOffset, $0) }
        var w = SnapshotWriter(magic: Self.markMagic, version: 1)
        w.i64(offset)
        if let t {
            w.u8(1)
            w.u64(t.sequence)
            w.u16(t.part)
            w.u16(t.parts)
        } else {
            w.u8(0)
        }
        try w.write(to: markPath)
    }
}

/// The offsets of a log fired ahead of their due time and not yet all due, as a reader
/// saw them (`FiredLog.readable`): a message in one of them whose timestamp — its due
/// time — is still ahead waits in the reader's window until then.
struct FiredAhead {
    /// In log order, a few at a time (one per hand-over within the fire lead).
    var ranges: [Range<Int64>]

    /// Whether the message at `offset`, with record timestamp `timestamp`, is held back at
    /// `now`.
    func holds(_ offset: Int64, timestamp: Int64, now: Int64) -> Bool {
        timestamp > now && ranges.contains { $0.contains(offset) }
    }
}

/// The wheel's destination for one partition: destination 0 is the ready log, destination
/// `g` the retry log of the group whose id is `g`.
///
/// A hand-over can go to several logs, which cannot be appended atomically together. Each
/// part carries `(sequence, part, parts)`, parts written in destination order. On opening,
/// the highest sequence `M` found counts as applied only if its last part is there;
/// otherwise the wheel fires `M` again and the parts already present are skipped.
final class PartitionFireSink: FireDestination, @unchecked Sendable {
    private let logs: Mutex<[UInt32: FiredLog]>
    private let openRetryLog: @Sendable (UInt32) throws -> FiredLog
    private let logger: Logger
    /// Called when hand-overs become readable, to wake their readers.
    let delivered: Mutex<(@Sendable () -> Void)?> = Mutex(nil)
    /// Broker time, on which held hand-overs are released.
    private let clock: any WheelClock

    init(
        ready: FiredLog, partition: PartitionKey, watch: OccurrenceWatch, openRetryLog: @escaping @Sendable (UInt32) throws -> FiredLog,
        clock: any WheelClock, logger: Logger
    ) {
        logs = Mutex([0: ready])
        self.clock = clock
        partitionKey = partition
        self.watch = watch
        self.openRetryLog = openRetryLog
        self.logger = logger
    }

    func register(_ destination: UInt32, _ log: FiredLog) {
        logs.withLock { $0[destination] = log }
    }

    func log(for destination: UInt32) throws -> FiredLog {
        if let log = logs.withLock({ $0[destination] }) { return log }
        let opened = try openRetryLog(destination)
        return logs.withLock { all in
            if let existing = all[destination] { return existing }
            all[destination] = opened
            return opened
        }
    }

    var allLogs: [UInt32: FiredLog] { logs.withLock { $0 } }

    var lastFireSequence: UInt64? {
        let tags = logs.withLock { $0.values.compactMap(\.lastTag) }
        guard let top = tags.map(\.sequence).max() else { return nil }
        let complete = tags.contains { $0.sequence == top && $0.isLastPart }
        return complete ? top : (top > 1 ? top - 1 : nil)
    }

    /// Told of every schedule occurrence handed over (after its append), in fire order,
    /// with what became of it.
    let occurrencesFired: Mutex<(@Sendable ([FiredOccurrence]) -> Void)?> = Mutex(nil)
    /// Which schedules have an occurrence out (the broker's), and this partition's key.
    private let watch: OccurrenceWatch
    private let partitionKey: PartitionKey

    /// The log a destination's messages go to: a schedule's occurrence goes to the ready log.
    private static func log(of destination: UInt32) -> UInt32 {
        destination == scheduleOccurrence || destination == watchedOccurrence ? 0 : destination
    }

    /// Destination of a schedule's occurrence: into the ready log like destination 0, and
    /// the partition's schedules are told, to plan the next one.
    static let scheduleOccurrence = UInt32.max
    /// The same, for a schedule whose group's acks count (overlap policy, fixed delay): its
    /// overlap policy is applied here, and the message it publishes is watched.
    static let watchedOccurrence = UInt32.max - 1

    func deliver(_ messages: [FiredMessage], fireSequence: UInt64) throws {
        var byDestination: [UInt32: [FiredMessage]] = [:]
        var occurrences: [FiredOccurrence] = []
        /// Watched occurrences appended to the ready log: their place in its part.
        var watched: [(name: String, occurrence: Int64, group: String, index: Int, told: Int)] = []
        if let first = messages.first?.destination, first != Self.watchedOccurrence, messages.allSatisfy({ $0.destination == first }) {
            byDestination[Self.log(of: first)] = messages  // one destination, the usual case: no copy of each message
            if first == Self.scheduleOccurrence { occurrences = messages.map { FiredOccurrence(message: $0, fate: .published) } }
        } else {
            for m in messages {
                if m.destination == Self.watchedOccurrence, let w = Partition.watchFields(m.message.headers) {
                    if w.overlap != .allow && watch.isOut(w.name) {
                        let held = w.overlap == .bufferOne && watch.buffer(w.name, m)
                        occurrences.append(FiredOccurrence(message: m, fate: held ? .buffered : .skipped))
                        continue
                    }
                    watched.append((w.name, w.occurrence, w.group, byDestination[0]?.count ?? 0, occurrences.count))
                }
                byDestination[Self.log(of: m.destination), default: []].append(m)
                if m.destination == Self.scheduleOccurrence || m.destination == Self.watchedOccurrence {
                    occurrences.append(FiredOccurrence(message: m, fate: .published))
                }
            }
        }
        let destinations = byDestination.keys.sorted()
        // Readers hold each message back until its own due time; waiting fetches are woken
        // at each due time the hand-over has, and its hold dropped at the latest (not the
        // last message's: a slot's messages go in publish order, and one placed in it
        // overdue can be due earlier than one before it).
        var dues: [Int64] = []
        for m in messages where m.dueAt != dues.last { dues.append(m.dueAt) }
        dues = Array(Set(dues)).sorted()
        // Released even when a part fails: what was appended is readable once due.
        defer { wakeReaders(at: dues) }
        for (index, d) in destinations.enumerated() {
            let log = try log(for: d)
            if let t = log.lastTag, t.sequence >= fireSequence { continue }  // applied before a crash
            let part = byDestination[d]!
            // Into the ready log with their id; retries carry theirs in their own headers.
            let first = try log.appendFired(
                part, withID: d == 0, tag: FireTag(sequence: fireSequence, part: UInt16(index), parts: UInt16(destinations.count)), holdUntil: dues.last!)
            if d == 0 {
                for w in watched {
                    let offset = first + Int64(w.index)
                    watch.published(w.name, occurrence: w.occurrence, as: OccurrenceWatch.Key(group: w.group, partition: partitionKey, offset: offset))
                    occurrences[w.told].readyOffset = offset
                }
            }
        }
        if !occurrences.isEmpty, let notify = occurrencesFired.withLock({ $0 }) { notify(occurrences) }
    }

    /// Wakes readers at each of `dues` (ascending) on a timer of its own — not the firing
    /// loop's turn, which can be taken by the next fire's syncs just then — and drops the
    /// hand-over's hold at the last.
    private func wakeReaders(at dues: [Int64]) {
        let now = clock.now()
        guard let last = dues.last, last > now else { return release() }
        if dues[0] <= now { notifyReaders() }  // part of it overdue already (a catch-up)
        Task { [self, clock] in
            for due in dues where due > now {
                while clock.now() < due, !Task.isCancelled { await clock.sleep(until: due) }
                if due < last { notifyReaders() }
            }
            release()
        }
    }

    private func notifyReaders() {
        if let notify = delivered.withLock({ $0 }) { notify() }
    }

    /// Forgets the holds that have ended and wakes the readers if there were any.
    private func release() {
        let now = clock.now()
        var released = false
        for log in logs.withLock({ Array($0.values) }) where log.release(through: now) { released = true }
        if released { notifyReaders() }
    }
}

/// A schedule's occurrence handed over by the wheel, and what became of it.
struct FiredOccurrence: Sendable {
    enum Fate: Sendable { case published, skipped, buffered }
    var message: FiredMessage
    var fate: Fate
    /// Where a watched occurrence's message went in the ready log.
    var readyOffset: Int64? = nil
}
