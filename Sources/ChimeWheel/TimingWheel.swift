import ChimeStore
import Logging

#if canImport(Glibc)
import Glibc
#endif

/// A hierarchical timing wheel that keeps only list heads in memory.
///
/// Every scheduled message is a `message` entry in the timer log, linked into the list of
/// its slot: the new entry's `next` is the slot's head, then the head becomes the new
/// entry's position. Memory is one `Slot` per slot of every level, whatever the number of
/// pending messages. When time reaches a higher-level slot its list is walked and each
/// entry re-linked one level down with a 48-byte `link` (bodies are never copied), then a
/// `slotCleared` marker is written — or, when every entry falls due in the same
/// millisecond, the whole list moves down with one `slotMoved` marker (`moveWhole`). When
/// a level-0 slot falls due its list is walked, the messages ordered by publish position
/// (their own position), cancelled ones dropped, the rest handed to the destination, and a
/// `slotFired` marker written. Because every change
/// is an appended entry, the wheel at any log position is a pure function of the log up to
/// there: opening replays it.
///
/// Not thread-safe: the partition's owner drives it (schedule, cancel, advance).
public final class TimingWheel {
    /// One slot: the head of its list and what is needed to order it. `start` is the
    /// slot's absolute start time; it follows from any entry's dueAt, and keeping it makes
    /// the order of expirations independent of how the wheel time was reached.
    struct Slot: Equatable {
        var head: Int64 = TimerEntry.noPosition
        var start: Int64 = 0
        var count: Int32 = 0
        var cancels: Int32 = 0
        /// A walk of the list stops at the first entry below this position: what lies
        /// below was rewritten above by a compaction (lists only ever point downwards).
        var cut: Int64 = 0
        /// The lowest timer-log position the visible list occupies or points to (an entry,
        /// or the message a link reads): compaction rewrites the slots reaching below the
        /// part of the log it wants to free.
        var oldest: Int64 = .max
        /// The due time every entry linked in shares (messages, links and cancels above
        /// level 0 carry their message's), so that the slot can move down whole
        /// (`moveWhole`); `Slot.noDue` while empty, `Slot.mixedDue` once two differ. Not
        /// kept by checkpoints: a slot loaded from one is `mixedDue` and cascades entry by
        /// entry.
        var sharedDue: Int64 = Slot.noDue
        static let noDue = Int64.max
        static let mixedDue = Int64.min
        var isEmpty: Bool { head == TimerEntry.noPosition }
        var singleDue: Int64? { sharedDue == Slot.noDue || sharedDue == Slot.mixedDue ? nil : sharedDue }
    }

    public let geometry: WheelGeometry
    public let log: TimerLog
    private let destination: FireDestination
    private let logger: Logger
    private var slots: SlotTable
    private var occupancy: [OccupancyBitmap]
    /// Every message due before `time` has been handed over; the wheel never moves back.
    public private(set) var time: Int64
    private var nextFireSequence: UInt64 = 1
    private let reader: TimerEntryReader
    /// Live timer-log bytes per 1 MiB chunk of address space (an entry counts in the chunk
    /// where it starts): messages until they fire (or are dropped as cancelled), links and
    /// cancels until their slot is processed. A prefix of chunks at zero, below the
    /// checkpoint, can be deleted; the sum drives compaction.
    /// Dense along the log: `live[i]` counts chunk `liveBase + i` (an array, not a map: it
    /// is touched for every entry scheduled, cascaded and fired).
    private var live: [Int32] = []
    private var liveBase: Int64 = 0
    /// The non-zero live byte counts by chunk (for the checkpoint and tests).
    var liveChunks: [Int64: Int32] {
        var out: [Int64: Int32] = [:]
        for (i, n) in live.enumerated() where n > 0 { out[liveBase + Int64(i)] = n }
        return out
    }
    /// log2 of the accounting chunk (20: 1 MiB).
    let chunkShift: Int64
    /// The log position of the last checkpoint written or loaded: replay never reads below.
    private var checkpointPosition: Int64?
    /// The first live position when that checkpoint was taken: its live counts, which a
    /// reopen starts from, must not refer to deleted bytes either.
    private var checkpointFirstLive: Int64?
    /// Hand-overs to this destination at or below this number already happened.
    private var appliedFireSequence: UInt64
    /// Compaction starts when the timer log holds more than twice its live bytes and at
    /// least this many bytes could be freed.
    public let compactionMinimumBytes: Int64
    /// The position below which the running compaction pass frees the log; nil between passes.
    private var compactionTarget: Int64?
    /// The slot the running pass is compacting, and how far it got.
    private var compactionPlan: CompactionPlan?
    /// Slots the running pass leaves alone (damage in their list).
    private var compactionSkipped = Set<Int>()
    /// The most entries one compaction step walks or rewrites (one pause of the firing
    /// loop: about a microsecond per entry walked, a few per entry copied).
    public var compactionStepLimit = 2_048

    /// Where `checkpoint()` writes and `init` looks; nil for no checkpoints.
    public let checkpointPath: String?
    /// How the last open rebuilt the wheel.
    public private(set) var recovery = Recovery()
    /// The last `handOver` marker replayed or written: the hand-over numbered `sequence`
    /// covered every level-0 slot up to `through`. Completing it (after a crash, or after
    /// its delivery failed) marks the same slots.
    private var replayedHandOver: (sequence: UInt64, through: Int64)?
    /// The last level-0 slot of a hand-over that was begun (its `handOver` entry written)
    /// and not finished: its delivery failed and the firing loop will retry it. Nothing may
    /// be scheduled into or cancelled from its slots meanwhile: a part already applied is
    /// skipped by the retry, so a message added there would be lost and a message
    /// cancelled there may have been delivered already.
    private var unfinishedHandOverThrough: Int64? {
        guard let h = replayedHandOver, h.sequence == nextFireSequence else { return nil }
        return h.through
    }
    /// Most entries one hand-over gathers from consecutive due slots (a catch-up after a
    /// long stop is handed over in pieces of about this size).
    public var handOverEntryLimit = 65_536
    /// What the hand-overs since the last `takeFiredTally()` delivered. The wheel has no
    /// clock: whoever drives it in time (`FiringLoop`) turns this into lateness.
    private var firedTally = FiredTally()

    public struct Recovery: Sendable, Equatable {
        /// A valid checkpoint was loaded (else the whole log was replayed).
        public var fromCheckpoint = false
        /// Timer-log entries replayed after the checkpoint (or from the start).
        public var replayedEntries = 0
    }

    /// Opens the wheel over `log`: loads the checkpoint if there is a valid one, then
    /// replays the entries after it (the whole log without one). The caller then calls
    /// `advance(to: now)` to catch up on everything that fell due while it was down.
    /// `reclaimChunkBytes` (a power of two) is the granularity of live accounting: smaller
    /// frees segments sooner and costs a little more memory.
    public init(
        log: TimerLog, geometry: WheelGeometry = .slots64, checkpointPath: String? = nil,
        destination: FireDestination, reclaimChunkBytes: Int = 1 << 20, compactionMinimumBytes: Int64? = nil, logger: Logger
    ) throws {
        self.compactionMinimumBytes = compactionMinimumBytes ?? 2 * Int64(log.configuration.segmentBytes)
        precondition(reclaimChunkBytes > 0 && reclaimChunkBytes & (reclaimChunkBytes - 1) == 0, "a power of two")
        chunkShift = Int64(reclaimChunkBytes.trailingZeroBitCount)
        self.log = log
        self.geometry = geometry
        self.checkpointPath = checkpointPath
        self.destination = destination
        self.logger = logger
        reader = TimerEntryReader(log: log)
        slots = SlotTable(pages: geometry.levels * 2, slotsPerPage: geometry.slotsPerLevel)
        occupancy = Array(repeating: OccupancyBitmap(slots: geometry.slotsPerLevel), count: geometry.levels * 2)
        time = 0
        appliedFireSequence = destination.lastFireSequence ?? 0
        var start = log.startOffset
        if let checkpoint = loadCheckpoint() {
            for s in checkpoint.slots {
                slots[index(s.level, s.start)] = Slot(
                    head: s.head, start: s.start, count: s.count, cancels: s.cancels, cut: s.cut, oldest: s.oldest,
                    sharedDue: Slot.mixedDue)
                occupancy[page(s.level, s.start)].insert(s.slot)
            }
            time = checkpoint.time
            nextFireSequence = checkpoint.nextFireSequence
            start = checkpoint.logPosition
            loadLive(checkpoint.liveChunks)
            checkpointPosition = checkpoint.logPosition
            checkpointFirstLive = checkpoint.liveChunks.keys.min().map { $0 << chunkShift } ?? checkpoint.logPosition
            recovery.fromCheckpoint = true
        }
        try replay(from: start)
        try completeAppliedHandOvers()
        try redoBegunHandOver()
    }

