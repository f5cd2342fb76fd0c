/// One slot of the wheel: the head of its list and what is needed to order, check and
/// compact it. 48 bytes (pinned by a test; docs/architecture.md states it).
struct WheelSlot: Equatable {
    var head: Int64 = TimerEntry.noPosition
    /// The slot's absolute start time; it follows from any entry's dueAt, and keeping it
    /// makes the order of expirations independent of how the wheel time was reached.
    var start: Int64 = 0
    /// Entries linked in (messages, links and cancels).
    var count: Int32 = 0
    var cancels: Int32 = 0
    /// A walk of the list stops at the first entry below this position: what lies below
    /// was rewritten above by a compaction (lists only ever point downwards).
    var cut: Int64 = 0
    /// The lowest timer-log position the visible list occupies or points to (an entry, or
    /// the message a link reads): compaction rewrites the slots reaching below the part of
    /// the log it wants to free.
    var oldest: Int64 = .max
    /// The due time every entry linked in shares (messages, links and cancels above level
    /// 0 carry their message's), so that the slot can move down whole (`moveWhole`);
    /// `noDue` while empty, `mixedDue` once two differ. Not kept by checkpoints: a slot
    /// loaded from one is `mixedDue` and cascades entry by entry.
    var sharedDue: Int64 = WheelSlot.noDue
    static let noDue = Int64.max
    static let mixedDue = Int64.min

    var isEmpty: Bool { head == TimerEntry.noPosition }
    var singleDue: Int64? { sharedDue == Self.noDue || sharedDue == Self.mixedDue ? nil : sharedDue }
}

/// A slot of one level, named by the start of the span it covers (a slot number alone is
/// ambiguous: each level has a page for the current span and one for the next).
struct SlotAddress: Hashable, Sendable, CustomStringConvertible {
    var level: Int
    var start: Int64

    var description: String { "level \(level) at \(start)" }
}

/// A slot due for processing (a fire at level 0, a cascade above): where it is, and its
/// number within its level.
struct Expiration: Equatable {
    var address: SlotAddress
    var slot: Int

    var level: Int { address.level }
    var start: Int64 { address.start }
}

/// The last hand-over begun: the one numbered `sequence` covered every level-0 slot up to
/// `through`. Completing it (after a crash, or after its delivery failed) marks the same
/// slots.
struct HandOverMark: Equatable {
    var sequence: UInt64
    var through: Int64
}
