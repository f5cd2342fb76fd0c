/// Reading a large fire ahead: the walk of a slot's list and the copy of its messages out
/// of the timer log — most of a fire's work before its append — done while the slot is
/// not yet due, so that at its millisecond the fire only appends. Nothing is written
/// ahead, and the fire hands over exactly what reading the slot then would: if messages
/// were scheduled into it or cancelled since (entries added at the head of its list), the
/// fire reads only those and merges them; after anything else (a compaction, a link to an
/// older message) it reads the whole slot again.
struct PreparedFire {
    /// The millisecond every entry of the slot falls due.
    let due: Int64
    /// The slot as it was read (its start aside: a slot moved down keeps its list).
    let slot: WheelSlot
    let entries: [TimerEntryFields]
    let fired: [FiredMessage]
    let sizes: [(position: Int64, size: Int)]

    /// Whether `slot` is the slot that was read, wherever it lies now.
    func matches(_ slot: WheelSlot) -> Bool {
        var now = slot
        now.start = self.slot.start
        return now == self.slot
    }
}

extension TimingWheel {
    /// The next slot to expire, when it is worth reading ahead: every entry due in one
    /// millisecond (a level-0 slot, or a higher one that will move down whole), at least
    /// `minEntries` of them, not read ahead yet, and not part of an unfinished hand-over.
    /// A slot is read ahead once: if it changes after (messages still being scheduled
    /// into it), its fire reads it as usual rather than the loop reading it again and again.
    private func preparable(minEntries: Int) -> (due: Int64, slot: WheelSlot)? {
        guard let next = state.nextExpiration(), let slot = state.slot(at: next.address), Int(slot.count) >= minEntries else { return nil }
        let due: Int64
        if next.level == 0 {
            due = next.start
            if let through = state.unfinishedHandOverThrough, due <= through { return nil }
        } else {
            guard let single = slot.singleDue else { return nil }
            due = single
        }
        if let p = prepared, p.due == due { return nil }
        return (due, slot)
    }

    /// When the next fire should be read ahead (`lead` ms before it falls due), if it is
    /// worth it and not read yet; the firing loop wakes then.
    public func nextPreparation(lead: Int64, minEntries: Int) -> Int64? {
        preparable(minEntries: minEntries).map { $0.due - lead }
    }

    /// Reads the next fire ahead if it falls due within `lead` ms of `now` (see
    /// `nextPreparation`); whether it did.
    public func prepareNextFire(now: Int64, lead: Int64, minEntries: Int) -> Bool {
        guard let (due, slot) = preparable(minEntries: minEntries), due - lead <= now else { return false }
        let entries = walker.walk(from: slot.head, floor: slot.cut).entries
        var sizes: [(position: Int64, size: Int)] = []
        let fired = gather(entries, sizes: &sizes)
        prepared = PreparedFire(due: due, slot: slot, entries: entries, fired: fired, sizes: sizes)
        return true
    }

    /// What the fire of the level-0 slot `slot` starting at `start` hands over, from what
    /// was read ahead for it and the entries added since; nil when nothing was read ahead
    /// for it or the slot changed otherwise. What was read ahead is used once.
    func takePrepared(start: Int64, slot: WheelSlot) -> (entries: [TimerEntryFields], fired: [FiredMessage], sizes: [(position: Int64, size: Int)])? {
        guard let p = prepared else { return nil }
        if p.due <= start { prepared = nil }
        guard p.due == start else { return nil }
        if p.matches(slot) {
            firesReadAhead += 1
            return (p.entries, p.fired, p.sizes)
        }
        // Only entries added at the head since: new messages and cancels (a link could
        // point at a message already read, a compaction rewrites what was read).
        guard slot.cut == p.slot.cut, slot.count > p.slot.count else { return nil }
        let added = walker.walk(from: slot.head, floor: slot.cut, stop: p.slot.head, limit: Int(slot.count - p.slot.count) + 1)
        guard !added.damaged, added.rest == p.slot.head, added.entries.count == Int(slot.count - p.slot.count),
            added.entries.allSatisfy({ $0.kind == .message || $0.kind == .cancel })
        else { return nil }
        var sizes = p.sizes
        let fresh = gather(added.entries, sizes: &sizes)
        let cancelled = Set(added.entries.lazy.filter { $0.kind == .cancel }.map(\.cancelledID))
        var fired = p.fired
        if !cancelled.isEmpty { fired.removeAll { cancelled.contains($0.id) } }
        // New messages lie above everything read before: publish order holds.
        fired += fresh
        firesReadAhead += 1
        return (added.entries + p.entries, fired, sizes)
    }
}