    /// A hand-over begun before a crash and applied by nobody, or by only some of the
    /// destination's logs, is made again at once, over exactly its slots: before anything
    /// can be scheduled into one of them (a message placed there now would be skipped with
    /// the part already applied).
    private func redoBegunHandOver() throws {
        guard let started = replayedHandOver, started.sequence == nextFireSequence, let next = nextExpiration(), next.level == 0,
            next.start <= started.through
        else {
            // Nothing of it left to redo: it must not keep its slots closed (see `unfinishedHandOverThrough`).
            if replayedHandOver?.sequence == nextFireSequence { replayedHandOver = nil }
            return
        }
        time = max(time, next.start)
        _ = try fire(starts: dueRun(through: started.through, entryLimit: .max))
    }

    /// Hand-overs the destination applied before a crash whose "fired" markers did not
    /// reach the log are redone first — markers only, no delivery — before anything else
    /// can be scheduled or cancelled, so the numbering after a restart matches the
    /// numbering before it whatever time it is now.
    private func completeAppliedHandOvers() throws {
        // The log is synced before every hand-over, so at most the last one can lack its
        // marker. A destination further ahead belongs to another log, or this log lost
        // data: redoing hand-overs blindly would mark messages fired that never were.
        if appliedFireSequence > nextFireSequence, log.configuration.durability != .never {
            throw WheelError(
                .foreignDestination,
                "the destination has applied hand-over \(appliedFireSequence) but the timer log only reaches \(nextFireSequence - 1); is this the destination of this timer log?")
        }
        while nextFireSequence <= appliedFireSequence, let next = nextExpiration() {
            time = max(time, next.start)
            if next.level == 0 {
                // The same slots as the hand-over that was applied: its marker says up to where.
                let through = replayedHandOver.flatMap { $0.sequence == nextFireSequence ? $0.through : nil } ?? next.start
                _ = try fire(starts: dueRun(through: max(through, next.start), entryLimit: .max))
            } else {
                try cascade(level: next.level, start: next.start)
            }
        }
    }

    private func loadCheckpoint() -> WheelCheckpoint? {
        guard let path = checkpointPath, let data = try? readSmallFile(path) else { return nil }
        guard let checkpoint = WheelCheckpoint.decode(data, geometry: geometry), checkpoint.chunkShift == chunkShift else {
            logger.warning("wheel checkpoint unreadable; replaying the whole timer log", metadata: ["path": "\(path)"])
            return nil
        }
        guard checkpoint.logPosition >= log.startOffset, checkpoint.logPosition <= log.endOffset else {
            logger.warning("wheel checkpoint does not fit the timer log; replaying it whole", metadata: [
                "path": "\(path)", "position": "\(checkpoint.logPosition)", "logEnd": "\(log.endOffset)",
            ])
            return nil
        }
        return checkpoint
    }

    /// Syncs the timer log, then writes the checkpoint atomically. Call at an interval and
    /// on clean shutdown; recovery then replays only what came after.
    public func checkpoint() throws {
        guard let pending = prepareCheckpoint() else { return }
        try pending.write()
        checkpointWritten(pending)
    }

    /// A checkpoint taken in memory and not written yet. `write()` syncs the timer log and
    /// writes the file without touching the wheel, so it can run on another thread while
    /// the wheel goes on (the firing loop does that: a sync can take tens of milliseconds);
    /// then pass it to `checkpointWritten`.
    public struct PendingCheckpoint: Sendable {
        /// The timer-log position the checkpoint covers.
        public let position: Int64
        /// The first position its live counts count anything at.
        let firstLive: Int64
        let bytes: [UInt8]
        let path: String
        let log: TimerLog

        public func write() throws {
            // Syncs at least up to `position`: the file never refers to what a crash can take.
            try log.flush()
            try Directory.writeAtomically(bytes, to: path, calls: log.fileSystemCalls)
        }
    }

    /// The wheel's state now, as a checkpoint to write; nil without a checkpoint path.
    public func prepareCheckpoint() -> PendingCheckpoint? {
        guard let path = checkpointPath else { return nil }
        // Nothing appended since the checkpoint on disk: it describes this wheel (every
        // change to the slots appends to the log; only the wheel time has moved, over
        // empty slots, and a reopen advances it again). An idle partition writes nothing.
        guard checkpointPosition != log.endOffset else { return nil }
        var states: [WheelCheckpoint.SlotState] = []
        forEachOccupied { level, slot, v in
            states.append(
                .init(level: level, slot: slot, head: v.head, start: v.start, count: v.count, cancels: v.cancels, cut: v.cut, oldest: v.oldest))
        }
        let checkpoint = WheelCheckpoint(
            geometry: geometry, logPosition: log.endOffset, time: time, nextFireSequence: nextFireSequence, slots: states,
            liveChunks: liveChunks, chunkShift: chunkShift)
        let firstLive = live.firstIndex { $0 > 0 }.map { (liveBase + Int64($0)) << chunkShift } ?? checkpoint.logPosition
        return PendingCheckpoint(position: checkpoint.logPosition, firstLive: firstLive, bytes: checkpoint.encode(), path: path, log: log)
    }

    /// Bytes appended to the timer log since the checkpoint on disk (since the log's start
    /// when there is none): what a reopen after a crash would replay.
    public var uncheckpointedBytes: Int64 { log.endOffset - (checkpointPosition ?? log.startOffset) }

    /// Records that `pending` is on disk: `reclaim` may now delete what lies below it.
    public func checkpointWritten(_ pending: PendingCheckpoint) {
        if pending.position >= checkpointPosition ?? pending.position {
            checkpointPosition = pending.position
            checkpointFirstLive = pending.firstLive
        }
    }

    // MARK: - State

    // Each level has two pages of slots: the span the wheel time is in and the one after
    // it, told apart by the parity of the span number. Entries go to the next page only
    // when the slot above is cascaded ahead of time (`cascadeAhead`) or when they are due
    // in the very next slot of their level; so a page never holds two spans at once.

    /// The occupancy bitmap (and page) of `level` that holds slot start `start`.
    @inline(__always)
    private func page(_ level: Int, _ start: Int64) -> Int {
        level * 2 + Int((start >> Int64((level + 1) * geometry.slotBits)) & 1)
    }

    /// Index into `slots` of the slot of `level` starting at `start`.
    @inline(__always)
    private func index(_ level: Int, _ start: Int64) -> Int {
        page(level, start) * geometry.slotsPerLevel + geometry.slot(level: level, time: start)
    }

    /// Visits every non-empty slot (level, slot number, state), level by level.
    private func forEachOccupied(_ body: (Int, Int, Slot) throws -> Void) rethrows {
        for o in 0..<occupancy.count where !occupancy[o].isEmpty {
            var s = occupancy[o].next(atOrAfter: 0)
            while let slot = s {
                try body(o / 2, slot, slots[o * geometry.slotsPerLevel + slot])
                s = occupancy[o].next(atOrAfter: slot + 1)
            }
        }
    }

    /// Messages scheduled and neither fired nor cancelled.
    public var pendingCount: Int {
        slots.sum { Int($0.count) - 2 * Int($0.cancels) }
    }

