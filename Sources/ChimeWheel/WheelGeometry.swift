/// The shape of a hierarchical timing wheel: `levels` levels of `1 << slotBits` slots;
/// a level-0 slot spans 1 ms and a level-L slot spans a whole level L-1.
///
/// Placement follows the highest bit in which the due time differs from the wheel's
/// current time: an entry lives at the lowest level whose slot range still separates it
/// from "now". So every entry of a level-0 slot is due in the same millisecond, and an
/// entry of a level-L slot (L > 0) is due inside that slot's span, later than every
/// level-(L-1) entry placed before the wheel reached that slot. Times are absolute
/// wall-clock milliseconds, never negative, below `limit`.
public struct WheelGeometry: Sendable, Equatable, CustomStringConvertible {
    /// log2 of the slots per level: 6 (64 slots) or 8 (256 slots).
    public let slotBits: Int
    public let levels: Int

    /// 64 slots per level; 8 levels cover 2^48 ms (about 8,900 years of absolute time).
    public static let slots64 = WheelGeometry(slotBits: 6, levels: 8)
    /// 256 slots per level; 6 levels cover the same 2^48 ms.
    public static let slots256 = WheelGeometry(slotBits: 8, levels: 6)

    public init(slotBits: Int, levels: Int) {
        precondition((1...8).contains(slotBits), "1 to 8 bits of slots per level")
        precondition(levels >= 1 && slotBits * levels <= 62, "the wheel must fit in 62 bits of milliseconds")
        self.slotBits = slotBits
        self.levels = levels
    }

    public var slotsPerLevel: Int { 1 << slotBits }
    var slotMask: Int64 { Int64(slotsPerLevel - 1) }

    /// First time the wheel cannot place (exclusive upper bound on due times).
    public var limit: Int64 { 1 << Int64(slotBits * levels) }

    /// Milliseconds one slot of `level` spans.
    public func slotSpan(_ level: Int) -> Int64 { 1 << Int64(level * slotBits) }

    /// Milliseconds a whole `level` spans (one slot of the level above).
    public func levelSpan(_ level: Int) -> Int64 { 1 << Int64((level + 1) * slotBits) }

    /// The level an entry due at `due` belongs to when the wheel stands at `now`.
    /// Overdue entries (due ≤ now) belong to level 0. Requires 0 ≤ now, due < limit.
    @inline(__always)
    public func level(now: Int64, due: Int64) -> Int {
        let target = max(due, now)
        // OR in the level-0 mask so equal times land on level 0.
        let differing = (now ^ target) | slotMask
        let highestBit = 63 - differing.leadingZeroBitCount
        return highestBit / slotBits
    }

    /// The slot of `level` that holds time `time`.
    @inline(__always)
    public func slot(level: Int, time: Int64) -> Int {
        Int((time >> Int64(level * slotBits)) & slotMask)
    }

    /// Start time of `slot` of `level` within the level span holding `now`.
    @inline(__always)
    public func slotStart(level: Int, slot: Int, now: Int64) -> Int64 {
        (now & ~(levelSpan(level) - 1)) + Int64(slot) * slotSpan(level)
    }

    public var description: String { "\(levels) levels x \(slotsPerLevel) slots" }
}
