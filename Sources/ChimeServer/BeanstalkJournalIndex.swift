/// Where puts are in the journal: every so many puts (and wherever the records between
/// two puts grow many) an id and its record's offset, so that reading a put back scans
/// a bounded stretch of the journal. Ids and offsets both rise.
struct BeanstalkJournalIndex: Equatable {
    private(set) var ids: [UInt64] = []
    private(set) var offsets: [Int64] = []
    static let everyPuts: UInt64 = 64
    static let everyRecords: Int64 = 512

    var count: Int { ids.count }

    /// Notes a put at `offset`, if it is far enough from the last entry.
    mutating func note(id: UInt64, offset: Int64) {
        if let lastID = ids.last, id < lastID + Self.everyPuts, offset < offsets.last! + Self.everyRecords { return }
        append(id: id, offset: offset)
    }

    mutating func append(id: UInt64, offset: Int64) {
        assert(ids.last.map { id > $0 } ?? true, "index ids rise")
        ids.append(id)
        offsets.append(offset)
    }

    /// The index of the first entry whose id is above `id` (`count` if none).
    private func firstEntry(above id: UInt64) -> Int {
        var (lo, hi) = (0, ids.count)
        while lo < hi {
            let mid = (lo + hi) / 2
            if ids[mid] <= id { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }

    /// The offset to read from to find the put of `id`: that of the last entry at or
    /// before it.
    func offset(atOrBefore id: UInt64) -> Int64? {
        let k = firstEntry(above: id)
        return k == 0 ? nil : offsets[k - 1]
    }

    /// The offset of the first entry after `id`'s: the put of `id`, if any, lies before it.
    func offset(after id: UInt64) -> Int64? {
        let k = firstEntry(above: id)
        return k == ids.count ? nil : offsets[k]
    }

    /// Drops entries that only lead to ids below `id` (keeping the one at or before it).
    mutating func drop(below id: UInt64) {
        let keep = max(0, firstEntry(above: id) - 1)
        guard keep > 0 else { return }
        ids.removeFirst(keep)
        offsets.removeFirst(keep)
    }
}
