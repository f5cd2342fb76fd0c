import ChimeStore

/// Compaction: rewriting the lists that keep old timer-log segments alive, so `reclaim`
/// can delete them.
extension TimingWheel {
    /// One slot being compacted. First its list is walked from the head, a step at a time,
    /// to find the newest entry that is (or reads, through a link) below the boundary —
    /// everything from there down is rewritten — and to cut that part into chunks of at
    /// most a step. Then the chunks are rewritten **oldest first**: copies go on top of the
    /// list, and the cut moves up to just above the chunk, so after every step the list is
    /// whole and points downwards, and only the tail was replaced.
    struct CompactionPlan {
        var address: SlotAddress
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
        if let plan = compactionPlan, state.slot(at: plan.address) == nil || plan.address.start < compactionHorizon(plan.address.level) {
            compactionPlan = nil  // processed meanwhile (or about to be): nothing left to do there
        }
        if compactionPlan == nil {
            guard let address = nextSlotToCompact(below: boundary) else {
                compactionTarget = nil
                return false
            }
            compactionPlan = CompactionPlan(address: address, walkFrom: state.slot(at: address)!.head)
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
        return (state.time & ~(span - 1)) + 2 * span
    }

    private func nextSlotToCompact(below boundary: Int64) -> SlotAddress? {
        var found: SlotAddress? = nil
        state.forEachOccupied { address, _, slot in
            if found == nil, address.level > 0, slot.oldest < boundary, address.start >= compactionHorizon(address.level),
                !compactionSkipped.contains(address)
            {
                found = address
            }
        }
        return found
    }

    private func planCompaction(below boundary: Int64) {
        var plan = compactionPlan!
        let slot = state.slot(at: plan.address)!
        let w = walker.walk(from: plan.walkFrom, floor: slot.cut, limit: compactionStepLimit)
        if w.damaged {
            // Nothing below the damage can be reached: leave the slot alone this pass.
            compactionSkipped.insert(plan.address)
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
            state.tightenOldest(plan.address, to: min(plan.oldestAbove, plan.pushedOldest))
            compactionPlan = nil
            return
        }
        compactionPlan = plan
    }

    /// Rewrites the oldest chunk not rewritten yet, moving the cut up to just above it.
    private func rewriteOldestChunk() throws {
        var plan = compactionPlan!
        let slot = state.slot(at: plan.address)!
        let chunkHead = plan.chunkHeads.removeLast()
        let chunk = walker.walk(from: chunkHead, floor: slot.cut).entries
        var pending = PendingAppend(at: log.endOffset, capacity: chunk.count)
        var moved: [(position: Int64, size: Int)] = []
        var copied = Set<Int64>()
        for e in chunk.reversed() {
            if e.kind == .cancel {
                addFrame(.cancel, home: plan.address, dueAt: e.dueAt, reference: e.cancelledID, to: &pending)
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
            try addMessage(m.message, originalID: m.id, home: plan.address, to: &pending)
        }
        for p in pending.entries.map(\.fields) { plan.pushedOldest = min(plan.pushedOldest, p.position, p.kind == .cancel ? .max : p.target) }
        let last = plan.chunkHeads.isEmpty
        let oldest = last ? min(plan.oldestAbove, plan.pushedOldest) : slot.oldest
        let marker = encodeMarker(.slotCompacted, level: plan.address.level, start: plan.address.start, next: oldest, reference: chunkHead + 1)
        // On failure the plan is as it was: retried later.
        try commit(pending, marker: marker, alreadyRead: .compacted(rewritten: chunk, moved: moved))
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
}
