/// What is due soon, read from the slots' lists on disk (the wheel keeps only list heads in
/// memory): for an operator's view of a topic, never on a hot path.
extension TimingWheel {
    public struct Upcoming: Sendable, Equatable {
        /// The earliest pending messages due before the horizon: (id, due time), by due time.
        public var earliest: [(id: Int64, dueAt: Int64)]
        /// Pending messages due before each of the asked-for bounds, in their order.
        public var countsBefore: [Int]
        /// The walk stopped at its entry budget: the counts are lower bounds.
        public var truncated: Bool

        public static func == (a: Upcoming, b: Upcoming) -> Bool {
            a.earliest.elementsEqual(b.earliest) { $0.id == $1.id && $0.dueAt == $1.dueAt } && a.countsBefore == b.countsBefore && a.truncated == b.truncated
        }
    }

    /// The pending messages due before each of `bounds` (counted), and the `earliest` first
    /// ones due before the last bound. Walks every occupied slot that starts before the
    /// last bound, reading at most `maxEntries` list entries (then `truncated`). A message
    /// cancelled but not yet dropped (its tombstone in the slot) is not counted.
    public func upcoming(before bounds: [Int64], earliest: Int, maxEntries: Int = 100_000) -> Upcoming {
        let horizon = bounds.max() ?? state.time
        var dues: [(id: Int64, dueAt: Int64)] = []
        var cancelled = Set<Int64>()
        var read = 0
        var truncated = false
        state.forEachOccupied { address, _, slot in
            guard address.start < horizon, !truncated else { return }
            let walk = walker.walk(from: slot.head, floor: slot.cut, limit: maxEntries - read)
            read += walk.entries.count
            if walk.rest != TimerEntry.noPosition { truncated = true }
            for e in walk.entries {
                switch e.kind {
                case .cancel: cancelled.insert(e.cancelledID)
                case .message, .movedMessage, .link:
                    if e.dueAt < horizon {
                        let id = messageID(of: e)
                        if id >= 0 { dues.append((id, e.dueAt)) }
                    }
                default: break
                }
            }
        }
        let live = dues.filter { !cancelled.contains($0.id) }.sorted { ($0.dueAt, $0.id) < ($1.dueAt, $1.id) }
        return Upcoming(
            earliest: Array(live.prefix(earliest)), countsBefore: bounds.map { b in live.reduce(0) { $0 + ($1.dueAt < b ? 1 : 0) } }, truncated: truncated)
    }
}
