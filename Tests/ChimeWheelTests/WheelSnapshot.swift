@testable import ChimeWheel

/// What a wheel reopened from its log must reproduce: pending count, occupied slots per
/// level, next due time and live bytes per chunk.
struct WheelSnapshot: Equatable {
    var pending: Int
    var occupied: [Int]
    var nextDue: Int64?
    var live: [Int64: Int32]

    init(_ w: TimingWheel) {
        pending = w.pendingCount
        occupied = w.occupiedSlots
        nextDue = w.nextDue
        live = w.liveChunks
    }
}

/// What a replay of the whole log rebuilds of a wheel's state: every occupied slot's list
/// and counts, the fire numbering and the live bytes (not the wheel time past the last
/// entry, nor compaction's tightened bounds, which the log does not record).
struct ReplayComparable: Equatable {
    struct SlotLine: Equatable {
        var address: SlotAddress
        var head: Int64
        var count: Int32
        var cancels: Int32
        var cut: Int64
    }
    var slots: [SlotLine] = []
    var nextFireSequence: UInt64
    var live: [Int64: Int32]

    init(_ state: WheelState) {
        nextFireSequence = state.nextFireSequence
        live = state.live.chunks
        state.forEachOccupied { address, _, s in
            slots.append(SlotLine(address: address, head: s.head, count: s.count, cancels: s.cancels, cut: s.cut))
        }
    }
}

/// Hand-overs in due order, and within one due time in id (publish) order.
func inDueThenIDOrder(_ fired: some Collection<(id: Int64, at: Int64, message: ScheduledMessage)>) -> Bool {
    zip(fired, fired.dropFirst()).allSatisfy { a, b in
        a.message.dueAt < b.message.dueAt || (a.message.dueAt == b.message.dueAt && a.id < b.id)
    }
}

/// The kinds of every entry in a wheel's timer log, in log order.
func timerLogKinds(_ wheel: TimingWheel) throws -> [TimerEntry.Kind] {
    var out: [TimerEntry.Kind] = []
    var at = wheel.log.startOffset
    while true {
        let entries = try wheel.log.read(from: at, maxBytes: 1 << 20)
        guard let last = entries.last else { return out }
        out += entries.map(\.kind)
        at = last.position + Int64(last.bytes.count)
    }
}