    /// Bytes of in-memory wheel state: the slot pages in use (at most all of the geometry's,
    /// however many messages are pending; none while the wheel is empty) and the bitmaps.
    public var stateBytes: Int {
        slots.allocatedBytes + occupancy.count * max(8, geometry.slotsPerLevel / 8)
    }

    /// Slot pages allocated now (see `SlotTable`).
    public var slotPagesInUse: Int { slots.allocatedPages }

    /// Occupied slots per level.
    public var occupiedSlots: [Int] { (0..<geometry.levels).map { occupancy[2 * $0].count + occupancy[2 * $0 + 1].count } }

    /// The start of the next slot to process (fire or cascade), nil when empty. The firing
    /// loop sleeps until then.
    public var nextDue: Int64? { nextExpiration()?.start }

    /// The slot to process next: the lowest start; on a tie the higher level first, so a
    /// cascade lands its entries before the level-0 slot of the same millisecond fires.
    private func nextExpiration() -> (level: Int, slot: Int, start: Int64)? {
        var best: (level: Int, slot: Int, start: Int64)? = nil
        for o in 0..<occupancy.count {
            // A page holds one span: its first occupied slot is its earliest.
            guard let s = occupancy[o].next(atOrAfter: 0) else { continue }
            let level = o / 2
            let start = slots[o * geometry.slotsPerLevel + s].start
            if best == nil || start < best!.start || (start == best!.start && level > best!.level) {
                best = (level, s, start)
            }
        }
        return best
    }

    @inline(__always)
    private func liveAdd(_ position: Int64, _ delta: Int32) {
        let chunk = position >> chunkShift
        if live.isEmpty { liveBase = chunk }
        if chunk < liveBase {
            // Below everything counted so far (a replay that starts late): grow downwards.
            live.insert(contentsOf: repeatElement(0, count: Int(liveBase - chunk)), at: 0)
            liveBase = chunk
        }
        let i = Int(chunk - liveBase)
        if i >= live.count { live.append(contentsOf: repeatElement(0, count: i - live.count + 1)) }
        let updated = live[i] + delta
        assert(updated >= 0, "live bytes of chunk \(chunk) went negative (\(live[i]) \(delta)): an entry retired twice or never counted")
        live[i] = updated
    }

    private func loadLive(_ chunks: [Int64: Int32]) {
        live = []
        for (chunk, n) in chunks.sorted(by: { $0.key < $1.key }) { liveAdd(chunk << chunkShift, n) }
    }

    /// What processing a slot retires: a cascade its links and cancels (messages stay,
    /// referenced by the new links); a fire everything, and each message once.
    /// `messageSizes`: for a fire, the size of each message entry it read (by position);
    /// looked up when nil.
    private func retire(_ entries: [TimerEntryFields], fired: Bool, messageSizes: [(position: Int64, size: Int)]? = nil) {
        for e in entries where !e.kind.carriesMessage { liveAdd(e.position, -Int32(e.size)) }
        guard fired else { return }
        if let messageSizes {
            for m in messageSizes { liveAdd(m.position, -Int32(m.size)) }
            return
        }
        var seen = Set<Int64>()
        for e in entries where e.kind != .cancel && seen.insert(e.target).inserted {
            if e.kind.carriesMessage {
                liveAdd(e.position, -Int32(e.size))
            } else if let size = (try? reader.fields(at: e.target).size) ?? reader.declaredSize(at: e.target) {
                liveAdd(e.target, -Int32(size))
            }
        }
    }

    /// Pushes an entry onto the list of the slot of `level` starting at `start`. `target`:
    /// the position of the message it reads (nil for a cancel).
    private func link(level: Int, position: Int64, start: Int64, dueAt: Int64, cancel: Bool, target: Int64?) {
        let i = index(level, start)
        if slots[i].isEmpty {
            slots[i].start = start
            occupancy[page(level, start)].insert(geometry.slot(level: level, time: start))
        }
        assert(slots[i].start == start, "a slot holds one span at a time")
        slots[i].head = position
        slots[i].count += 1
        if slots[i].sharedDue == Slot.noDue {
            slots[i].sharedDue = dueAt
        } else if slots[i].sharedDue != dueAt {
            slots[i].sharedDue = Slot.mixedDue
        }
        slots[i].oldest = min(slots[i].oldest, position, target ?? .max)
        if cancel { slots[i].cancels += 1 }
        if compactionPlan?.slot == i { compactionPlan!.pushedOldest = min(compactionPlan!.pushedOldest, position, target ?? .max) }
    }

    private func clear(level: Int, start: Int64) {
        let p = page(level, start)
        slots[index(level, start)] = Slot()
        occupancy[p].remove(geometry.slot(level: level, time: start))
        if occupancy[p].isEmpty { slots.release(page: p) }
    }

    /// Where an entry due at `due` goes now, with its slot's start: the level of the
    /// highest bit in which it differs from the wheel time, except that an entry due in
    /// the very next slot of that level goes one level down, to the next page, where
    /// `cascadeAhead` moves that slot's earlier entries (so that slot needs no cascade).
    private func placement(_ due: Int64) -> (level: Int, slot: Int, start: Int64) {
        var level = geometry.level(now: time, due: due)
        let at = max(due, time)
        if level > 0 {
            let span = geometry.slotSpan(level)
            if at & ~(span - 1) == (time & ~(span - 1)) + span { level -= 1 }
        }
        return (level, geometry.slot(level: level, time: at), at & ~(geometry.slotSpan(level) - 1))
    }

    /// Deletes the oldest timer-log segments that hold nothing live and lie wholly below
    /// the last checkpoint (so replay never needs them). Only with checkpoints. A message
    /// scheduled far ahead keeps its segment, and the ones after it, until it fires.
    /// `inBackground`: see `SegmentLog.removeSegments` (the firing loop's choice).
    @discardableResult
    public func reclaim(inBackground: Bool = false) throws -> [Int64] {
        guard checkpointPath != nil, let checkpointed = checkpointPosition else { return [] }
        // Leading dead chunks are forgotten as they go.
        let dead = live.prefix { $0 == 0 }.count
        live.removeFirst(dead)
        liveBase += Int64(dead)
        let firstLive = live.isEmpty ? log.endOffset : liveBase << chunkShift
        let end = min(firstLive, checkpointed, checkpointFirstLive ?? checkpointed)
        guard log.segmentInfos.dropLast().contains(where: { $0.nextOffset <= end }) else { return [] }
        // The segments going may hold the last "slot fired" marker, the only record of the
        // fire numbering apart from the checkpoint: restate it first, durably.
        if nextFireSequence > 1 {
            var marker: [UInt8] = []
            TimerEntry.append(
                .fireSequence, level: 0, slot: 0, dueAt: time, next: TimerEntry.noPosition, reference: Int64(nextFireSequence - 1), to: &marker)
            try log.append(marker)
            try log.flush()
        }
        return try log.removeSegments(endingAtOrBefore: end, inBackground: inBackground)
    }

    // MARK: - Schedule, cancel, reschedule

    /// Entries being prepared for one append: their bytes, where they will land, and the
    /// slot heads as they will be once they do (entries of one call link to each other).
    private struct PendingAppend {
        var bytes: [[UInt8]] = []
        var position: Int64
        var heads: [Int: Int64] = [:]
        var placed: [(level: Int, start: Int64, position: Int64, size: Int, dueAt: Int64, cancel: Bool, target: Int64?)] = []

        init(at position: Int64, capacity: Int) {
            self.position = position
            bytes.reserveCapacity(capacity)
            placed.reserveCapacity(capacity)
        }
    }

    private func head(_ i: Int, _ pending: PendingAppend) -> Int64 { pending.heads[i] ?? slots[i].head }

