/// Hand-overs: firing due level-0 slots to the destination, numbered, exactly once across
/// crashes and failed deliveries.
extension TimingWheel {
    /// A hand-over begun before a crash and applied by nobody, or by only some of the
    /// destination's logs, is made again at once, over exactly its slots: before anything
    /// can be scheduled into one of them (a message placed there now would be skipped with
    /// the part already applied).
    func redoBegunHandOver() throws {
        guard let through = state.unfinishedHandOverThrough, let next = state.nextExpiration(), next.level == 0, next.start <= through else {
            // Nothing of it left to redo: it must not keep its slots closed.
            state.forgetFinishedHandOver()
            return
        }
        state.advanceTime(to: next.start)
        _ = try fire(starts: state.dueRun(through: through, entryLimit: .max))
    }

    /// Hand-overs the destination applied before a crash whose "fired" markers did not
    /// reach the log are redone first — markers only, no delivery — before anything else
    /// can be scheduled or cancelled, so the numbering after a restart matches the
    /// numbering before it whatever time it is now.
    func completeAppliedHandOvers() throws {
        // The log is synced before every hand-over, so at most the last one can lack its
        // marker. A destination further ahead belongs to another log, or this log lost
        // data: redoing hand-overs blindly would mark messages fired that never were.
        if appliedFireSequence > state.nextFireSequence, log.configuration.durability != .never {
            throw WheelError(
                .foreignDestination,
                "the destination has applied hand-over \(appliedFireSequence) but the timer log only reaches \(state.nextFireSequence - 1); is this the destination of this timer log?")
        }
        while state.nextFireSequence <= appliedFireSequence, let next = state.nextExpiration() {
            state.advanceTime(to: next.start)
            if next.level == 0 {
                // The same slots as the hand-over that was applied: its marker says up to where.
                let through = state.unfinishedHandOverThrough ?? next.start
                _ = try fire(starts: state.dueRun(through: max(through, next.start), entryLimit: .max))
            } else {
                try cascade(next.address)
            }
        }
    }

    /// The hand-overs made since the last call (see `FiredTally`), and starts a new tally.
    public func takeFiredTally() -> FiredTally {
        defer { firedTally = FiredTally() }
        return firedTally
    }

    /// Hands over the messages of level-0 slots (`WheelState.dueRun`), slot by slot in time
    /// order and within a slot in publish order (by id), without cancelled ones: one
    /// hand-over, one number. The slots' "fired" markers land together after it.
    func fire(starts: [Int64]) throws -> Int {
        precondition(!starts.isEmpty)
        var fired: [FiredMessage] = []
        var sizes: [(position: Int64, size: Int)] = []
        var lists: [[TimerEntryFields]] = []
        lists.reserveCapacity(starts.count)
        for start in starts {
            guard let slot = state.slot(at: SlotAddress(level: 0, start: start)) else { preconditionFailure("firing an empty slot at \(start)") }
            var slotFired: [FiredMessage]
            if let ahead = takePrepared(start: start, slot: slot) {
                lists.append(ahead.entries)
                if sizes.isEmpty { sizes = ahead.sizes } else { sizes += ahead.sizes }
                slotFired = ahead.fired
            } else {
                let entries = walker.walk(from: slot.head, floor: slot.cut).entries
                lists.append(entries)
                slotFired = gather(entries, sizes: &sizes)
            }
            // Moved, not copied, when it is the only slot (a copy retains every payload).
            if fired.isEmpty { swap(&fired, &slotFired) } else { fired.append(contentsOf: slotFired) }
        }
        let sequence = state.nextFireSequence
        let handedOver = sequence > appliedFireSequence
        if handedOver {
            if !fired.isEmpty {
                // Which slots this hand-over covers, for completing it after a crash. Once
                // begun, until its markers land, a retry (after a failed delivery, in this
                // process as after a crash) covers exactly these slots. A destination that
                // applied some parts skips them by this number, so a retry grown by slots
                // that fell due meanwhile would drop their messages for those parts.
                let intent = encodeMarker(.handOver, level: 0, start: starts.last!, next: TimerEntry.noPosition, reference: Int64(sequence))
                apply([intent], at: try append([intent]))
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
        let markers = starts.map {
            encodeMarker(.slotFired, level: 0, start: $0, next: TimerEntry.noPosition, reference: Int64(sequence))
        }
        var at = try append(markers)
        for (k, marker) in markers.enumerated() {
            // Every message's size went with the first slot's marker.
            apply([marker], at: at, alreadyRead: .fired(lists[k], messageSizes: k == 0 ? sizes : []))
            at += Int64(marker.bytes.count)
        }
        return handedOver ? fired.count : 0  // re-applied hand-overs count 0
    }

    /// The messages a level-0 list hands over, in publish order, cancelled ones dropped;
    /// the size of every message entry read goes to `sizes`.
    func gather(_ entries: [TimerEntryFields], sizes: inout [(position: Int64, size: Int)]) -> [FiredMessage] {
        var cancelled = Set<Int64>()
        // Targets, and whether the walk just checked that very entry (a message, not a link).
        var targets: [(position: Int64, verified: Bool)] = []
        targets.reserveCapacity(entries.count)
        for e in entries {
            if e.kind == .cancel { cancelled.insert(e.cancelledID) } else { targets.append((e.target, e.kind.carriesMessage)) }
        }
        targets.sort { $0.position < $1.position }
        var out: [FiredMessage] = []
        out.reserveCapacity(targets.count)
        var previous: Int64 = -1
        for (t, verified) in targets where t != previous {
            previous = t
            do {
                let m = try reader.fired(at: t, verified: verified)
                sizes.append((t, m.size))
                if !cancelled.contains(m.message.id) { out.append(m.message) }
            } catch {
                logger.error("scheduled message lost to damage", metadata: ["position": "\(t)", "error": "\(error)"])
                if let size = reader.declaredSize(at: t) { sizes.append((t, size)) }
            }
        }
        // Ids are original positions: publish order, also for messages a compaction moved.
        if zip(out, out.dropFirst()).contains(where: { $0.id >= $1.id }) {
            out.sort { $0.id < $1.id }
            var seen: Int64 = -1
            out.removeAll { f in
                defer { seen = f.id }
                return f.id == seen
            }
        }
        return out
    }
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
