/// The sparse offset→position index of one segment: an entry for the first batch and then
/// for the first batch after every `intervalBytes` of data. Lookups give a position at or
/// before the wanted batch; the segment's own bytes always have the last word.
///
/// On disk (`<base>.index`, format version 2, docs/formats.md):
///
///     0  u32 magic "CIDX"   4  u32 crc32c of [8, end)   8 u16 version  10 u16 reserved
///    12  u32 entryCount    16  i64 baseOffset          24 i64 nextOffset
///    32  i64 maxTimestamp  40  u64 coveredBytes        48 i64 segmentChangeTime
///    56  entries: (u32 relativeOffset, u32 position)
///
/// An index vouches for its segment only while the segment's size and status-change time
/// (`st_ctim`, which every write and truncate moves and no user call can set back) are
/// those it was written with: bytes changed since are scanned again when the log opens,
/// and damage in them is reported then.
struct SegmentIndex: Sendable, Equatable {
    struct Entry: Sendable, Equatable {
        var relativeOffset: UInt32
        var position: UInt32
    }

    static let magic: UInt32 = 0x5844_4943  // "CIDX" little-endian
    static let version: UInt16 = 2
    static let headerSize = 56

    let baseOffset: Int64
    let intervalBytes: Int
    private(set) var entries: [Entry] = []
    private var bytesSinceEntry = 0

    init(baseOffset: Int64, intervalBytes: Int) {
        self.baseOffset = baseOffset
        self.intervalBytes = intervalBytes
    }

    /// Notes a batch appended at `position`.
    @inline(__always)
    mutating func didAppend(baseOffset offset: Int64, position: Int64, size: Int) {
        if entries.isEmpty || bytesSinceEntry >= intervalBytes {
            // Entries are 32-bit. The log rolls before either field could overflow, but a
            // scanned file may be anything: an entry that does not fit is simply left out
            // (lookups then start from an earlier entry, which is only slower).
            if let relative = UInt32(exactly: offset - baseOffset), let at = UInt32(exactly: position),
                entries.last.map({ relative > $0.relativeOffset && at > $0.position }) ?? true
            {
                entries.append(Entry(relativeOffset: relative, position: at))
                bytesSinceEntry = 0
            }
        }
        bytesSinceEntry += size
    }

    /// Position and base offset of the last indexed batch whose base offset is ≤ `offset`
    /// (the segment's start if none). A reader must find that very offset there.
    func entry(atOrBefore offset: Int64) -> (position: Int64, offset: Int64) {
        guard offset >= baseOffset else { return (0, baseOffset) }
        let relative = UInt32(clamping: offset - baseOffset)
        var low = 0, high = entries.count
        while low < high {
            let mid = (low + high) / 2
            if entries[mid].relativeOffset <= relative { low = mid + 1 } else { high = mid }
        }
        return low == 0 ? (0, baseOffset) : (Int64(entries[low - 1].position), baseOffset + Int64(entries[low - 1].relativeOffset))
    }

    func position(atOrBefore offset: Int64) -> Int64 { entry(atOrBefore: offset).position }

    /// Drops entries at or past `position` (after a torn tail was cut).
    mutating func truncate(toPosition position: Int64) {
        while let last = entries.last, Int64(last.position) >= position { entries.removeLast() }
        bytesSinceEntry = intervalBytes
    }

    func encode(nextOffset: Int64, maxTimestamp: Int64, covered: FileStatus) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(Self.headerSize + entries.count * 8)
        LittleEndian.append(Self.magic, to: &out)
        LittleEndian.append(UInt32(0), to: &out)
        LittleEndian.append(Self.version, to: &out)
        LittleEndian.append(UInt16(0), to: &out)
        LittleEndian.append(UInt32(entries.count), to: &out)
        LittleEndian.append(baseOffset, to: &out)
        LittleEndian.append(nextOffset, to: &out)
        LittleEndian.append(maxTimestamp, to: &out)
        LittleEndian.append(UInt64(covered.size), to: &out)
        LittleEndian.append(covered.changeTime, to: &out)
        for e in entries {
            LittleEndian.append(e.relativeOffset, to: &out)
            LittleEndian.append(e.position, to: &out)
        }
        let crc = out.withUnsafeBytes { CRC32C.checksum(UnsafeRawBufferPointer(rebasing: $0[8...])) }
        out.withUnsafeMutableBytes { LittleEndian.store(crc, $0, 4) }
        return out
    }

    struct Loaded {
        var index: SegmentIndex
        var nextOffset: Int64
        var maxTimestamp: Int64
    }

    /// Decodes an index file; nil when it is damaged, of another version (version 1 had no
    /// change time: its segment is scanned once and the index rewritten), for another
    /// segment, or stale (the segment's size or change time differs from what it covers).
    static func decode(_ bytes: [UInt8], baseOffset: Int64, segment: FileStatus, intervalBytes: Int) -> Loaded? {
        let segmentSize = segment.size
        return bytes.withUnsafeBytes { raw -> Loaded? in
            guard raw.count >= headerSize,
                LittleEndian.load(UInt32.self, raw, 0) == magic,
                LittleEndian.load(UInt16.self, raw, 8) == version
            else { return nil }
            let count = Int(LittleEndian.load(UInt32.self, raw, 12))
            guard raw.count == headerSize + count * 8,
                LittleEndian.load(UInt32.self, raw, 4) == CRC32C.checksum(UnsafeRawBufferPointer(rebasing: raw[8...])),
                LittleEndian.load(Int64.self, raw, 16) == baseOffset,
                LittleEndian.load(UInt64.self, raw, 40) == UInt64(segmentSize),
                LittleEndian.load(Int64.self, raw, 48) == segment.changeTime
            else { return nil }
            let nextOffset = LittleEndian.load(Int64.self, raw, 24)
            guard nextOffset >= baseOffset else { return nil }
            var index = SegmentIndex(baseOffset: baseOffset, intervalBytes: intervalBytes)
            index.entries.reserveCapacity(count)
            var previous: Entry? = nil
            for i in 0..<count {
                let e = Entry(
                    relativeOffset: LittleEndian.load(UInt32.self, raw, headerSize + i * 8),
                    position: LittleEndian.load(UInt32.self, raw, headerSize + i * 8 + 4))
                // Entries must rise strictly and point inside the segment.
                if let p = previous, e.relativeOffset <= p.relativeOffset || e.position <= p.position { return nil }
                guard Int64(e.position) < segmentSize, Int64(e.relativeOffset) < nextOffset - baseOffset else { return nil }
                index.entries.append(e)
                previous = e
            }
            index.bytesSinceEntry = intervalBytes
            return Loaded(index: index, nextOffset: nextOffset, maxTimestamp: LittleEndian.load(Int64.self, raw, 32))
        }
    }
}