    /// Entries added to a `PendingAppend` are encoded with `continues` set; `appendGroup`
    /// clears it on the last one.
    /// Adds a message entry for `m` (a moved copy when `originalID` is given) to `pending`,
    /// in the slot `placement` picks, or in (`level`, `start`) when given.
    private func addMessage(
        _ m: ScheduledMessage, originalID: Int64? = nil, level: Int? = nil, start: Int64? = nil, to pending: inout PendingAppend
    ) throws {
        guard m.dueAt >= 0, m.dueAt < geometry.limit else {
            throw WheelError(.dueOutOfRange, "due time \(m.dueAt) ms is outside 0..<\(geometry.limit)")
        }
        let p = level.map { ($0, geometry.slot(level: $0, time: start!), start!) } ?? placement(m.dueAt)
        if p.0 == 0, let through = unfinishedHandOverThrough, p.2 <= through {
            throw WheelError(
                .handOverPending, "the hand-over of the slots up to \(through) ms failed and waits for its retry; a message due by then cannot be added to it now")
        }
        let i = index(p.0, p.2)
        var bytes: [UInt8] = []
        TimerEntry.appendMessage(
            m, level: p.0, slot: p.1, next: head(i, pending), placedAt: time, originalID: originalID, continues: true, to: &bytes)
        add(bytes, level: p.0, start: p.2, dueAt: m.dueAt, cancel: false, target: pending.position, to: &pending)
    }

    /// Adds a frame-only entry (link or cancel) for the slot of `level` starting at `start`.
    private func addFrame(
        _ kind: TimerEntry.Kind, level: Int, start: Int64, dueAt: Int64, reference: Int64, to pending: inout PendingAppend
    ) {
        var bytes: [UInt8] = []
        TimerEntry.append(
            kind, level: level, slot: geometry.slot(level: level, time: start), dueAt: dueAt, next: head(index(level, start), pending),
            reference: reference, continues: true, to: &bytes)
        add(bytes, level: level, start: start, dueAt: dueAt, cancel: kind == .cancel, target: kind == .link ? reference : nil, to: &pending)
    }

    private func add(_ bytes: [UInt8], level: Int, start: Int64, dueAt: Int64, cancel: Bool, target: Int64?, to pending: inout PendingAppend) {
        pending.heads[index(level, start)] = pending.position
        pending.placed.append((level, start, pending.position, bytes.count, dueAt, cancel, target))
        pending.position += Int64(bytes.count)
        pending.bytes.append(bytes)
    }

    /// Appends what `pending` holds plus `marker` (all or nothing), then links the new
    /// entries into their slots and counts them live.
    private func commit(_ pending: PendingAppend, marker: [UInt8]? = nil) throws {
        var bytes = pending.bytes
        if let marker { bytes.append(marker) }
        guard !bytes.isEmpty else { return }
        let result = try appendGroup(bytes)
        precondition(result.baseOffset == (pending.placed.first?.position ?? result.baseOffset), "the wheel is the timer log's only writer")
        link(pending)
    }

    /// Appends entries that must count together or not at all: all but the last are
    /// flagged `continues`, and opening drops an append a crash cut short (the log can
    /// split one append into several writes, and keeps whatever whole entries reached
    /// the disk).
    private func appendGroup(_ entries: [[UInt8]]) throws -> AppendResult {
        // Pending entries are encoded with the flag set: usually only the last one changes.
        var entries = entries
        for k in entries.indices where (entries[k][19] == 1) != (k < entries.count - 1) {
            TimerEntry.setContinues(k < entries.count - 1, &entries[k])
        }
        return try log.append(contentsOf: entries)
    }

    private func link(_ pending: PendingAppend) {
        for p in pending.placed {
            link(level: p.level, position: p.position, start: p.start, dueAt: p.dueAt, cancel: p.cancel, target: p.target)
            liveAdd(p.position, Int32(p.size))
        }
    }

    /// Schedules messages; returns their ids (timer-log positions), in order. One append
    /// for the whole call. A due time in the past fires at the next `advance`.
    @discardableResult
    public func schedule(_ messages: [ScheduledMessage]) throws -> [Int64] {
        guard !messages.isEmpty else { return [] }
        var pending = PendingAppend(at: log.endOffset, capacity: messages.count)
        for m in messages { try addMessage(m, to: &pending) }
        try commit(pending)
        return pending.placed.map(\.position)
    }

    /// Where a pending message is: the slot whose list holds it, and the entry holding its
    /// record. `dueAt`: its due time; read from the log when nil, which works until a
    /// compaction deletes the original entry (the broker keeps the due time with the id).
    private func locate(_ id: Int64, dueAt: Int64?) throws -> (level: Int, start: Int64, holder: Int64, dueAt: Int64) {
        let due: Int64
        if let dueAt {
            due = dueAt
        } else {
            let entry: TimerEntryFields
            do {
                entry = try reader.fields(at: id)
            } catch let error as StoreError where error.code == .offsetOutOfRange || error.code == .corruptBatch {
                throw WheelError(
                    .unknownMessage,
                    "no scheduled message has id \(id) (if it was scheduled long ago, its original entry may be compacted away: give its due time)")
            }
            guard entry.kind == .message else { throw WheelError(.unknownMessage, "no scheduled message has id \(id)") }
            due = entry.dueAt
        }
        guard due >= 0, due < geometry.limit else { throw WheelError(.dueOutOfRange, "due time \(due) ms is outside 0..<\(geometry.limit)") }
        // The message is in the slot of its due time at some level between the one it
        // would be placed on now and level 0: cascading ahead moves it down early, maybe
        // several levels in a row when the next slots of several levels start together.
        let at = max(due, time)
        let candidates = (0...geometry.level(now: time, due: due)).map { (level: $0, start: at & ~(geometry.slotSpan($0) - 1)) }
        var found: (level: Int, start: Int64, holder: Int64)? = nil
        var cancelled = false
        for c in candidates {
            let i = index(c.level, c.start)
            guard !slots[i].isEmpty && slots[i].start == c.start else { continue }
            for e in walk(i).entries {
                if e.kind == .cancel {
                    if e.reference == id { cancelled = true }
                } else if e.target == id || (e.target > id && messageID(of: e) == id) {
                    // The original entry, a link to it, or a moved copy (always further on).
                    found = (c.level, c.start, e.target)
                }
            }
        }
        guard let found, !cancelled else {
            throw WheelError(.notPending, "message \(id) is not pending (it fired or was cancelled)")
        }
        if found.level == 0, let through = unfinishedHandOverThrough, found.start <= through {
            // Its hand-over has begun (and may be partly applied): it is firing, not pending.
            throw WheelError(.beingFired, "message \(id) is not pending (it is being fired)")
        }
        return (found.level, found.start, found.holder, due)
    }

    /// The id of the message a list entry stands for; a link's is read from its target
    /// (-1 when that cannot be read).
    private func messageID(of e: TimerEntryFields) -> Int64 {
        if let id = e.messageID { return id }
        return (try? reader.fields(at: e.target))?.messageID ?? -1
    }

    /// A tombstone for `id`, linked into the slot holding the message so its fire drops it.
    private func addCancel(_ id: Int64, at home: (level: Int, start: Int64, holder: Int64, dueAt: Int64), to pending: inout PendingAppend) {
        // A level-0 tombstone carries its slot's start (it differs from the due time of a
        // message placed overdue); a higher one the due time, to be cascaded by.
        addFrame(.cancel, level: home.level, start: home.start, dueAt: home.level == 0 ? home.start : home.dueAt, reference: id, to: &pending)
    }

    /// Cancels a scheduled message by id: a tombstone linked into the message's current
    /// slot, so the fire drops it. Only a message still pending can be cancelled: one that
    /// fired or was cancelled already is a `WheelError` `.notPending` (`.beingFired` while
    /// its hand-over is under way, `.unknownMessage` for an id never scheduled). The
    /// check walks the slot (or two) the message can be in. `dueAt`: see `locate`.
    public func cancel(_ id: Int64, dueAt: Int64? = nil) throws {
        let home = try locate(id, dueAt: dueAt)
        var pending = PendingAppend(at: log.endOffset, capacity: 1)
        addCancel(id, at: home, to: &pending)
        try commit(pending)
    }

