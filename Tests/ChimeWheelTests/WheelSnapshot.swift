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
