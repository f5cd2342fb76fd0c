import Logging

/// Reads slot lists out of the timer log for `WheelState`: the state holds list heads
/// only, so retiring what a processed slot held means walking its list.
protocol TimerListSource {
    /// Walks a list from `head` (newest first) while entries lie at or above `floor` (the
    /// slot's cut), stopping before `stop` and after `limit` entries.
    func walk(from head: Int64, floor: Int64, stop: Int64, limit: Int) -> ListWalk
    /// The size of the message entry at `position` (what a link read), nil when even its
    /// declared size cannot be read.
    func messageSize(at position: Int64) -> Int?
}

/// A walk of a slot's list: the entries taken, the position of the first entry not taken
/// (-1: the list ended), and whether damage ended the walk.
struct ListWalk {
    var entries: [TimerEntryFields]
    var rest: Int64
    var damaged: Bool
}

/// What the wheel read while processing a slot, handed to `WheelState.apply` with the
/// marker so that applying it does not read the list again. Replay passes nothing and the
/// state walks the list itself: the same reduction either way.
enum AlreadyRead {
    /// A cascade's (or cascade ahead's) entries.
    case list([TimerEntryFields])
    /// A fire's list, and the size of each message entry it read (by position); for the
    /// second and later slots of one hand-over the sizes are all on the first.
    case fired([TimerEntryFields], messageSizes: [(position: Int64, size: Int)])
    /// A compaction step's rewritten entries and the messages links among them read.
    case compacted(rewritten: [TimerEntryFields], moved: [(position: Int64, size: Int)])
}

/// The wheel's state as a pure function of its timer log: slots (list heads), occupancy,
/// the wheel time, the fire numbering and live-byte accounting. `apply` is its one
/// transition: `TimingWheel` calls it for every entry it appends, and replay for every
/// entry it reads back, so a reopened wheel is the wheel that was running.
///
/// Each level has two pages of slots: the span the wheel time is in and the one after it,
/// told apart by the parity of the span number. Entries go to the next page only when the
/// slot above is cascaded ahead of time (`cascadeAhead`) or when they are due in the very
/// next slot of their level; so a page never holds two spans at once.
struct WheelState {
    let geometry: WheelGeometry
    private(set) var slots: SlotTable
    private(set) var occupancy: [OccupancyBitmap]
    /// Every message due before `time` has been handed over; the wheel never moves back.
    private(set) var time: Int64 = 0
    private(set) var nextFireSequence: UInt64 = 1
    /// The last `handOver` marker applied (see `HandOverMark`).
    private(set) var handOver: HandOverMark?
    private(set) var live: LiveBytes
    /// Reports entries that do not fit the state (damage, a foreign log): they are skipped.
    private let logger: Logger

    init(geometry: WheelGeometry, chunkShift: Int64, logger: Logger) {
        self.geometry = geometry
        self.logger = logger
        slots = SlotTable(pages: geometry.levels * 2, slotsPerPage: geometry.slotsPerLevel)
        occupancy = Array(repeating: OccupancyBitmap(slots: geometry.slotsPerLevel), count: geometry.levels * 2)
        live = LiveBytes(chunkShift: chunkShift)
    }

    /// Starts from a checkpoint (its slots cascade entry by entry: see `WheelSlot.sharedDue`).
    mutating func load(_ checkpoint: WheelCheckpoint) {
        for s in checkpoint.slots {
            let address = SlotAddress(level: s.level, start: s.start)
            slots[index(address)] = WheelSlot(
                head: s.head, start: s.start, count: s.count, cancels: s.cancels, cut: s.cut, oldest: s.oldest, sharedDue: WheelSlot.mixedDue)
            occupancy[page(address)].insert(s.slot)
        }
        time = checkpoint.time
        nextFireSequence = checkpoint.nextFireSequence
        live.load(checkpoint.liveChunks)
    }

    // MARK: - Addressing

    /// The occupancy bitmap (and page) holding `address`.
    @inline(__always)
    func page(_ address: SlotAddress) -> Int {
        address.level * 2 + Int((address.start >> Int64((address.level + 1) * geometry.slotBits)) & 1)
    }

    /// Index into `slots` of `address`.
    @inline(__always)
    func index(_ address: SlotAddress) -> Int {
        page(address) * geometry.slotsPerLevel + geometry.slot(level: address.level, time: address.start)
    }

    /// The slot at `address`, if it holds that span (else nil: empty, or another span).
    func slot(at address: SlotAddress) -> WheelSlot? {
        let s = slots[index(address)]
        return !s.isEmpty && s.start == address.start ? s : nil
    }

