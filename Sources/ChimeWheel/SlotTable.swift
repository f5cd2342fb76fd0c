/// The wheel's slots, a page at a time: a page is one level's slots for one span (the unit
/// of an `OccupancyBitmap`). A page is allocated when a slot of it is first written and
/// released when the wheel clears the last occupied slot of it, so an idle wheel holds no
/// slot memory at all and a busy one only the pages its pending messages use — on a broker
/// with thousands of mostly idle partitions, most of each wheel's 12 pages are never there.
/// An absent page reads as empty slots.
struct SlotTable {
    typealias Slot = WheelSlot
    private var pages: [[Slot]?]
    private let shift: Int
    private let mask: Int

    init(pages count: Int, slotsPerPage: Int) {
        precondition(slotsPerPage > 0 && slotsPerPage.nonzeroBitCount == 1, "pages of a power of two slots")
        pages = Array(repeating: nil, count: count)
        shift = slotsPerPage.trailingZeroBitCount
        mask = slotsPerPage - 1
    }

    /// The slot at flat index `i` (page `i >> shift`); writing allocates its page.
    subscript(i: Int) -> Slot {
        get { pages[i &>> shift]?[i & mask] ?? Slot() }
        _modify {
            let p = i &>> shift
            if pages[p] == nil { pages[p] = Array(repeating: Slot(), count: mask + 1) }
            yield &pages[p]![i & mask]
        }
    }

    /// Drops page `page`, whose slots must all be empty (its occupancy bitmap is).
    mutating func release(page: Int) {
        assert(pages[page]?.allSatisfy(\.isEmpty) ?? true, "a page is released only once all its slots are empty")
        pages[page] = nil
    }

    /// Sum over the slots of the allocated pages (absent pages hold only empty slots).
    func sum(_ value: (Slot) -> Int) -> Int {
        pages.reduce(0) { total, page in total + (page?.reduce(0) { $0 + value($1) } ?? 0) }
    }

    /// Pages allocated now.
    var allocatedPages: Int { pages.reduce(0) { $0 + ($1 == nil ? 0 : 1) } }

    /// Bytes of the allocated pages.
    var allocatedBytes: Int { allocatedPages * (mask + 1) * MemoryLayout<Slot>.stride }
}