    /// Moves a pending message to another due time: its cancel and a new message with
    /// the same record land in one append (so neither happens without the other). Returns
    /// the new id. The same rules as `cancel` apply to `id`.
    @discardableResult
    public func reschedule(_ id: Int64, dueAt: Int64? = nil, to newDueAt: Int64) throws -> Int64 {
        let home = try locate(id, dueAt: dueAt)
        var message = try reader.message(at: home.holder).message
        message.dueAt = newDueAt
        var pending = PendingAppend(at: log.endOffset, capacity: 2)
        addCancel(id, at: home, to: &pending)
        try addMessage(message, to: &pending)
        try commit(pending)
        return pending.placed[1].position
    }

    /// The hand-overs made since the last call (see `FiredTally`), and starts a new tally.
    public func takeFiredTally() -> FiredTally {
        defer { firedTally = FiredTally() }
        return firedTally
    }

    // MARK: - Advance

    /// Processes every slot that starts at or before `now`, in order: cascades re-link,
    /// level-0 slots fire. Time never moves backwards; a `now` behind the wheel does
    /// nothing. Returns the number of messages handed over.
    @discardableResult
    public func advance(to now: Int64) throws -> Int {
        var fired = 0
        // Slots can start at `time` (overdue schedules) even when the clock stepped back.
        while let next = nextExpiration(), next.start <= max(now, time) {
            time = max(time, next.start)
            if next.level == 0 {
                if let started = replayedHandOver, started.sequence == nextFireSequence {
                    // A hand-over begun before a crash (its marker is on disk, its slots'
                    // markers are not) is made again over exactly its slots: a destination
                    // that applied part of it skips that part by its number, so it must not
                    // grow to take in slots that fell due since.
                    fired += try fire(starts: dueRun(through: max(started.through, next.start), entryLimit: .max))
                } else {
                    fired += try fire(starts: dueRun(through: max(now, time), entryLimit: handOverEntryLimit))
                }
            } else {
                try cascade(level: next.level, start: next.start)
            }
        }
        time = max(time, now)
        return fired
    }

    /// Cascades part of an upcoming slot ahead of its time, so that no slot's cascade has
    /// to happen all at once when the slot starts. The slot is the next one of some level
    /// (the earliest such; on a tie the higher level); its entries move one level down,
    /// into the page of the span that slot covers, which nothing else uses until then. At
    /// most `maxEntries` are moved per call, from the head of the list, and a
    /// `cascadeProgress` marker records how far; the firing loop calls this between fires
    /// while it returns true (more to do). What is not done by the slot's start is
    /// cascaded then, as usual.
    @discardableResult
    public func cascadeAhead(maxEntries: Int = 1024) throws -> Bool {
        guard let (level, start) = nextSlotAhead() else { return false }
        if try moveWhole(level: level, start: start, ahead: true) { return nextSlotAhead() != nil }
        let (taken, cursor) = walk(index(level, start), limit: max(1, maxEntries))
        let lower = level - 1
        var pending = PendingAppend(at: log.endOffset, capacity: taken.count)
        for e in taken.reversed() {
            addFrame(
                e.kind == .cancel ? .cancel : .link, level: lower, start: e.dueAt & ~(geometry.slotSpan(lower) - 1), dueAt: e.dueAt,
                reference: e.kind == .cancel ? e.reference : e.target, to: &pending)
        }
        var marker: [UInt8] = []
        TimerEntry.append(
            .cascadeProgress, level: level, slot: geometry.slot(level: level, time: start), dueAt: start, next: TimerEntry.noPosition,
            reference: cursor, to: &marker)
        try commit(pending, marker: marker)
        dropHead(level: level, start: start, through: cursor, dropped: taken)
        return nextSlotAhead() != nil
    }

    /// The next slot of some level above 0 that has entries, earliest first (on a tie the
    /// higher level, whose entries may land in the lower one).
    private func nextSlotAhead() -> (level: Int, start: Int64)? {
        var best: (level: Int, start: Int64)? = nil
        for level in 1..<geometry.levels {
            let span = geometry.slotSpan(level)
            let start = (time & ~(span - 1)) + span
            guard start < geometry.limit else { break }
            let s = slots[index(level, start)]
            if !s.isEmpty && s.start == start && (best == nil || start <= best!.start) { best = (level, start) }
        }
        return best
    }

    /// Takes the entries from a slot's head down to `cursor` (exclusive; -1: the whole
    /// list) out of the slot after they were cascaded ahead, retiring them as a cascade
    /// does. `dropped`: those entries when the caller has them; else they are walked.
    private func dropHead(level: Int, start: Int64, through cursor: Int64, dropped known: [TimerEntryFields]? = nil) {
        let i = index(level, start)
        let dropped = known ?? walk(from: slots[i].head, floor: slots[i].cut, stop: cursor).entries
        retire(dropped, fired: false)
        let cancels = Int32(dropped.reduce(0) { $0 + ($1.kind == .cancel ? 1 : 0) })
        if cursor == TimerEntry.noPosition {
            clear(level: level, start: start)
        } else {
            slots[i].head = cursor
            slots[i].count = max(1, slots[i].count - Int32(dropped.count))
            assert(slots[i].cancels >= cancels, "slot \(i) dropped \(cancels) cancels of \(slots[i].cancels)")
            slots[i].cancels -= cancels
        }
    }

    /// Walks the visible list of slot `i` (newest first, down to its cut), at most `limit`
    /// entries; returns them and the position of the first entry not taken (-1: none left).
    private func walk(_ i: Int, limit: Int = .max) -> (entries: [TimerEntryFields], rest: Int64) {
        let w = walk(from: slots[i].head, floor: slots[i].cut, limit: limit)
        return (w.entries, w.rest)
    }

    /// Walks a list from `head` (newest first) while entries lie at or above `floor` (the
    /// slot's cut), stopping before `stop` and after `limit` entries. Returns the entries,
    /// the position of the first entry not taken (-1: the list ended), and whether damage
    /// ended the walk: what a damaged entry linked to cannot be reached, which is reported,
    /// not hidden, and the wheel goes on with the rest.
    private func walk(
        from head: Int64, floor: Int64, stop: Int64 = TimerEntry.noPosition, limit: Int = .max
    ) -> (entries: [TimerEntryFields], rest: Int64, damaged: Bool) {
        var out: [TimerEntryFields] = []
        var at = head
        while at != TimerEntry.noPosition && at != stop && at >= floor && out.count < limit {
            do {
                let e = try reader.fields(at: at)
                out.append(e)
                at = e.next
            } catch {
                logger.error("timer list broken by damage; older entries of this slot are lost", metadata: [
                    "position": "\(at)", "error": "\(error)",
                ])
                return (out, TimerEntry.noPosition, true)
            }
        }
        return (out, at >= floor ? at : TimerEntry.noPosition, false)
    }

    /// Moves a slot whose entries all fall due in the same millisecond down whole: its list
    /// becomes the list of the slot a cascade would put each of them in, and one 48-byte
    /// `slotMoved` marker (`slotMovedAhead` from `cascadeAhead`) replaces a link per entry —
    /// nothing is walked, written per entry or copied. (A burst due at one instant, such
    /// as everything expiring at noon, then reaches level 0 in constant time, and its fire
    /// reads the messages without going through links.) Only into an empty slot, since
    /// two lists cannot be joined, and not while a compaction works on the slot. Returns
    /// false, having done nothing, when the slot cannot move: the caller cascades it.
    private func moveWhole(level: Int, start: Int64, ahead: Bool) throws -> Bool {
        let i = index(level, start)
        guard level > 0, let due = slots[i].singleDue, compactionPlan?.slot != i else { return false }
        let target: (level: Int, start: Int64)
        if ahead {
            // Into the lower level's next page, as `cascadeAhead` links entries.
            target = (level - 1, due & ~(geometry.slotSpan(level - 1) - 1))
        } else {
            let p = placement(due)
            target = (p.level, p.start)
        }
        guard target.level < level, slots[index(target.level, target.start)].isEmpty else { return false }
        if target.level == 0, let through = unfinishedHandOverThrough, target.start <= through { return false }
        var marker: [UInt8] = []
        TimerEntry.append(
            ahead ? .slotMovedAhead : .slotMoved, level: level, slot: geometry.slot(level: level, time: start), dueAt: start,
            next: Int64(target.level), reference: target.start, to: &marker)
        _ = try appendGroup([marker])
        relink(level: level, start: start, to: target)
        return true
    }

