/// One bit per slot of a level: set while the slot's list is not empty. Finds the next
/// occupied slot at or after a position with a few word operations (at most 4 words
/// for 256 slots), so the firing loop jumps straight to the next due slot.
public struct OccupancyBitmap: Sendable, Equatable {
    private var words: [UInt64]
    public let slots: Int

    public init(slots: Int) {
        precondition(slots > 0 && slots % 64 == 0 || slots < 64)
        self.slots = slots
        words = [UInt64](repeating: 0, count: max(1, slots / 64))
    }

    @inline(__always)
    public func contains(_ slot: Int) -> Bool {
        words[slot >> 6] & (1 << UInt64(slot & 63)) != 0
    }

    @inline(__always)
    public mutating func insert(_ slot: Int) {
        words[slot >> 6] |= 1 << UInt64(slot & 63)
    }

    @inline(__always)
    public mutating func remove(_ slot: Int) {
        words[slot >> 6] &= ~(1 << UInt64(slot & 63))
    }

    public var isEmpty: Bool { words.allSatisfy { $0 == 0 } }
    public var count: Int { words.reduce(0) { $0 + $1.nonzeroBitCount } }

    /// The first occupied slot ≥ `start`, or nil.
    @inline(__always)
    public func next(atOrAfter start: Int) -> Int? {
        guard start < slots else { return nil }
        var index = start >> 6
        var word = words[index] & (~0 << UInt64(start & 63))
        while true {
            if word != 0 {
                let slot = index << 6 | word.trailingZeroBitCount
                return slot < slots ? slot : nil
            }
            index += 1
            if index == words.count { return nil }
            word = words[index]
        }
    }
}
