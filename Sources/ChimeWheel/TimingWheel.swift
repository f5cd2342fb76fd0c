import ChimeStore
import Logging

#if canImport(Glibc)
import Glibc
#endif

/// A hierarchical timing wheel that keeps only list heads in memory.
///
/// Every scheduled message is a `message` entry in the timer log, linked into the list of
/// its slot: the new entry's `next` is the slot's head, then the head becomes the new
/// entry's position. Memory is one `WheelSlot` per slot of every level, whatever the
/// number of pending messages. When time reaches a higher-level slot its list is walked
/// and each entry re-linked one level down with a 48-byte `link` (bodies are never
/// copied), then a `slotCleared` marker is written — or, when every entry falls due in the
/// same millisecond, the whole list moves down with one `slotMoved` marker (`moveWhole`).
/// When a level-0 slot falls due its list is walked, the messages ordered by publish
/// position (their own position), cancelled ones dropped, the rest handed to the
/// destination, and a `slotFired` marker written.
///
/// This class is the I/O shell: it decides what to append, appends it, syncs, delivers and
/// checkpoints. The state is a `WheelState`, changed only by `WheelState.apply` of the
/// entries appended — the same transition replay uses — so the wheel at any log position
/// is a pure function of the log up to there. Hand-overs are in TimingWheel+HandOver.swift,
/// compaction in TimingWheel+Compaction.swift.
///
/// Not thread-safe: the partition's owner drives it (schedule, cancel, advance).
public final class TimingWheel {
    public let geometry: WheelGeometry
    public let log: TimerLog
    let destination: FireDestination
    let logger: Logger
    var state: WheelState
    let walker: TimerListWalker
    var reader: TimerEntryReader { walker.reader }
    /// log2 of the live-accounting chunk (20: 1 MiB).
    let chunkShift: Int64
    /// The log position of the last checkpoint written or loaded: replay never reads below.
    var checkpointPosition: Int64?
    /// The first live position when that checkpoint was taken: its live counts, which a
    /// reopen starts from, must not refer to deleted bytes either.
    var checkpointFirstLive: Int64?
    /// Hand-overs to this destination at or below this number already happened.
    var appliedFireSequence: UInt64
    /// Compaction starts when the timer log holds more than twice its live bytes and at
    /// least this many bytes could be freed.
    public let compactionMinimumBytes: Int64
    /// The position below which the running compaction pass frees the log; nil between passes.
    var compactionTarget: Int64?
    /// The slot the running pass is compacting, and how far it got.
    var compactionPlan: CompactionPlan?
    /// Slots the running pass leaves alone (damage in their list).
    var compactionSkipped = Set<SlotAddress>()
    /// The most entries one compaction step walks or rewrites (one pause of the firing
    /// loop: about a microsecond per entry walked, a few per entry copied).
    public var compactionStepLimit = 2_048
    /// Where `checkpoint()` writes and `init` looks; nil for no checkpoints.
    public let checkpointPath: String?
    /// How the last open rebuilt the wheel.
    public private(set) var recovery = Recovery()
    /// Most entries one hand-over gathers from consecutive due slots (a catch-up after a
    /// long stop is handed over in pieces of about this size).
    public var handOverEntryLimit = 65_536
    /// What the hand-overs since the last `takeFiredTally()` delivered. The wheel has no
    /// clock: whoever drives it in time (`FiringLoop`) turns this into lateness.
    var firedTally = FiredTally()
    /// The next fire, read ahead (`prepareNextFire`), and how many fires used what was
    /// read ahead for them.
    var prepared: PreparedFire?
    public internal(set) var firesReadAhead = 0