    /// The list of slot (`level`, `start`) becomes the list of the empty slot `target`.
    private func relink(level: Int, start: Int64, to target: (level: Int, start: Int64)) {
        var moved = slots[index(level, start)]
        clear(level: level, start: start)
        moved.start = target.start
        slots[index(target.level, target.start)] = moved
        occupancy[page(target.level, target.start)].insert(geometry.slot(level: target.level, time: target.start))
    }

    private func cascade(level: Int, start: Int64) throws {
        if try moveWhole(level: level, start: start, ahead: false) { return }
        let i = index(level, start)
        let entries = walk(i).entries
        var pending = PendingAppend(at: log.endOffset, capacity: entries.count)
        // Oldest first, so each lower list keeps publish order from its tail.
        for e in entries.reversed() {
            let p = placement(e.dueAt)
            precondition(p.level < level, "a cascade moves entries down")
            addFrame(
                e.kind == .cancel ? .cancel : .link, level: p.level, start: p.start, dueAt: e.dueAt,
                reference: e.kind == .cancel ? e.reference : e.target, to: &pending)
        }
        var marker: [UInt8] = []
        TimerEntry.append(
            .slotCleared, level: level, slot: geometry.slot(level: level, time: start), dueAt: start, next: TimerEntry.noPosition,
            reference: TimerEntry.noPosition, to: &marker)
        // Links and marker land together or not at all.
        try commit(pending, marker: marker)
        clear(level: level, start: start)
        retire(entries, fired: false)
    }

    /// The level-0 slots to hand over together, in time order: the next one, and each
    /// following one that starts by `through` with no higher-level slot (a cascade, which
    /// must go first) starting before it, while fewer than `entryLimit` entries are gathered.
    /// One hand-over then costs one sync and one delivery however many slots fell due
    /// while the last one was being made: the batching adapts to the load.
    private func dueRun(through: Int64, entryLimit: Int) -> [Int64] {
        var higher = Int64.max
        for o in 2..<occupancy.count {
            if let s = occupancy[o].next(atOrAfter: 0) { higher = min(higher, slots[o * geometry.slotsPerLevel + s].start) }
        }
        var starts: [Int64] = []
        for o in 0..<2 {
            var s = occupancy[o].next(atOrAfter: 0)
            while let slot = s {
                let start = slots[o * geometry.slotsPerLevel + slot].start
                if start <= through && start < higher { starts.append(start) }
                s = occupancy[o].next(atOrAfter: slot + 1)
            }
        }
        starts.sort()
        var run: [Int64] = []
        var entries = 0
        for start in starts {
            if !run.isEmpty && entries >= entryLimit { break }
            run.append(start)
            entries += Int(slots[index(0, start)].count)
        }
        return run
    }

    /// Hands over the messages of level-0 slots (`dueRun`), slot by slot in time order and
    /// within a slot in publish order (by id), without cancelled ones: one hand-over, one
    /// number. The slots' "fired" markers land together after it.
    private func fire(starts: [Int64]) throws -> Int {
        precondition(!starts.isEmpty)
        var fired: [FiredMessage] = []
        var sizes: [(position: Int64, size: Int)] = []
        var lists: [[TimerEntryFields]] = []
        lists.reserveCapacity(starts.count)
        for start in starts {
            let entries = walk(index(0, start)).entries
            lists.append(entries)
            var cancelled = Set<Int64>()
            // Targets, and whether the walk just checked that very entry (a message, not a link).
            var targets: [(position: Int64, verified: Bool)] = []
            targets.reserveCapacity(entries.count)
            for e in entries {
                if e.kind == .cancel { cancelled.insert(e.reference) } else { targets.append((e.target, e.kind.carriesMessage)) }
            }
            targets.sort { $0.position < $1.position }
            var slotFired: [FiredMessage] = []
            slotFired.reserveCapacity(targets.count)
            var previous: Int64 = -1
            for (t, verified) in targets where t != previous {
                previous = t
                do {
                    let m = try reader.fired(at: t, verified: verified)
                    sizes.append((t, m.size))
                    if !cancelled.contains(m.message.id) { slotFired.append(m.message) }
                } catch {
                    logger.error("scheduled message lost to damage", metadata: ["position": "\(t)", "error": "\(error)"])
                    if let size = reader.declaredSize(at: t) { sizes.append((t, size)) }
                }
            }
            // Ids are original positions: publish order, also for messages a compaction moved.
            if zip(slotFired, slotFired.dropFirst()).contains(where: { $0.id >= $1.id }) {
                slotFired.sort { $0.id < $1.id }
                var seen: Int64 = -1
                slotFired.removeAll { f in
                    defer { seen = f.id }
                    return f.id == seen
                }
            }
            // Moved, not copied, when it is the only slot (a copy retains every payload).
            if fired.isEmpty { swap(&fired, &slotFired) } else { fired.append(contentsOf: slotFired) }
        }
        let sequence = nextFireSequence
        let handedOver = sequence > appliedFireSequence
        if handedOver {
            if !fired.isEmpty {
                // Which slots this hand-over covers, for completing it after a crash.
                var intent: [UInt8] = []
                TimerEntry.append(
                    .handOver, level: 0, slot: geometry.slot(level: 0, time: starts.last!), dueAt: starts.last!, next: TimerEntry.noPosition,
                    reference: Int64(sequence), to: &intent)
                try log.append(intent)
                // Begun: until its markers land, a retry (after a failed delivery, in this
                // process as after a crash) covers exactly these slots. A destination that
                // applied some parts skips them by this number, so a retry grown by slots
                // that fell due meanwhile would drop their messages for those parts.
                replayedHandOver = (sequence, starts.last!)
                // Everything that led to this hand-over must be on disk before the
                // destination records its number, or a crash could renumber the fires.
                // (Under `never` the log promises nothing across a power loss anyway.)
                if log.configuration.durability != .never { try log.flush() }
                try destination.deliver(fired, fireSequence: sequence)
                appliedFireSequence = sequence
                firedTally.add(fired)
            }
        } else {
            // Applied before a crash that came before the markers: complete the markers only.
            logger.info("hand-over already applied; completing its markers", metadata: ["sequence": "\(sequence)", "slots": "\(starts.count)"])
        }
        var markers: [[UInt8]] = []
        for start in starts {
            var marker: [UInt8] = []
            TimerEntry.append(
                .slotFired, level: 0, slot: geometry.slot(level: 0, time: start), dueAt: start, next: TimerEntry.noPosition,
                reference: Int64(sequence), to: &marker)
            markers.append(marker)
        }
        _ = try appendGroup(markers)
        nextFireSequence = sequence + 1
        for (k, start) in starts.enumerated() {
            clear(level: 0, start: start)
            retire(lists[k], fired: true, messageSizes: k == 0 ? sizes : [])
        }
        return handedOver ? fired.count : 0  // re-applied hand-overs count 0
    }

    // MARK: - Compaction

    /// Live bytes of the timer log, as counted for reclaiming.
    public var liveBytes: Int64 { live.reduce(0) { $0 + Int64($1) } }

    /// One slot being compacted. First its list is walked from the head, a step at a time,
    /// to find the newest entry that is (or reads, through a link) below the boundary —
    /// everything from there down is rewritten — and to cut that part into chunks of at
    /// most a step. Then the chunks are rewritten **oldest first**: copies go on top of the
    /// list, and the cut moves up to just above the chunk, so after every step the list is
    /// whole and points downwards, and only the tail was replaced.
    struct CompactionPlan {
        var slot: Int
        var start: Int64
        /// Planning: where the walk goes on (-1: planned).
        var walkFrom: Int64
        /// The newest entry of each chunk, newest chunk first.
        var chunkHeads: [Int64] = []
        var entriesInLastChunk = 0
        /// Lowest position the entries above the rewritten part occupy or read.
        var oldestAbove: Int64 = .max
        /// Lowest position entries linked into the slot since the plan began occupy or read
        /// (the copies among them).
        var pushedOldest: Int64 = .max
    }