    /// The address of the span a slot number of a page holds now.
    private func address(page o: Int, slot: Int) -> SlotAddress {
        SlotAddress(level: o / 2, start: slots[o * geometry.slotsPerLevel + slot].start)
    }

    /// Where a list entry (message, link or cancel) is linked: the slot of its level that
    /// its due time falls in, except a message placed overdue, which sits in the level-0
    /// slot of the wheel time when it was placed.
    func home(of e: TimerEntryFields) -> SlotAddress {
        if e.kind.carriesMessage && e.dueAt < e.placedAt { return SlotAddress(level: e.level, start: e.placedAt) }
        return SlotAddress(level: e.level, start: e.dueAt & ~(geometry.slotSpan(e.level) - 1))
    }

    /// Where an entry due at `due` goes now: the level of the highest bit in which it
    /// differs from the wheel time, except that an entry due in the very next slot of that
    /// level goes one level down, to the next page, where `cascadeAhead` moves that slot's
    /// earlier entries (so that slot needs no cascade).
    func placement(_ due: Int64) -> SlotAddress {
        var level = geometry.level(now: time, due: due)
        let at = max(due, time)
        if level > 0 {
            let span = geometry.slotSpan(level)
            if at & ~(span - 1) == (time & ~(span - 1)) + span { level -= 1 }
        }
        return SlotAddress(level: level, start: at & ~(geometry.slotSpan(level) - 1))
    }

    // MARK: - Queries

    /// Visits every non-empty slot (address, slot number, state), level by level.
    func forEachOccupied(_ body: (SlotAddress, Int, WheelSlot) throws -> Void) rethrows {
        for o in 0..<occupancy.count where !occupancy[o].isEmpty {
            var s = occupancy[o].next(atOrAfter: 0)
            while let slot = s {
                let state = slots[o * geometry.slotsPerLevel + slot]
                try body(SlotAddress(level: o / 2, start: state.start), slot, state)
                s = occupancy[o].next(atOrAfter: slot + 1)
            }
        }
    }

    /// Messages scheduled and neither fired nor cancelled.
    var pendingCount: Int { slots.sum { Int($0.count) - 2 * Int($0.cancels) } }

    /// Occupied slots per level.
    var occupiedSlots: [Int] { (0..<geometry.levels).map { occupancy[2 * $0].count + occupancy[2 * $0 + 1].count } }

    /// The slot to process next: the lowest start; on a tie the higher level first, so a
    /// cascade lands its entries before the level-0 slot of the same millisecond fires.
    func nextExpiration() -> Expiration? {
        var best: Expiration? = nil
        for o in 0..<occupancy.count {
            // A page holds one span: its first occupied slot is its earliest.
            guard let s = occupancy[o].next(atOrAfter: 0) else { continue }
            let address = address(page: o, slot: s)
            if best == nil || address.start < best!.start || (address.start == best!.start && address.level > best!.level) {
                best = Expiration(address: address, slot: s)
            }
        }
        return best
    }

    /// The next slot of some level above 0 that has entries, earliest first (on a tie the
    /// higher level, whose entries may land in the lower one): what `cascadeAhead` works on.
    func nextSlotAhead() -> SlotAddress? {
        var best: SlotAddress? = nil
        for level in 1..<geometry.levels {
            let span = geometry.slotSpan(level)
            let address = SlotAddress(level: level, start: (time & ~(span - 1)) + span)
            guard address.start < geometry.limit else { break }
            if slot(at: address) != nil && (best == nil || address.start <= best!.start) { best = address }
        }
        return best
    }

