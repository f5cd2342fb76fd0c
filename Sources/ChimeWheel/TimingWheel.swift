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
/// `slotCleared` marker is written. When a level-0 slot falls due its list is walked, the
/// messages ordered by publish position (their own position), cancelled ones dropped, the
/// rest handed to the destination, and a `slotFired` marker written. Because every change
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
        var isEmpty: Bool { head == TimerEntry.noPosition }
    }

    public let geometry: WheelGeometry
    public let log: TimerLog
    private let destination: FireDestination
    private let logger: Logger
    private var slots: [Slot]
    private var occupancy: [OccupancyBitmap]
    /// Every message due before `time` has been handed over; the wheel never moves back.
    public private(set) var time: Int64
    private var nextFireSequence: UInt64 = 1
    private let reader: TimerEntryReader
    /// Live timer-log entries per 1 MiB chunk of address space: messages until they fire
    /// (or are dropped as cancelled), links and cancels until their slot is processed.
    /// A prefix of chunks at zero, below the checkpoint, can be deleted.
    /// Dense along the log: `live[i]` counts chunk `liveBase + i` (an array, not a map: it
    /// is touched for every entry scheduled, cascaded and fired).
    private var live: [Int32] = []
    private var liveBase: Int64 = 0
    /// The non-zero live counts by chunk (for the checkpoint and tests).
    var liveChunks: [Int64: Int32] {
        var out: [Int64: Int32] = [:]
        for (i, n) in live.enumerated() where n > 0 { out[liveBase + Int64(i)] = n }
        return out
    }
    /// log2 of the accounting chunk (20: 1 MiB).
    let chunkShift: Int64
    /// The log position of the last checkpoint written or loaded: replay never reads below.
    private var checkpointPosition: Int64?
    /// Hand-overs to this destination at or below this number already happened.
    private var appliedFireSequence: UInt64

    /// Where `checkpoint()` writes and `init` looks; nil for no checkpoints.
    public let checkpointPath: String?
    /// How the last open rebuilt the wheel.
    public private(set) var recovery = Recovery()

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
        destination: FireDestination, reclaimChunkBytes: Int = 1 << 20, logger: Logger
    ) throws {
        precondition(reclaimChunkBytes > 0 && reclaimChunkBytes & (reclaimChunkBytes - 1) == 0, "a power of two")
        chunkShift = Int64(reclaimChunkBytes.trailingZeroBitCount)
        self.log = log
        self.geometry = geometry
        self.checkpointPath = checkpointPath
        self.destination = destination
        self.logger = logger
        reader = TimerEntryReader(log: log)
        slots = Array(repeating: Slot(), count: geometry.levels * 2 * geometry.slotsPerLevel)
        occupancy = Array(repeating: OccupancyBitmap(slots: geometry.slotsPerLevel), count: geometry.levels * 2)
        time = 0
        appliedFireSequence = destination.lastFireSequence ?? 0
        var start = log.startOffset
        if let checkpoint = loadCheckpoint() {
            for s in checkpoint.slots {
                slots[index(s.level, s.start)] = Slot(head: s.head, start: s.start, count: s.count, cancels: s.cancels)
                occupancy[page(s.level, s.start)].insert(s.slot)
            }
            time = checkpoint.time
            nextFireSequence = checkpoint.nextFireSequence
            start = checkpoint.logPosition
            loadLive(checkpoint.liveChunks)
            checkpointPosition = checkpoint.logPosition
            recovery.fromCheckpoint = true
        }
        try replay(from: start)
        try completeAppliedHandOvers()
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
            throw StoreError(
                .invalidArgument,
                "the destination has applied hand-over \(appliedFireSequence) but the timer log only reaches \(nextFireSequence - 1); is this the destination of this timer log?")
        }
        while nextFireSequence <= appliedFireSequence, let next = nextExpiration() {
            time = max(time, next.start)
            if next.level == 0 {
                _ = try fire(start: next.start)
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
        guard let path = checkpointPath else { return }
        try log.flush()
        var states: [WheelCheckpoint.SlotState] = []
        forEachOccupied { level, slot, v in
            states.append(.init(level: level, slot: slot, head: v.head, start: v.start, count: v.count, cancels: v.cancels))
        }
        let checkpoint = WheelCheckpoint(
            geometry: geometry, logPosition: log.endOffset, time: time, nextFireSequence: nextFireSequence, slots: states,
            liveChunks: liveChunks, chunkShift: chunkShift)
        try Directory.writeAtomically(checkpoint.encode(), to: path, calls: log.fileSystemCalls)
        checkpointPosition = checkpoint.logPosition
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
        slots.reduce(0) { $0 + Int($1.count) - 2 * Int($1.cancels) }
    }

    /// Bytes of in-memory wheel state: fixed by the geometry, not by what is pending.
    public var stateBytes: Int {
        slots.count * MemoryLayout<Slot>.stride + occupancy.count * max(8, geometry.slotsPerLevel / 8)
    }

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
        live[i] = max(0, live[i] + delta)
    }

    private func loadLive(_ chunks: [Int64: Int32]) {
        live = []
        for (chunk, n) in chunks.sorted(by: { $0.key < $1.key }) { liveAdd(chunk << chunkShift, n) }
    }

    /// What processing a slot retires: a cascade its links and cancels (messages stay,
    /// referenced by the new links); a fire everything, and each target message once.
    /// `sortedTargets`: for a fire, its targets in ascending order (duplicates allowed);
    /// computed from `entries` when nil.
    private func retire(_ entries: [TimerEntryFields], fired: Bool, sortedTargets: [Int64]? = nil) {
        for e in entries where e.kind != .message { liveAdd(e.position, -1) }
        guard fired else { return }
        let targets = sortedTargets ?? entries.compactMap { $0.kind == .cancel ? nil : $0.target }.sorted()
        var previous: Int64 = -1
        for t in targets where t != previous {
            liveAdd(t, -1)
            previous = t
        }
    }

    private func link(level: Int, position: Int64, start: Int64, cancel: Bool) {
        let i = index(level, start)
        if slots[i].isEmpty {
            slots[i].start = start
            occupancy[page(level, start)].insert(geometry.slot(level: level, time: start))
        }
        assert(slots[i].start == start, "a slot holds one span at a time")
        slots[i].head = position
        slots[i].count += 1
        if cancel { slots[i].cancels += 1 }
    }

    private func clear(level: Int, start: Int64) {
        slots[index(level, start)] = Slot()
        occupancy[page(level, start)].remove(geometry.slot(level: level, time: start))
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

    /// The slot an entry due at `due` sat in before `placement` sent it one level down: the
    /// next slot of the level above, still being cascaded ahead. Nil when not redirected.
    private func slotAbove(_ due: Int64) -> (level: Int, start: Int64)? {
        let level = geometry.level(now: time, due: due)
        guard level > 0, due > time else { return nil }
        let span = geometry.slotSpan(level)
        let start = due & ~(span - 1)
        return start == (time & ~(span - 1)) + span ? (level, start) : nil
    }

    /// Deletes the oldest timer-log segments that hold nothing live and lie wholly below
    /// the last checkpoint (so replay never needs them). Only with checkpoints. A message
    /// scheduled far ahead keeps its segment, and the ones after it, until it fires.
    @discardableResult
    public func reclaim() throws -> [Int64] {
        guard checkpointPath != nil, let checkpointed = checkpointPosition else { return [] }
        // Leading dead chunks are forgotten as they go.
        let dead = live.prefix { $0 == 0 }.count
        live.removeFirst(dead)
        liveBase += Int64(dead)
        let firstLive = live.isEmpty ? log.endOffset : liveBase << chunkShift
        return try log.removeSegments(endingAtOrBefore: min(firstLive, checkpointed))
    }

    // MARK: - Schedule and cancel

    /// Schedules messages; returns their ids (timer-log positions), in order. One append
    /// for the whole call. A due time in the past fires at the next `advance`.
    @discardableResult
    public func schedule(_ messages: [ScheduledMessage]) throws -> [Int64] {
        guard !messages.isEmpty else { return [] }
        var entries: [[UInt8]] = []
        entries.reserveCapacity(messages.count)
        var ids: [Int64] = []
        ids.reserveCapacity(messages.count)
        var position = log.endOffset
        // Heads change as entries of this call link to each other: track them locally.
        var heads: [Int: Int64] = [:]
        var placements: [(level: Int, slot: Int, start: Int64)] = []
        for m in messages {
            guard m.dueAt >= 0, m.dueAt < geometry.limit else {
                throw StoreError(.invalidArgument, "due time \(m.dueAt) ms is outside 0..<\(geometry.limit)")
            }
            let p = placement(m.dueAt)
            let i = index(p.level, p.start)
            var bytes: [UInt8] = []
            TimerEntry.appendMessage(m, level: p.level, slot: p.slot, next: heads[i] ?? slots[i].head, placedAt: time, to: &bytes)
            heads[i] = position
            ids.append(position)
            placements.append(p)
            position += Int64(bytes.count)
            entries.append(bytes)
        }
        let result = try log.append(contentsOf: entries)
        precondition(result.baseOffset == ids[0], "the wheel is the timer log's only writer")
        for (k, p) in placements.enumerated() {
            link(level: p.level, position: ids[k], start: p.start, cancel: false)
            liveAdd(ids[k], 1)
        }
        return ids
    }

    /// Cancels a scheduled message by id: a tombstone linked into the message's current
    /// slot, so the fire drops it. Only a message still pending can be cancelled: one that
    /// fired, was cancelled already, or never existed is an `invalidArgument` error. The
    /// check walks the one slot the message can be in.
    public func cancel(_ id: Int64) throws {
        let entry: TimerEntryFields
        do {
            entry = try reader.fields(at: id)
        } catch let error as StoreError where error.code == .offsetOutOfRange || error.code == .corruptBatch {
            throw StoreError(.invalidArgument, "no scheduled message has id \(id)")
        }
        guard entry.kind == .message else { throw StoreError(.invalidArgument, "no scheduled message has id \(id)") }
        // The message is in the slot of its due time, or, while that slot is cascaded
        // ahead, possibly still in the slot above it.
        let p = placement(entry.dueAt)
        var candidates = [(level: p.level, start: p.start)]
        if let above = slotAbove(entry.dueAt) { candidates.append(above) }
        var home: (level: Int, start: Int64)? = nil
        var cancelled = false
        for c in candidates {
            let s = slots[index(c.level, c.start)]
            guard !s.isEmpty && s.start == c.start else { continue }
            for e in try walk(from: s.head) where e.target == id {
                if e.kind == .cancel { cancelled = true } else { home = c }
            }
        }
        guard let home, !cancelled else {
            throw StoreError(.invalidArgument, "message \(id) is not pending (it fired or was cancelled)")
        }
        let i = index(home.level, home.start)
        var bytes: [UInt8] = []
        TimerEntry.append(
            .cancel, level: home.level, slot: geometry.slot(level: home.level, time: home.start),
            // A level-0 tombstone carries its slot's start (it differs from the due time
            // of a message placed overdue); a higher one the due time, to be cascaded by.
            dueAt: home.level == 0 ? home.start : entry.dueAt, next: slots[i].head, reference: id, to: &bytes)
        let at = try log.append(bytes).baseOffset
        link(level: home.level, position: at, start: home.start, cancel: true)
        liveAdd(at, 1)
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
                fired += try fire(start: next.start)
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
        let i = index(level, start)
        var taken: [TimerEntryFields] = []
        taken.reserveCapacity(min(maxEntries, Int(slots[i].count)))
        var cursor = slots[i].head
        while cursor != TimerEntry.noPosition && taken.count < max(1, maxEntries) {
            do {
                let e = try reader.fields(at: cursor)
                taken.append(e)
                cursor = e.next
            } catch let error as StoreError where error.code == .corruptBatch || error.code == .offsetOutOfRange {
                logger.error("timer list broken by damage; older entries of this slot are lost", metadata: [
                    "position": "\(cursor)", "error": "\(error)",
                ])
                cursor = TimerEntry.noPosition
            }
        }
        let lower = level - 1
        var bytes: [[UInt8]] = []
        bytes.reserveCapacity(taken.count + 1)
        var position = log.endOffset
        var heads: [Int: Int64] = [:]
        var placed: [(start: Int64, position: Int64, cancel: Bool)] = []
        placed.reserveCapacity(taken.count)
        for e in taken.reversed() {
            let lowerStart = e.dueAt & ~(geometry.slotSpan(lower) - 1)
            let j = index(lower, lowerStart)
            var out: [UInt8] = []
            let kind: TimerEntry.Kind = e.kind == .cancel ? .cancel : .link
            TimerEntry.append(
                kind, level: lower, slot: geometry.slot(level: lower, time: lowerStart), dueAt: e.dueAt, next: heads[j] ?? slots[j].head,
                reference: e.target, to: &out)
            heads[j] = position
            placed.append((lowerStart, position, kind == .cancel))
            position += Int64(out.count)
            bytes.append(out)
        }
        var marker: [UInt8] = []
        TimerEntry.append(
            .cascadeProgress, level: level, slot: geometry.slot(level: level, time: start), dueAt: start, next: TimerEntry.noPosition,
            reference: cursor, to: &marker)
        bytes.append(marker)
        let result = try log.append(contentsOf: bytes)
        precondition(result.baseOffset == (placed.first?.position ?? result.baseOffset), "the wheel is the timer log's only writer")
        try dropHead(level: level, start: start, through: cursor, dropped: taken)
        for p in placed {
            link(level: lower, position: p.position, start: p.start, cancel: p.cancel)
            liveAdd(p.position, 1)
        }
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
    private func dropHead(level: Int, start: Int64, through cursor: Int64, dropped known: [TimerEntryFields]? = nil) throws {
        let i = index(level, start)
        var dropped = known ?? []
        if known == nil {
            var at = slots[i].head
            while at != TimerEntry.noPosition && at != cursor {
                do {
                    let e = try reader.fields(at: at)
                    dropped.append(e)
                    at = e.next
                } catch let error as StoreError where error.code == .corruptBatch || error.code == .offsetOutOfRange {
                    logger.error("timer list broken by damage before a cascade-ahead cursor", metadata: ["position": "\(at)", "error": "\(error)"])
                    break
                }
            }
        }
        retire(dropped, fired: false)
        let cancels = Int32(dropped.reduce(0) { $0 + ($1.kind == .cancel ? 1 : 0) })
        if cursor == TimerEntry.noPosition {
            clear(level: level, start: start)
        } else {
            slots[i].head = cursor
            slots[i].count = max(1, slots[i].count - Int32(dropped.count))
            slots[i].cancels = max(0, slots[i].cancels - cancels)
        }
    }

    /// Walks a slot's list (newest first); returns the entries. A damaged entry ends the
    /// walk: what it linked to cannot be reached, which is reported, not hidden, and the
    /// wheel goes on with the rest.
    private func walk(from head: Int64) throws -> [TimerEntryFields] {
        var out: [TimerEntryFields] = []
        var at = head
        while at != TimerEntry.noPosition {
            do {
                let e = try reader.fields(at: at)
                out.append(e)
                at = e.next
            } catch let error as StoreError where error.code == .corruptBatch || error.code == .offsetOutOfRange {
                logger.error("timer list broken by damage; older entries of this slot are lost", metadata: [
                    "position": "\(at)", "error": "\(error)",
                ])
                break
            }
        }
        return out
    }

    private func cascade(level: Int, start: Int64) throws {
        let s = slots[index(level, start)]
        let entries = try walk(from: s.head)
        var bytes: [[UInt8]] = []
        bytes.reserveCapacity(entries.count + 1)
        var position = log.endOffset
        var heads: [Int: Int64] = [:]
        var placed: [(level: Int, slot: Int, start: Int64, position: Int64, cancel: Bool)] = []
        // Oldest first, so each lower list keeps publish order from its tail.
        for e in entries.reversed() {
            let p = placement(e.dueAt)
            precondition(p.level < level, "a cascade moves entries down")
            let i = index(p.level, p.start)
            var out: [UInt8] = []
            let kind: TimerEntry.Kind = e.kind == .cancel ? .cancel : .link
            TimerEntry.append(kind, level: p.level, slot: p.slot, dueAt: e.dueAt, next: heads[i] ?? slots[i].head, reference: e.target, to: &out)
            heads[i] = position
            placed.append((p.level, p.slot, p.start, position, kind == .cancel))
            position += Int64(out.count)
            bytes.append(out)
        }
        var marker: [UInt8] = []
        TimerEntry.append(
            .slotCleared, level: level, slot: geometry.slot(level: level, time: start), dueAt: s.start, next: TimerEntry.noPosition,
            reference: TimerEntry.noPosition, to: &marker)
        bytes.append(marker)
        // Links and marker land together or not at all.
        let result = try log.append(contentsOf: bytes)
        precondition(result.baseOffset == (placed.first?.position ?? result.baseOffset), "the wheel is the timer log's only writer")
        clear(level: level, start: start)
        retire(entries, fired: false)
        for p in placed {
            link(level: p.level, position: p.position, start: p.start, cancel: p.cancel)
            liveAdd(p.position, 1)
        }
    }

    /// Hands a level-0 slot's messages over, in publish order without cancelled ones.
    private func fire(start: Int64) throws -> Int {
        let s = slots[index(0, start)]
        let entries = try walk(from: s.head)
        var cancelled = Set<Int64>()
        var targets: [Int64] = []
        targets.reserveCapacity(entries.count)
        for e in entries {
            if e.kind == .cancel { cancelled.insert(e.reference) } else { targets.append(e.target) }
        }
        targets.sort()
        var fired: [FiredMessage] = []
        fired.reserveCapacity(targets.count)
        var previous: Int64 = -1
        for t in targets where t != previous && !cancelled.contains(t) {
            previous = t
            do {
                fired.append(FiredMessage(id: t, message: try reader.message(at: t)))
            } catch let error as StoreError
                where error.code == .corruptBatch || error.code == .malformedBatch || error.code == .offsetOutOfRange || error.code == .invalidArgument
            {
                logger.error("scheduled message lost to damage", metadata: ["id": "\(t)", "error": "\(error)"])
            }
        }
        let sequence = nextFireSequence
        if sequence > appliedFireSequence {
            if !fired.isEmpty {
                // Everything that led to this hand-over must be on disk before the
                // destination records its number, or a crash could renumber the fires.
                // (Under `never` the log promises nothing across a power loss anyway.)
                if log.configuration.durability != .never { try log.flush() }
                try destination.deliver(fired, fireSequence: sequence)
                appliedFireSequence = sequence
            }
        } else {
            // Applied before a crash that came before the marker: complete the marker only.
            logger.info("hand-over already applied; completing its marker", metadata: ["sequence": "\(sequence)", "slotStart": "\(s.start)"])
        }
        var marker: [UInt8] = []
        TimerEntry.append(
            .slotFired, level: 0, slot: geometry.slot(level: 0, time: start), dueAt: s.start, next: TimerEntry.noPosition,
            reference: Int64(sequence), to: &marker)
        try log.append(marker)
        nextFireSequence = sequence + 1
        clear(level: 0, start: start)
        retire(entries, fired: true, sortedTargets: targets)
        return sequence > appliedFireSequence ? fired.count : 0  // re-applied hand-overs count 0
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
    private func replay(from start: Int64) throws {
        var at = start
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
                guard e.level < geometry.levels, e.slot < geometry.slotsPerLevel else {
                    logger.error("timer entry outside this wheel's geometry; skipped", metadata: [
                        "position": "\(e.position)", "level": "\(e.level)", "slot": "\(e.slot)", "geometry": "\(geometry)",
                    ])
                    continue
                }
                switch e.kind {
                case .message, .link, .cancel:
                    var start = e.dueAt & ~(geometry.slotSpan(e.level) - 1)
                    if e.kind == .message {
                        // Placed at `placedAt`: the wheel had reached that time; an overdue
                        // message sits in the level-0 slot of that time.
                        time = max(time, e.placedAt)
                        if e.dueAt < e.placedAt { start = e.placedAt }
                    }
                    guard geometry.slot(level: e.level, time: start) == e.slot else {
                        logger.error("timer entry names a slot its due time does not fall in; skipped", metadata: ["position": "\(e.position)"])
                        continue
                    }
                    let i = index(e.level, start)
                    if !slots[i].isEmpty && slots[i].start != start {
                        logger.error("timer entry links into a slot of another span; list reset", metadata: ["position": "\(e.position)"])
                        clear(level: e.level, start: slots[i].start)
                    }
                    link(level: e.level, position: e.position, start: start, cancel: e.kind == .cancel)
                    liveAdd(e.position, 1)
                case .slotCleared, .slotFired:
                    // Retire what the processing retired: walk the list it processed.
                    let processed = index(e.level, e.dueAt)
                    if !slots[processed].isEmpty && slots[processed].start == e.dueAt {
                        retire(try walk(from: slots[processed].head), fired: e.kind == .slotFired)
                        clear(level: e.level, start: e.dueAt)
                    }
                    if e.kind == .slotFired {
                        nextFireSequence = max(nextFireSequence, UInt64(e.reference) + 1)
                    }
                    time = max(time, e.dueAt)
                    clearSlotsProcessedBefore(e.dueAt, position: e.position)
                case .cascadeProgress:
                    // Part of a slot cascaded ahead of time: the entries from its head down
                    // to `reference` (exclusive; -1: all) moved one level down. The time
                    // does not move: the slot lies ahead.
                    let i = index(e.level, e.dueAt)
                    guard !slots[i].isEmpty && slots[i].start == e.dueAt else {
                        logger.error("cascade progress for a slot that is empty; skipped", metadata: ["position": "\(e.position)"])
                        continue
                    }
                    try dropHead(level: e.level, start: e.dueAt, through: e.reference)
                }
            }
            at = last.position + Int64(last.bytes.count)
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