    /// One step of compaction; returns true while a pass has more to do. A pass starts
    /// when the timer log holds more than twice its live bytes and at least
    /// `compactionMinimumBytes` could be freed; it picks the first segment boundary past
    /// the middle of the log and rewrites every slot whose list reaches below it, a slot at
    /// a time and at most `compactionStepLimit` entries per step (see `CompactionPlan`):
    /// cancels as cancels, every message, whether in the list or read through a link, as a
    /// `movedMessage` copy keeping its id; each step ends with a `slotCompacted` marker
    /// whose cut hides the entries it replaced. Then nothing below the boundary is live,
    /// and `reclaim` deletes it after the next checkpoint. Level 0 and the current and next
    /// slot of each level are left alone: processed soon, they free their part anyway.
    @discardableResult
    public func compact() throws -> Bool {
        if compactionTarget == nil {
            compactionTarget = compactionBoundary()
            compactionPlan = nil
            compactionSkipped = []
        }
        guard let boundary = compactionTarget else { return false }
        if let plan = compactionPlan {
            let s = slots[plan.slot]
            if s.isEmpty || s.start != plan.start || s.start < compactionHorizon(plan.slot / (2 * geometry.slotsPerLevel)) {
                compactionPlan = nil  // processed meanwhile (or about to be): nothing left to do there
            }
        }
        if compactionPlan == nil {
            guard let i = nextSlotToCompact(below: boundary) else {
                compactionTarget = nil
                return false
            }
            compactionPlan = CompactionPlan(slot: i, start: slots[i].start, walkFrom: slots[i].head)
        }
        if compactionPlan!.walkFrom != TimerEntry.noPosition {
            planCompaction(below: boundary)
        } else {
            try rewriteOldestChunk()
        }
        return true
    }

    /// Slots of `level` starting before this are processed soon: compaction leaves them.
    private func compactionHorizon(_ level: Int) -> Int64 {
        let span = geometry.slotSpan(level)
        return (time & ~(span - 1)) + 2 * span
    }

    private func nextSlotToCompact(below boundary: Int64) -> Int? {
        for o in 2..<occupancy.count where !occupancy[o].isEmpty {
            let horizon = compactionHorizon(o / 2)
            var s = occupancy[o].next(atOrAfter: 0)
            while let slot = s {
                let i = o * geometry.slotsPerLevel + slot
                if slots[i].oldest < boundary && slots[i].start >= horizon && !compactionSkipped.contains(i) { return i }
                s = occupancy[o].next(atOrAfter: slot + 1)
            }
        }
        return nil
    }

    private func planCompaction(below boundary: Int64) {
        var plan = compactionPlan!
        let i = plan.slot
        let w = walk(from: plan.walkFrom, floor: slots[i].cut, limit: compactionStepLimit)
        if w.damaged {
            // Nothing below the damage can be reached: leave the slot alone this pass.
            compactionSkipped.insert(i)
            compactionPlan = nil
            return
        }
        for e in w.entries {
            if plan.chunkHeads.isEmpty {
                if e.position < boundary || (e.kind == .link && e.target < boundary) {
                    plan.chunkHeads.append(e.position)
                    plan.entriesInLastChunk = 1
                } else {
                    plan.oldestAbove = min(plan.oldestAbove, e.position, e.kind == .cancel ? .max : e.target)
                }
            } else if plan.entriesInLastChunk == compactionStepLimit {
                plan.chunkHeads.append(e.position)
                plan.entriesInLastChunk = 1
            } else {
                plan.entriesInLastChunk += 1
            }
        }
        plan.walkFrom = w.entries.count < compactionStepLimit ? TimerEntry.noPosition : w.rest
        if plan.walkFrom == TimerEntry.noPosition && plan.chunkHeads.isEmpty {
            // Nothing of it below the boundary (a stale `oldest`): now it is exact.
            slots[i].oldest = min(plan.oldestAbove, plan.pushedOldest)
            compactionPlan = nil
            return
        }
        compactionPlan = plan
    }

    /// Rewrites the oldest chunk not rewritten yet, moving the cut up to just above it.
    private func rewriteOldestChunk() throws {
        var plan = compactionPlan!
        let i = plan.slot
        let level = i / (2 * geometry.slotsPerLevel)
        let start = slots[i].start
        let chunkHead = plan.chunkHeads.removeLast()
        let chunk = walk(from: chunkHead, floor: slots[i].cut).entries
        var pending = PendingAppend(at: log.endOffset, capacity: chunk.count)
        var moved: [(position: Int64, size: Int)] = []
        var copied = Set<Int64>()
        for e in chunk.reversed() {
            if e.kind == .cancel {
                addFrame(.cancel, level: level, start: start, dueAt: e.dueAt, reference: e.reference, to: &pending)
                continue
            }
            // Each message once (a cascade redone after a crash can have left two links).
            guard copied.insert(e.target).inserted else { continue }
            let m: (message: ScheduledMessage, id: Int64, size: Int)
            do {
                m = try reader.message(at: e.target)
            } catch {
                logger.error("scheduled message lost to damage; compaction goes on without it", metadata: ["position": "\(e.target)", "error": "\(error)"])
                if e.kind == .link, let size = reader.declaredSize(at: e.target) { moved.append((e.target, size)) }
                continue
            }
            if e.kind == .link { moved.append((e.target, m.size)) }
            try addMessage(m.message, originalID: m.id, level: level, start: start, to: &pending)
        }
        for p in pending.placed { plan.pushedOldest = min(plan.pushedOldest, p.position, p.target ?? .max) }
        let last = plan.chunkHeads.isEmpty
        let oldest = last ? min(plan.oldestAbove, plan.pushedOldest) : slots[i].oldest
        var marker: [UInt8] = []
        TimerEntry.append(
            .slotCompacted, level: level, slot: geometry.slot(level: level, time: start), dueAt: start, next: oldest,
            reference: chunkHead + 1, to: &marker)
        try commit(pending, marker: marker)  // on failure the plan is as it was: retried later
        finishCompaction(i, rewritten: chunk, movedTargets: moved, cut: chunkHead + 1, oldest: oldest)
        compactionPlan = last ? nil : plan
    }

    private func compactionBoundary() -> Int64? {
        // Only `reclaim` frees what compaction empties, and it needs checkpoints.
        guard checkpointPath != nil else { return nil }
        let start = log.startOffset
        let total = log.endOffset - start
        let liveBytes = self.liveBytes
        guard total > 2 * liveBytes, total - liveBytes >= compactionMinimumBytes else { return nil }
        let bases = log.segmentInfos.map(\.baseOffset).filter { $0 > start }
        return bases.first { $0 >= start + total / 2 } ?? bases.last
    }

    /// The state change a `slotCompacted` marker records, once its new entries are linked:
    /// the rewritten entries (and the messages links among them read) are dead, the cut
    /// hides them.
    private func finishCompaction(_ i: Int, rewritten: [TimerEntryFields], movedTargets: [(position: Int64, size: Int)], cut: Int64, oldest: Int64) {
        for e in rewritten { liveAdd(e.position, -Int32(e.size)) }
        for t in movedTargets { liveAdd(t.position, -Int32(t.size)) }
        slots[i].count = max(1, slots[i].count - Int32(rewritten.count))
        let rewrittenCancels = Int32(rewritten.reduce(0) { $0 + ($1.kind == .cancel ? 1 : 0) })
        assert(slots[i].cancels >= rewrittenCancels, "slot \(i) compacted \(rewrittenCancels) cancels of \(slots[i].cancels)")
        slots[i].cancels -= rewrittenCancels
        slots[i].cut = cut
        slots[i].oldest = oldest
    }

    // MARK: - Replay

    /// Slots are processed in order of start, so a marker for time D means every slot that
    /// starts before D was processed already; one still occupied lost its own marker to
    /// damage, and must not fire again.
    private func clearSlotsProcessedBefore(_ d: Int64, position: Int64) {
        var stale: [(level: Int, slot: Int, start: Int64)] = []
        forEachOccupied { level, slot, v in
            if v.start < d { stale.append((level, slot, v.start)) }
        }
        for s in stale {
            logger.error("slot behind a later marker was never marked processed; cleared", metadata: [
                "level": "\(s.level)", "slot": "\(s.slot)", "marker": "\(position)",
            ])
            clear(level: s.level, start: s.start)
        }
    }