    /// Every message due before `time` has been handed over; the wheel never moves back.
    public var time: Int64 { state.time }

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
        walker = TimerListWalker(reader: TimerEntryReader(log: log), logger: logger)
        state = WheelState(geometry: geometry, chunkShift: chunkShift, logger: logger)
        appliedFireSequence = destination.lastFireSequence ?? 0
        var start = log.startOffset
        if let checkpoint = loadCheckpoint() {
            state.load(checkpoint)
            start = checkpoint.logPosition
            checkpointPosition = checkpoint.logPosition
            checkpointFirstLive = checkpoint.liveChunks.keys.min().map { $0 << chunkShift } ?? checkpoint.logPosition
            recovery.fromCheckpoint = true
        }
        try replay(from: start)
        try completeAppliedHandOvers()
        try redoBegunHandOver()
        state.checkInvariants()
    }

    /// Replays the log from `start`: every entry through `WheelState.apply`. Damage is
    /// reported by the log and skipped.
    private func replay(from start: Int64) throws {
        var group: [TimerEntry] = []
        try log.scan(from: start, damaged: { [logger] error in
            logger.error("timer log damage skipped during replay", metadata: ["error": "\(error)"])
        }) { entries, _ in
            recovery.replayedEntries += entries.count
            for e in entries {
                // An append's entries count only together: applied when its last arrives.
                group.append(e)
                if e.continues { continue }
                for g in group { state.apply(TimerEntryFields(g), source: walker) }
                group.removeAll(keepingCapacity: true)
            }
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

    func loadCheckpoint() -> WheelCheckpoint? {
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
        state.forEachOccupied { address, slot, v in
            states.append(
                .init(
                    level: address.level, slot: slot, head: v.head, start: v.start, count: v.count, cancels: v.cancels, cut: v.cut,
                    oldest: v.oldest))
        }
        let checkpoint = WheelCheckpoint(
            geometry: geometry, logPosition: log.endOffset, time: state.time, nextFireSequence: state.nextFireSequence,
            slots: states, liveChunks: liveChunks, chunkShift: chunkShift)
        let firstLive = state.live.firstLivePosition ?? checkpoint.logPosition
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

    /// The state a replay of the whole log (no checkpoint) builds: what the running wheel
    /// must agree with, apart from what the log does not record (the wheel time past its
    /// last entry, compaction's tightened `oldest` bounds). For tests.
    func stateReplayedFromLog() throws -> WheelState {
        var replayed = WheelState(geometry: geometry, chunkShift: chunkShift, logger: logger)
        try log.scan(from: log.startOffset) { entries, _ in
            for e in entries { replayed.apply(TimerEntryFields(e), source: walker) }
        }
        return replayed
    }

    // MARK: - Reading the state

    /// Messages scheduled and neither fired nor cancelled.
    public var pendingCount: Int { state.pendingCount }

    /// Bytes of in-memory wheel state: the slot pages in use (at most all of the geometry's,
    /// however many messages are pending; none while the wheel is empty) and the bitmaps.
    public var stateBytes: Int {
        state.slots.allocatedBytes + state.occupancy.count * max(8, geometry.slotsPerLevel / 8)
    }

    /// Slot pages allocated now (see `SlotTable`).
    public var slotPagesInUse: Int { state.slots.allocatedPages }

    /// Occupied slots per level.
    public var occupiedSlots: [Int] { state.occupiedSlots }

    /// The start of the next slot to process (fire or cascade), nil when empty. The firing
    /// loop sleeps until then.
    public var nextDue: Int64? { state.nextExpiration()?.start }

    /// Live bytes of the timer log, as counted for reclaiming.
    public var liveBytes: Int64 { state.live.total }

    /// The non-zero live byte counts by chunk (for the checkpoint and tests).
    var liveChunks: [Int64: Int32] { state.live.chunks }

    /// Checks the state's invariants (debug builds; see `WheelState.checkInvariants`).
    public func checkInvariants() { state.checkInvariants() }

    /// Deletes the oldest timer-log segments that hold nothing live and lie wholly below
    /// the last checkpoint (so replay never needs them). Only with checkpoints. A message
    /// scheduled far ahead keeps its segment, and the ones after it, until it fires.
    /// `inBackground`: see `SegmentLog.removeSegments` (the firing loop's choice).
    @discardableResult
    public func reclaim(inBackground: Bool = false) throws -> [Int64] {
        guard checkpointPath != nil, let checkpointed = checkpointPosition else { return [] }
        let firstLive = state.forgetDeadChunks() ?? log.endOffset
        let end = min(firstLive, checkpointed, checkpointFirstLive ?? checkpointed)
        guard log.segmentInfos.dropLast().contains(where: { $0.nextOffset <= end }) else { return [] }
        // The segments going may hold the last "slot fired" marker, the only record of the
        // fire numbering apart from the checkpoint: restate it first, durably.
        if state.nextFireSequence > 1 {
            let marker = encodeMarker(
                .fireSequence, level: 0, start: state.time, next: TimerEntry.noPosition, reference: Int64(state.nextFireSequence - 1))
            apply([marker], at: try append([marker]))
            try log.flush()
        }
        return try log.removeSegments(endingAtOrBefore: end, inBackground: inBackground)
    }

    // MARK: - Appending

    /// An entry encoded for an append, with the fields `WheelState.apply` reads (its
    /// position is where the append will put it).
    struct EncodedEntry {
        var bytes: [UInt8]
        var fields: TimerEntryFields
    }

    /// Entries being prepared for one append: where they will land, and the slot heads as
    /// they will be once they do (entries of one call link to each other).
    struct PendingAppend {
        let start: Int64
        var entries: [EncodedEntry] = []
        var position: Int64
        var heads: [Int: Int64] = [:]

        init(at position: Int64, capacity: Int) {
            start = position
            self.position = position
            entries.reserveCapacity(capacity)
        }

        var positions: [Int64] { entries.map(\.fields.position) }
    }

    func head(_ address: SlotAddress, _ pending: PendingAppend) -> Int64 {
        let i = state.index(address)
        return pending.heads[i] ?? state.slots[i].head
    }

    /// Adds a message entry for `m` (a moved copy when `originalID` is given) to `pending`,
    /// in the slot `placement` picks, or in `home` when given.
    func addMessage(_ m: ScheduledMessage, originalID: Int64? = nil, home: SlotAddress? = nil, to pending: inout PendingAppend) throws {
        guard m.dueAt >= 0, m.dueAt < geometry.limit else {
            throw WheelError(.dueOutOfRange, "due time \(m.dueAt) ms is outside 0..<\(geometry.limit)")
        }
        let home = home ?? state.placement(m.dueAt)
        if home.level == 0, let through = state.unfinishedHandOverThrough, home.start <= through {
            throw WheelError(
                .handOverPending, "the hand-over of the slots up to \(through) ms failed and waits for its retry; a message due by then cannot be added to it now")
        }
        let slot = geometry.slot(level: home.level, time: home.start)
        let next = head(home, pending)
        var bytes: [UInt8] = []
        TimerEntry.appendMessage(m, level: home.level, slot: slot, next: next, placedAt: state.time, originalID: originalID, continues: true, to: &bytes)
        let fields = TimerEntryFields(
            kind: originalID == nil ? .message : .movedMessage, position: pending.position, level: home.level, slot: slot, dueAt: m.dueAt,
            next: next, reference: state.time, size: bytes.count, originalID: originalID ?? -1)
        add(EncodedEntry(bytes: bytes, fields: fields), into: home, to: &pending)
    }

    /// Adds a frame-only list entry (link or cancel) for the slot `home`.
    func addFrame(_ kind: TimerEntry.Kind, home: SlotAddress, dueAt: Int64, reference: Int64, to pending: inout PendingAppend) {
        let slot = geometry.slot(level: home.level, time: home.start)
        let next = head(home, pending)
        var bytes: [UInt8] = []
        TimerEntry.append(kind, level: home.level, slot: slot, dueAt: dueAt, next: next, reference: reference, continues: true, to: &bytes)
        let fields = TimerEntryFields(
            kind: kind, position: pending.position, level: home.level, slot: slot, dueAt: dueAt, next: next, reference: reference, size: bytes.count)
        add(EncodedEntry(bytes: bytes, fields: fields), into: home, to: &pending)
    }

    private func add(_ entry: EncodedEntry, into home: SlotAddress, to pending: inout PendingAppend) {
        assert(state.home(of: entry.fields) == home, "the shell places an entry where replay will find it")
        pending.heads[state.index(home)] = pending.position
        pending.position += Int64(entry.bytes.count)
        pending.entries.append(entry)
    }

    /// A marker about the slot of `level` starting at `start` (or about the wheel), at
    /// position 0 until appended.
    func encodeMarker(_ kind: TimerEntry.Kind, level: Int, start: Int64, next: Int64, reference: Int64) -> EncodedEntry {
        let slot = geometry.slot(level: level, time: start)
        var bytes: [UInt8] = []
        TimerEntry.append(kind, level: level, slot: slot, dueAt: start, next: next, reference: reference, to: &bytes)
        return EncodedEntry(
            bytes: bytes,
            fields: TimerEntryFields(kind: kind, position: 0, level: level, slot: slot, dueAt: start, next: next, reference: reference, size: bytes.count))
    }

    /// Appends what `pending` holds plus `marker` as one append (all or nothing), then
    /// applies every entry to the state; `alreadyRead` goes with the marker.
    func commit(_ pending: PendingAppend, marker: EncodedEntry? = nil, alreadyRead: AlreadyRead? = nil) throws {
        var entries = pending.entries
        if let marker { entries.append(marker) }
        guard !entries.isEmpty else { return }
        let at = try append(entries)
        precondition(at == pending.start, "the wheel is the timer log's only writer")
        apply(entries, at: at, alreadyRead: alreadyRead)
    }

    /// Appends entries that must count together or not at all: all but the last are
    /// flagged `continues`, and opening drops an append a crash cut short (the log can
    /// split one append into several writes, and keeps whatever whole entries reached
    /// the disk). Returns the position of the first.
    func append(_ entries: [EncodedEntry]) throws -> Int64 {
        var bytes = entries.map(\.bytes)
        // List entries are encoded with the flag set: usually only the last one changes.
        for k in bytes.indices where (bytes[k][TimerEntry.Layout.continues] == 1) != (k < bytes.count - 1) {
            TimerEntry.setContinues(k < bytes.count - 1, &bytes[k])
        }
        return try log.append(contentsOf: bytes).baseOffset
    }

    /// Applies appended entries (the first at `at`) to the state, in order; `alreadyRead`
    /// goes with the last one, a marker. The running compaction pass learns what was
    /// linked into its slot.
    func apply(_ entries: [EncodedEntry], at: Int64, alreadyRead: AlreadyRead? = nil) {
        var position = at
        for (k, entry) in entries.enumerated() {
            var fields = entry.fields
            fields.position = position
            position += Int64(entry.bytes.count)
            state.apply(fields, source: walker, alreadyRead: k == entries.count - 1 ? alreadyRead : nil)
            if fields.kind.isListed, var plan = compactionPlan, state.home(of: fields) == plan.address {
                plan.pushedOldest = min(plan.pushedOldest, fields.position, fields.kind == .cancel ? .max : fields.target)
                compactionPlan = plan
            }
        }
    }

    // MARK: - Schedule, cancel, reschedule

    /// Schedules messages; returns their ids (timer-log positions), in order. One append
    /// for the whole call. A due time in the past fires at the next `advance`.
    @discardableResult
    public func schedule(_ messages: [ScheduledMessage]) throws -> [Int64] {
        guard !messages.isEmpty else { return [] }
        var pending = PendingAppend(at: log.endOffset, capacity: messages.count)
        for m in messages { try addMessage(m, to: &pending) }
        try commit(pending)
        return pending.positions
    }

    /// Where a pending message is: the slot whose list holds it, and the entry holding its
    /// record.
    struct MessageHome {
        var address: SlotAddress
        var holder: Int64
        var dueAt: Int64
    }

    /// Finds a pending message. `dueAt`: its due time; read from the log when nil, which
    /// works until a compaction deletes the original entry (the broker keeps the due time
    /// with the id).
    private func locate(_ id: Int64, dueAt: Int64?) throws -> MessageHome {
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
        let at = max(due, state.time)
        var found: MessageHome? = nil
        var cancelled = false
        for level in 0...geometry.level(now: state.time, due: due) {
            let address = SlotAddress(level: level, start: at & ~(geometry.slotSpan(level) - 1))
            guard let slot = state.slot(at: address) else { continue }
            for e in walker.walk(from: slot.head, floor: slot.cut).entries {
                if e.kind == .cancel {
                    if e.cancelledID == id { cancelled = true }
                } else if e.target == id || (e.target > id && messageID(of: e) == id) {
                    // The original entry, a link to it, or a moved copy (always further on).
                    found = MessageHome(address: address, holder: e.target, dueAt: due)
                }
            }
        }
        guard let found, !cancelled else {
            throw WheelError(.notPending, "message \(id) is not pending (it fired or was cancelled)")
        }
        if found.address.level == 0, let through = state.unfinishedHandOverThrough, found.address.start <= through {
            // Its hand-over has begun (and may be partly applied): it is firing, not pending.
            throw WheelError(.beingFired, "message \(id) is not pending (it is being fired)")
        }
        return found
    }

    /// Where a scheduled message stands, for a status query: found in the slot of its due
    /// time (`locate`), or not.
    public enum MessageState: Sendable, Equatable {
        /// Waiting in the wheel for its due time.
        case pending(dueAt: Int64)
        /// Cancelled, its slot not yet reached (the tombstone is still in it).
        case cancelled(dueAt: Int64)
        /// In a hand-over under way: on its way to its destination.
        case beingFired(dueAt: Int64)
        /// No longer in the wheel: fired, or cancelled and its slot passed. The due time is
        /// nil when the original entry was compacted away.
        case gone(dueAt: Int64?)
    }

    /// Where the message with id `id` (a timer-log position) stands. A `WheelError`
    /// `.unknownMessage` for a position that never held a message. Walks the slot (or two)
    /// the message can be in, like `cancel`.
    public func state(of id: Int64) throws -> MessageState {
        guard id >= 0, id < log.endOffset else { throw WheelError(.unknownMessage, "no scheduled message has id \(id)") }
        // Compacted away: it was there, and is long gone.
        if id < log.startOffset { return .gone(dueAt: nil) }
        guard let entry = try? reader.fields(at: id), entry.kind == .message, entry.position == id else {
            throw WheelError(.unknownMessage, "no scheduled message has id \(id)")
        }
        let due = entry.dueAt
        do {
            return .pending(dueAt: try locate(id, dueAt: due).dueAt)
        } catch let error as WheelError where error.code == .beingFired {
            return .beingFired(dueAt: due)
        } catch let error as WheelError where error.code == .notPending {
            return isCancelInSlot(id, dueAt: due) ? .cancelled(dueAt: due) : .gone(dueAt: due)
        }
    }

    /// Whether a tombstone for `id` waits in a slot its due time can be in.
    private func isCancelInSlot(_ id: Int64, dueAt due: Int64) -> Bool {
        guard due >= 0, due < geometry.limit else { return false }
        let at = max(due, state.time)
        for level in 0...geometry.level(now: state.time, due: due) {
            let address = SlotAddress(level: level, start: at & ~(geometry.slotSpan(level) - 1))
            guard let slot = state.slot(at: address) else { continue }
            if walker.walk(from: slot.head, floor: slot.cut).entries.contains(where: { $0.kind == .cancel && $0.cancelledID == id }) { return true }
        }
        return false
    }

    /// The id of the message a list entry stands for; a link's is read from its target
    /// (-1 when that cannot be read).
    func messageID(of e: TimerEntryFields) -> Int64 {
        if let id = e.messageID { return id }
        return (try? reader.fields(at: e.target))?.messageID ?? -1
    }

    /// A tombstone for `id`, linked into the slot holding the message so its fire drops it.
    private func addCancel(_ id: Int64, at home: MessageHome, to pending: inout PendingAppend) {
        // A level-0 tombstone carries its slot's start (it differs from the due time of a
        // message placed overdue); a higher one the due time, to be cascaded by.
        let dueAt = home.address.level == 0 ? home.address.start : home.dueAt
        addFrame(.cancel, home: home.address, dueAt: dueAt, reference: id, to: &pending)
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
    public func reschedule(
        _ id: Int64, dueAt: Int64? = nil, to newDueAt: Int64, edit: (inout ScheduledMessage) throws -> Void = { _ in }
    ) throws -> Int64 {
        let home = try locate(id, dueAt: dueAt)
        var message = try reader.message(at: home.holder).message
        // `edit` may refuse the move (a message that is not what the caller expected):
        // nothing is written then.
        try edit(&message)
        message.dueAt = newDueAt
        var pending = PendingAppend(at: log.endOffset, capacity: 2)
        addCancel(id, at: home, to: &pending)
        try addMessage(message, to: &pending)
        try commit(pending)
        return pending.positions[1]
    }

    // MARK: - Advance

    /// Processes every slot that starts at or before `now`, in order: cascades re-link,
    /// level-0 slots fire. Time never moves backwards; a `now` behind the wheel does
    /// nothing. Returns the number of messages handed over.
    @discardableResult
    public func advance(to now: Int64) throws -> Int {
        var fired = 0
        // Slots can start at `time` (overdue schedules) even when the clock stepped back.
        while let next = state.nextExpiration(), next.start <= max(now, state.time) {
            state.advanceTime(to: next.start)
            if next.level == 0 {
                if let through = state.unfinishedHandOverThrough {
                    // A hand-over begun before a crash (its marker is on disk, its slots'
                    // markers are not) is made again over exactly its slots: a destination
                    // that applied part of it skips that part by its number, so it must not
                    // grow to take in slots that fell due since.
                    fired += try fire(starts: state.dueRun(through: max(through, next.start), entryLimit: .max))
                } else {
                    fired += try fire(starts: state.dueRun(through: max(now, state.time), entryLimit: handOverEntryLimit))
                }
            } else {
                try cascade(next.address)
            }
        }
        state.advanceTime(to: now)
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
        guard let address = state.nextSlotAhead(), let slot = state.slot(at: address) else { return false }
        if try moveWhole(address, ahead: true) { return state.nextSlotAhead() != nil }
        let taken = walker.walk(from: slot.head, floor: slot.cut, limit: max(1, maxEntries))
        let lower = address.level - 1
        var pending = PendingAppend(at: log.endOffset, capacity: taken.entries.count)
        for e in taken.entries.reversed() {
            let home = SlotAddress(level: lower, start: e.dueAt & ~(geometry.slotSpan(lower) - 1))
            addFrame(e.kind == .cancel ? .cancel : .link, home: home, dueAt: e.dueAt, reference: e.kind == .cancel ? e.cancelledID : e.target, to: &pending)
        }
        let marker = encodeMarker(.cascadeProgress, level: address.level, start: address.start, next: TimerEntry.noPosition, reference: taken.rest)
        try commit(pending, marker: marker, alreadyRead: .list(taken.entries))
        return state.nextSlotAhead() != nil
    }

    /// Moves a slot whose entries all fall due in the same millisecond down whole: its list
    /// becomes the list of the slot a cascade would put each of them in, and one 48-byte
    /// `slotMoved` marker (`slotMovedAhead` from `cascadeAhead`) replaces a link per entry —
    /// nothing is walked, written per entry or copied. (A burst due at one instant, such
    /// as everything expiring at noon, then reaches level 0 in constant time, and its fire
    /// reads the messages without going through links.) Only into an empty slot, since
    /// two lists cannot be joined, and not while a compaction works on the slot. Returns
    /// false, having done nothing, when the slot cannot move: the caller cascades it.
    private func moveWhole(_ address: SlotAddress, ahead: Bool) throws -> Bool {
        guard address.level > 0, let due = state.slot(at: address)?.singleDue, compactionPlan?.address != address else { return false }
        // Ahead: into the lower level's next page, as `cascadeAhead` links entries.
        let target =
            ahead ? SlotAddress(level: address.level - 1, start: due & ~(geometry.slotSpan(address.level - 1) - 1)) : state.placement(due)
        guard target.level < address.level, state.slots[state.index(target)].isEmpty else { return false }
        if target.level == 0, let through = state.unfinishedHandOverThrough, target.start <= through { return false }
        let marker = encodeMarker(
            ahead ? .slotMovedAhead : .slotMoved, level: address.level, start: address.start, next: Int64(target.level), reference: target.start)
        apply([marker], at: try append([marker]))
        return true
    }

    /// Re-links a higher-level slot's entries one level (or more) down, where their due
    /// times now place them, then clears it: links and marker in one append.
    func cascade(_ address: SlotAddress) throws {
        if try moveWhole(address, ahead: false) { return }
        guard let slot = state.slot(at: address) else { preconditionFailure("cascading an empty slot \(address)") }
        let entries = walker.walk(from: slot.head, floor: slot.cut).entries
        var pending = PendingAppend(at: log.endOffset, capacity: entries.count)
        // Oldest first, so each lower list keeps publish order from its tail.
        for e in entries.reversed() {
            let home = state.placement(e.dueAt)
            precondition(home.level < address.level, "a cascade moves entries down")
            addFrame(e.kind == .cancel ? .cancel : .link, home: home, dueAt: e.dueAt, reference: e.kind == .cancel ? e.cancelledID : e.target, to: &pending)
        }
        let marker = encodeMarker(.slotCleared, level: address.level, start: address.start, next: TimerEntry.noPosition, reference: TimerEntry.noPosition)
        try commit(pending, marker: marker, alreadyRead: .list(entries))
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