    /// The level-0 slots to hand over together, in time order: the next one, and each
    /// following one that starts by `through` with no higher-level slot (a cascade, which
    /// must go first) starting before it, while fewer than `entryLimit` entries are gathered.
    func dueRun(through: Int64, entryLimit: Int) -> [Int64] {
        var higher = Int64.max
        for o in 2..<occupancy.count {
            if let s = occupancy[o].next(atOrAfter: 0) { higher = min(higher, address(page: o, slot: s).start) }
        }
        var starts: [Int64] = []
        for o in 0..<2 {
            var s = occupancy[o].next(atOrAfter: 0)
            while let slot = s {
                let start = address(page: o, slot: slot).start
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
            entries += Int(slots[index(SlotAddress(level: 0, start: start))].count)
        }
        return run
    }

    /// The last level-0 slot of a hand-over that was begun (its `handOver` entry written)
    /// and not finished: its delivery failed and will be retried, or a crash came first.
    /// Nothing may be scheduled into or cancelled from its slots meanwhile: a part already
    /// applied is skipped by the retry, so a message added there would be lost and a
    /// message cancelled there may have been delivered already.
    var unfinishedHandOverThrough: Int64? {
        guard let h = handOver, h.sequence == nextFireSequence else { return nil }
        return h.through
    }

    // MARK: - Changes not recorded in the log

    /// The wheel time moves to `now` if that is later (never back).
    mutating func advanceTime(to now: Int64) {
        time = max(time, now)
    }

    /// A begun hand-over with nothing left to redo stops keeping its slots closed.
    mutating func forgetFinishedHandOver() {
        if handOver?.sequence == nextFireSequence { handOver = nil }
    }

    /// A slot's `oldest` found exact by a compaction's walk (a cached bound, not state the
    /// log records: a reopen recomputes it as an upper bound).
    mutating func tightenOldest(_ address: SlotAddress, to oldest: Int64) {
        slots[index(address)].oldest = oldest
    }

    /// The leading dead chunks of the live accounting are forgotten; returns where the
    /// first live chunk starts (nil: nothing is live).
    mutating func forgetDeadChunks() -> Int64? { live.forgetDeadPrefix() }

    // MARK: - The transition

    /// Applies one timer-log entry, appended just now or read back by replay. `source`
    /// reads the lists a marker retires unless `alreadyRead` has them.
    mutating func apply(_ e: TimerEntryFields, source: some TimerListSource, alreadyRead: AlreadyRead? = nil) {
        guard e.level < geometry.levels, e.slot < geometry.slotsPerLevel else {
            logger.error("timer entry outside this wheel's geometry; skipped", metadata: [
                "position": "\(e.position)", "level": "\(e.level)", "slot": "\(e.slot)", "geometry": "\(geometry)",
            ])
            return
        }
        switch e.kind {
        case .message, .movedMessage, .link, .cancel:
            // A message was placed when the wheel had reached `placedAt`.
            if e.kind.carriesMessage { time = max(time, e.placedAt) }
            let home = home(of: e)
            guard geometry.slot(level: home.level, time: home.start) == e.slot else {
                logger.error("timer entry names a slot its due time does not fall in; skipped", metadata: ["position": "\(e.position)"])
                return
            }
            let i = index(home)
            if !slots[i].isEmpty && slots[i].start != home.start {
                logger.error("timer entry links into a slot of another span; list reset", metadata: ["position": "\(e.position)"])
                clear(SlotAddress(level: home.level, start: slots[i].start))
            }
            link(e, into: home)
            live.add(e.position, Int32(e.size))
        case .slotCleared, .slotFired:
            // Retire what the processing retired: the list it processed.
            let processed = SlotAddress(level: e.level, start: e.slotStart)
            if let slot = slot(at: processed) {
                switch alreadyRead {
                case .list(let entries): retire(entries, fired: false, source: source)
                case .fired(let entries, let sizes): retire(entries, fired: true, messageSizes: sizes, source: source)
                default: retire(walk(slot, source: source).entries, fired: e.kind == .slotFired, source: source)
                }
                clear(processed)
            }
            if e.kind == .slotFired { nextFireSequence = max(nextFireSequence, e.fireSequence + 1) }
            time = max(time, e.slotStart)
            clearSlotsProcessedBefore(e.slotStart, position: e.position)
        case .fireSequence:
            nextFireSequence = max(nextFireSequence, e.fireSequence + 1)
            time = max(time, e.dueAt)
        case .handOver:
            handOver = HandOverMark(sequence: e.fireSequence, through: e.slotStart)
        case .cascadeProgress:
            // Part of a slot cascaded ahead of time: the entries from its head down to the
            // cursor (exclusive; -1: all) moved one level down. The slot lies ahead.
            let address = SlotAddress(level: e.level, start: e.slotStart)
            guard let slot = slot(at: address) else {
                logger.error("cascade progress for a slot that is empty; skipped", metadata: ["position": "\(e.position)"])
                return
            }
            let dropped: [TimerEntryFields]
            if case .list(let entries) = alreadyRead {
                dropped = entries
            } else {
                dropped = source.walk(from: slot.head, floor: slot.cut, stop: e.cascadeCursor, limit: .max).entries
            }
            dropHead(address, through: e.cascadeCursor, dropped: dropped, source: source)
            // It ran while that slot was the next one of its level: the wheel time was at
            // least one slot before it (so placements after a reopen use the same pages).
            time = max(time, e.slotStart - geometry.slotSpan(e.level))
        case .slotMoved, .slotMovedAhead:
            // A whole list moved down (`moveWhole`) into an empty slot.
            let from = SlotAddress(level: e.level, start: e.slotStart)
            let target = e.moveTarget
            guard slot(at: from) != nil, (0..<e.level).contains(target.level), target.start >= 0, target.start < geometry.limit,
                target.start & (geometry.slotSpan(target.level) - 1) == 0, slots[index(target)].isEmpty
            else {
                logger.error("slot move that does not fit the wheel's state; skipped", metadata: ["position": "\(e.position)"])
                return
            }
            relink(from, to: target)
            if e.kind == .slotMoved {
                // As a cascade at the slot's start: the wheel time reached it.
                time = max(time, e.slotStart)
                clearSlotsProcessedBefore(e.slotStart, position: e.position)
            } else {
                // As a cascade ahead: the wheel time was at least one slot before it.
                time = max(time, e.slotStart - geometry.slotSpan(e.level))
            }
        case .slotCompacted:
            // The rewritten entries were linked just before: what lies below the new cut is
            // dead, and so is every message a link there read.
            let address = SlotAddress(level: e.level, start: e.slotStart)
            guard let slot = slot(at: address) else {
                logger.error("compaction marker for a slot that is empty; skipped", metadata: ["position": "\(e.position)"])
                return
            }
            let rewritten: [TimerEntryFields]
            let moved: [(position: Int64, size: Int)]
            if case .compacted(let r, let m) = alreadyRead {
                (rewritten, moved) = (r, m)
            } else {
                // The list's tail from just below the new cut down to the old one; each
                // message once, in the order the step went.
                rewritten = source.walk(from: e.compactedCut - 1, floor: slot.cut, stop: TimerEntry.noPosition, limit: .max).entries
                var seen = Set<Int64>()
                moved = rewritten.reversed().compactMap { r -> (position: Int64, size: Int)? in
                    guard r.kind == .link, seen.insert(r.target).inserted else { return nil }
                    return source.messageSize(at: r.target).map { (r.target, $0) }
                }
            }
            finishCompaction(address, rewritten: rewritten, moved: moved, cut: e.compactedCut, oldest: e.compactedOldest)
        }
    }

    // MARK: - Transition parts

    private func walk(_ slot: WheelSlot, source: some TimerListSource) -> ListWalk {
        source.walk(from: slot.head, floor: slot.cut, stop: TimerEntry.noPosition, limit: .max)
    }

    /// Pushes a list entry onto the list of `address`.
    private mutating func link(_ e: TimerEntryFields, into address: SlotAddress) {
        let i = index(address)
        if slots[i].isEmpty {
            slots[i].start = address.start
            occupancy[page(address)].insert(geometry.slot(level: address.level, time: address.start))
        }
        assert(slots[i].start == address.start, "a slot holds one span at a time")
        slots[i].head = e.position
        slots[i].count += 1
        if slots[i].sharedDue == WheelSlot.noDue {
            slots[i].sharedDue = e.dueAt
        } else if slots[i].sharedDue != e.dueAt {
            slots[i].sharedDue = WheelSlot.mixedDue
        }
        slots[i].oldest = min(slots[i].oldest, e.position, e.kind == .cancel ? .max : e.target)
        if e.kind == .cancel { slots[i].cancels += 1 }
    }

    private mutating func clear(_ address: SlotAddress) {
        let p = page(address)
        slots[index(address)] = WheelSlot()
        occupancy[p].remove(geometry.slot(level: address.level, time: address.start))
        if occupancy[p].isEmpty { slots.release(page: p) }
    }

    /// The list of `from` becomes the list of the empty slot `target`.
    private mutating func relink(_ from: SlotAddress, to target: SlotAddress) {
        var moved = slots[index(from)]
        clear(from)
        moved.start = target.start
        slots[index(target)] = moved
        occupancy[page(target)].insert(geometry.slot(level: target.level, time: target.start))
    }

    /// What processing a slot retires: a cascade its links and cancels (messages stay,
    /// referenced by the new links); a fire everything, and each message once.
    /// `messageSizes`: for a fire, the size of each message entry it read; looked up when nil.
    private mutating func retire(
        _ entries: [TimerEntryFields], fired: Bool, messageSizes: [(position: Int64, size: Int)]? = nil, source: some TimerListSource
    ) {
        for e in entries where !e.kind.carriesMessage { live.add(e.position, -Int32(e.size)) }
        guard fired else { return }
        if let messageSizes {
            for m in messageSizes { live.add(m.position, -Int32(m.size)) }
            return
        }
        var seen = Set<Int64>()
        for e in entries where e.kind != .cancel && seen.insert(e.target).inserted {
            if e.kind.carriesMessage {
                live.add(e.position, -Int32(e.size))
            } else if let size = source.messageSize(at: e.target) {
                live.add(e.target, -Int32(size))
            }
        }
    }

    /// Takes the entries from a slot's head down to `cursor` (exclusive; -1: the whole
    /// list) out of the slot after they were cascaded ahead, retiring them as a cascade does.
    private mutating func dropHead(_ address: SlotAddress, through cursor: Int64, dropped: [TimerEntryFields], source: some TimerListSource) {
        retire(dropped, fired: false, source: source)
        let cancels = Int32(dropped.reduce(0) { $0 + ($1.kind == .cancel ? 1 : 0) })
        if cursor == TimerEntry.noPosition {
            clear(address)
        } else {
            let i = index(address)
            slots[i].head = cursor
            assert(slots[i].count > Int32(dropped.count), "slot \(address) dropped \(dropped.count) of \(slots[i].count) entries and kept some")
            slots[i].count -= Int32(dropped.count)
            assert(slots[i].cancels >= cancels, "slot \(address) dropped \(cancels) cancels of \(slots[i].cancels)")
            slots[i].cancels -= cancels
        }
    }

    /// The change a `slotCompacted` marker records once its new entries are linked: the
    /// rewritten entries (and the messages links among them read) are dead, the cut hides them.
    private mutating func finishCompaction(
        _ address: SlotAddress, rewritten: [TimerEntryFields], moved: [(position: Int64, size: Int)], cut: Int64, oldest: Int64
    ) {
        let i = index(address)
        for e in rewritten { live.add(e.position, -Int32(e.size)) }
        for t in moved { live.add(t.position, -Int32(t.size)) }
        slots[i].count = max(1, slots[i].count - Int32(rewritten.count))
        let rewrittenCancels = Int32(rewritten.reduce(0) { $0 + ($1.kind == .cancel ? 1 : 0) })
        assert(slots[i].cancels >= rewrittenCancels, "slot \(address) compacted \(rewrittenCancels) cancels of \(slots[i].cancels)")
        slots[i].cancels -= rewrittenCancels
        slots[i].cut = cut
        slots[i].oldest = oldest
    }

    /// Slots are processed in order of start, so a marker for time `d` means every slot
    /// that starts before `d` was processed already; one still occupied lost its own marker
    /// to damage, and must not fire again. (Running, the wheel never leaves one: this
    /// finds nothing but the first slot and stops.)
    private mutating func clearSlotsProcessedBefore(_ d: Int64, position: Int64) {
        while let stale = nextExpiration(), stale.start < d {
            logger.error("slot behind a later marker was never marked processed; cleared", metadata: [
                "level": "\(stale.level)", "slot": "\(stale.slot)", "marker": "\(position)",
            ])
            clear(stale.address)
        }
    }

    // MARK: - Invariants

    /// Checks what must hold between every two transitions (debug builds only; tests call
    /// it after every step): each occupied slot lies in the page its start selects, holds
    /// at least as many entries as cancels, its head is at or above its cut, and the
    /// bitmaps agree with the slots.
    func checkInvariants() {
        #if DEBUG
            var occupied = 0
            forEachOccupied { address, slot, state in
                occupied += 1
                precondition(!state.isEmpty, "an occupied bit over an empty slot at \(address)")
                precondition(geometry.slot(level: address.level, time: address.start) == slot, "slot \(address) sits at number \(slot)")
                precondition(address.start & (geometry.slotSpan(address.level) - 1) == 0, "slot \(address) does not start on its span")
                precondition(state.count > 0 && state.cancels >= 0 && state.count >= state.cancels, "slot \(address) counts \(state.count) entries, \(state.cancels) cancels")
                precondition(state.head >= state.cut, "slot \(address) head \(state.head) is below its cut \(state.cut)")
            }
            var populated = 0
            _ = slots.sum { s in
                if !s.isEmpty { populated += 1 }
                return 0
            }
            precondition(populated == occupied, "\(populated) slots hold lists, \(occupied) occupancy bits are set")
            precondition(live.total >= 0)
        #endif
    }
}