    /// Rebuilds the slots from the log: each entry links into its slot, each marker clears
    /// one. Damage is reported by the log and skipped.
    /// Applies one replayed entry to the wheel's state.
    private func apply(_ e: TimerEntry) throws {
        guard e.level < geometry.levels, e.slot < geometry.slotsPerLevel else {
            logger.error("timer entry outside this wheel's geometry; skipped", metadata: [
                "position": "\(e.position)", "level": "\(e.level)", "slot": "\(e.slot)", "geometry": "\(geometry)",
            ])
            return
        }
        switch e.kind {
        case .message, .movedMessage, .link, .cancel:
            var start = e.dueAt & ~(geometry.slotSpan(e.level) - 1)
            if e.kind.carriesMessage {
                // Placed at `placedAt`: the wheel had reached that time; an overdue
                // message sits in the level-0 slot of that time.
                time = max(time, e.placedAt)
                if e.dueAt < e.placedAt { start = e.placedAt }
            }
            guard geometry.slot(level: e.level, time: start) == e.slot else {
                logger.error("timer entry names a slot its due time does not fall in; skipped", metadata: ["position": "\(e.position)"])
                return
            }
            let i = index(e.level, start)
            if !slots[i].isEmpty && slots[i].start != start {
                logger.error("timer entry links into a slot of another span; list reset", metadata: ["position": "\(e.position)"])
                clear(level: e.level, start: slots[i].start)
            }
            link(level: e.level, position: e.position, start: start, dueAt: e.dueAt, cancel: e.kind == .cancel, target: e.kind == .cancel ? nil : e.target)
            liveAdd(e.position, Int32(e.bytes.count))
        case .slotCleared, .slotFired:
            // Retire what the processing retired: walk the list it processed.
            let processed = index(e.level, e.dueAt)
            if !slots[processed].isEmpty && slots[processed].start == e.dueAt {
                retire(walk(processed).entries, fired: e.kind == .slotFired)
                clear(level: e.level, start: e.dueAt)
            }
            if e.kind == .slotFired {
                nextFireSequence = max(nextFireSequence, UInt64(e.reference) + 1)
            }
            time = max(time, e.dueAt)
            clearSlotsProcessedBefore(e.dueAt, position: e.position)
        case .fireSequence:
            nextFireSequence = max(nextFireSequence, UInt64(e.reference) + 1)
            time = max(time, e.dueAt)
        case .handOver:
            replayedHandOver = (UInt64(e.reference), e.dueAt)
        case .cascadeProgress:
            // Part of a slot cascaded ahead of time: the entries from its head down
            // to `reference` (exclusive; -1: all) moved one level down. The time
            // does not move: the slot lies ahead.
            let i = index(e.level, e.dueAt)
            guard !slots[i].isEmpty && slots[i].start == e.dueAt else {
                logger.error("cascade progress for a slot that is empty; skipped", metadata: ["position": "\(e.position)"])
                return
            }
            dropHead(level: e.level, start: e.dueAt, through: e.reference)
            // It ran while that slot was the next one of its level: the wheel time
            // was at least one slot before it (restored so that placements after
            // the reopen use the same pages as before the crash).
            time = max(time, e.dueAt - geometry.slotSpan(e.level))
        case .slotMoved, .slotMovedAhead:
            // A whole list moved down (`moveWhole`): to the slot of level `next` starting
            // at `reference`, empty until then.
            let i = index(e.level, e.dueAt)
            let target = (level: Int(e.next), start: e.reference)
            guard !slots[i].isEmpty && slots[i].start == e.dueAt, (0..<e.level).contains(target.level), target.start >= 0,
                target.start < geometry.limit, target.start & (geometry.slotSpan(target.level) - 1) == 0,
                slots[index(target.level, target.start)].isEmpty
            else {
                logger.error("slot move that does not fit the wheel's state; skipped", metadata: ["position": "\(e.position)"])
                return
            }
            relink(level: e.level, start: e.dueAt, to: target)
            if e.kind == .slotMoved {
                // As a cascade at the slot's start: the wheel time reached it.
                time = max(time, e.dueAt)
                clearSlotsProcessedBefore(e.dueAt, position: e.position)
            } else {
                // As a cascade ahead: the wheel time was at least one slot before it.
                time = max(time, e.dueAt - geometry.slotSpan(e.level))
            }
        case .slotCompacted:
            // The rewritten entries were linked just before: what lies below the
            // new cut is dead, and so is every message a link there read.
            let i = index(e.level, e.dueAt)
            guard !slots[i].isEmpty && slots[i].start == e.dueAt else {
                logger.error("compaction marker for a slot that is empty; skipped", metadata: ["position": "\(e.position)"])
                return
            }
            // The replaced entries: the list's tail from just below the new cut down to
            // the old one.
            let rewritten = walk(from: e.reference - 1, floor: slots[i].cut).entries
            // As the compaction step did: each message once, in the order it went.
            var seen = Set<Int64>()
            let moved = rewritten.reversed().compactMap { r -> (position: Int64, size: Int)? in
                guard r.kind != .cancel, seen.insert(r.target).inserted, r.kind == .link else { return nil }
                return ((try? reader.message(at: r.target).size) ?? reader.declaredSize(at: r.target)).map { (r.target, $0) }
            }
            finishCompaction(i, rewritten: rewritten, movedTargets: moved, cut: e.reference, oldest: e.next)
        }
    }

    private func replay(from start: Int64) throws {
        var at = start
        var group: [TimerEntry] = []
        while true {
            let entries: [TimerEntry]
            do {
                entries = try log.read(from: at, maxBytes: 4 << 20)
            } catch let error as StoreError where error.code == .corruptBatch && error.resumeOffset != nil {
                logger.error("timer log damage skipped during replay", metadata: ["error": "\(error)"])
                at = error.resumeOffset!
                continue
            }
            guard let last = entries.last else { break }
            recovery.replayedEntries += entries.count
            for e in entries {
                // An append's entries count only together: applied when its last arrives.
                group.append(e)
                if e.continues { continue }
                for g in group { try apply(g) }
                group.removeAll(keepingCapacity: true)
            }
            at = last.position + Int64(last.bytes.count)
        }
        if let torn = group.first {
            // The last append was cut short by a crash: none of it counts, and it goes, so
            // that what is appended next does not follow half an append.
            logger.warning("an append to the timer log cut short by a crash was dropped", metadata: [
                "position": "\(torn.position)", "entries": "\(group.count)",
            ])
            try log.truncate(to: torn.position)
        }
    }
}

/// Reads a whole small file (a checkpoint), nil if it does not exist.
func readSmallFile(_ path: String) throws -> [UInt8]? {
    guard let file = fopen(path, "rb") else { return nil }
    defer { fclose(file) }
    var out: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 64 << 10)
    while true {
        let n = fread(&chunk, 1, chunk.count, file)
        if n > 0 { out.append(contentsOf: chunk[0..<n]) }
        if n < chunk.count { break }
    }
    return out
}

/// Messages handed over by a wheel since its tally was last taken, reduced to what the
/// firing loop reports: their number and the earliest due time among them (the most
/// overdue message decides the worst lateness). Two integers per hand-over, whatever its size.
public struct FiredTally: Sendable, Equatable {
    public var messages = 0
    /// Milliseconds since the epoch; nil while `messages` is 0.
    public var earliestDue: Int64?

    public init() {}

    mutating func add(_ fired: [FiredMessage]) {
        guard var earliest = fired.first?.dueAt else { return }
        // Slots fire in time order, but a message scheduled already overdue sits in the
        // current slot with an earlier due time: look at every one.
        for f in fired where f.dueAt < earliest { earliest = f.dueAt }
        messages += fired.count
        earliestDue = min(earliestDue ?? earliest, earliest)
    }
}
