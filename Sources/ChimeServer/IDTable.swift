import DequeModule

/// Values by id, for ids handed out in increasing order and mostly retired in about that
/// order (beanstalkd's jobs): a window of slots, one per id from `base` on, so that a
/// lookup is an index rather than a hash. Ids that fall out of the window — ones retired
/// long after the ids around them, and ones put back below it — are kept in a dictionary.
///
/// The window stays dense: holes at its front are dropped as they appear; while it has
/// more than twice as many slots as values (plus `slack`), its oldest value moves to the
/// dictionary; and an id too far past its end to reach with holes starts a new window,
/// the values of the old one moving to the dictionary. Each value moves at most once, so every operation is O(1) amortized, and
/// memory is bounded by the values held, not by the ids handed out.
struct IDTable<Value> {
    /// Empty slots the window may hold beyond twice its values.
    static var slack: Int { 4_096 }

    private var window = Deque<Value?>()
    /// The id of `window[0]`; every id in `spilled` is below it.
    private var base: UInt64 = 0
    private var windowCount = 0
    private var spilled: [UInt64: Value] = [:]

    init() {}

    var count: Int { windowCount + spilled.count }
    var isEmpty: Bool { count == 0 }

    subscript(id: UInt64) -> Value? {
        get {
            if let i = slot(id) { return window[i] }
            return id < base ? spilled[id] : nil
        }
        _modify {
            if let i = slot(id) {
                let was = window[i] != nil
                yield &window[i]
                let now = window[i] != nil
                if was != now {
                    windowCount += now ? 1 : -1
                    if !now { keepDense() }
                }
            } else if id < base {
                yield &spilled[id]
            } else {
                var value: Value? = nil
                yield &value
                if let value { extend(to: id, with: value) }
            }
        }
    }

    /// The lowest id held, if any.
    var lowestID: UInt64? {
        let spilledLowest = spilled.keys.min()
        if let spilledLowest { return spilledLowest }  // every spilled id is below the window
        return windowCount > 0 ? base : nil  // the window's front is never a hole
    }

    /// Every id held (in no particular order).
    var keys: [UInt64] {
        var out = Array(spilled.keys)
        for (i, v) in window.enumerated() where v != nil { out.append(base + UInt64(i)) }
        return out
    }

    /// Every value held (in no particular order).
    var values: [Value] {
        Array(spilled.values) + window.compactMap { $0 }
    }

    private func slot(_ id: UInt64) -> Int? {
        guard id >= base, id - base < UInt64(window.count) else { return nil }
        return Int(id - base)
    }

    /// Holds `value` under `id`, past the window's end.
    private mutating func extend(to id: UInt64, with value: Value) {
        let end = base + UInt64(window.count)
        assert(id >= end && window.count <= Self.slack + 2 * windowCount)
        // The holes the window may take on and stay within its bound once `value` is in.
        let room = Self.slack + 2 * (windowCount + 1) - window.count - 1
        if windowCount == 0 || id - end > UInt64(room) {
            // A gap too wide to fill with holes: what the window holds moves out.
            spillAll()
            base = id
        } else {
            for _ in end..<id { window.append(nil) }
        }
        window.append(value)
        windowCount += 1
    }

    /// Drops the holes at the window's front; moves its oldest values out while it is sparse.
    private mutating func keepDense() {
        while let first = window.first {
            if let value = first {
                guard window.count > Self.slack + 2 * windowCount else { return }
                spilled[base] = value
                windowCount -= 1
            }
            window.removeFirst()
            base += 1
        }
    }

    private mutating func spillAll() {
        for (i, v) in window.enumerated() {
            if let v { spilled[base + UInt64(i)] = v }
        }
        window.removeAll()
        windowCount = 0
    }
}

extension IDTable {
    /// Slots the window has (held values and holes), for tests of its bound.
    var windowSlots: Int { window.count }
}
