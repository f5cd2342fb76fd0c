import ChimeStore

/// A snapshot of the wheel: where in the timer log it was taken, the wheel time, the next
/// fire sequence and every non-empty slot. Opening loads it and replays only the entries
/// after `logPosition`. Written atomically (temp file, fsync, rename, fsync directory)
/// after the timer log is synced up to `logPosition`, so it never refers to an entry a
/// crash could take away.
///
/// `wheel.checkpoint`, format version 3 (docs/formats.md):
///
///     0  u32 magic "CWCK"     4 u32 crc32c of [8, end)    8 u16 version
///    10  u8  slotBits        11 u8 levels                 12 u32 slot count (n)
///    16  i64 logPosition     24 i64 time                  32 u64 nextFireSequence
///    40  n × 48 bytes: u8 level, u8 0, u16 slot, u32 0, i64 head, i64 start, i32 count, i32 cancels,
///        i64 cut, i64 oldest
///    then u32 chunk count (m), u32 chunk shift, and m × 16 bytes: i64 chunk (position >> shift),
///    i32 live bytes, i32 0
struct WheelCheckpoint: Equatable {
    static let magic: UInt32 = 0x4B43_5743  // "CWCK" little-endian
    static let version: UInt16 = 3
    static let headerSize = 40
    static let slotSize = 48

    struct SlotState: Equatable {
        var level: Int
        var slot: Int
        var head: Int64
        var start: Int64
        var count: Int32
        var cancels: Int32
        var cut: Int64
        var oldest: Int64
    }

    var geometry: WheelGeometry
    var logPosition: Int64
    var time: Int64
    var nextFireSequence: UInt64
    var slots: [SlotState]
    /// Live timer-log bytes per 1 MiB chunk (for reclaiming segments).
    var liveChunks: [Int64: Int32] = [:]
    var chunkShift: Int64 = 20

    func encode() -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(Self.headerSize + slots.count * Self.slotSize)
        LittleEndian.append(Self.magic, to: &out)
        LittleEndian.append(UInt32(0), to: &out)
        LittleEndian.append(Self.version, to: &out)
        out.append(UInt8(geometry.slotBits))
        out.append(UInt8(geometry.levels))
        LittleEndian.append(UInt32(slots.count), to: &out)
        LittleEndian.append(logPosition, to: &out)
        LittleEndian.append(time, to: &out)
        LittleEndian.append(nextFireSequence, to: &out)
        for s in slots {
            out.append(UInt8(s.level))
            out.append(0)
            LittleEndian.append(UInt16(s.slot), to: &out)
            LittleEndian.append(UInt32(0), to: &out)
            LittleEndian.append(s.head, to: &out)
            LittleEndian.append(s.start, to: &out)
            LittleEndian.append(s.count, to: &out)
            LittleEndian.append(s.cancels, to: &out)
            LittleEndian.append(s.cut, to: &out)
            LittleEndian.append(s.oldest, to: &out)
        }
        LittleEndian.append(UInt32(liveChunks.count), to: &out)
        LittleEndian.append(UInt32(chunkShift), to: &out)
        for (chunk, count) in liveChunks.sorted(by: { $0.key < $1.key }) {
            LittleEndian.append(chunk, to: &out)
            LittleEndian.append(count, to: &out)
            LittleEndian.append(Int32(0), to: &out)
        }
        let crc = out.withUnsafeBytes { CRC32C.checksum(UnsafeRawBufferPointer(rebasing: $0[8...])) }
        out.withUnsafeMutableBytes { LittleEndian.store(crc, $0, 4) }
        return out
    }

    /// Decodes a checkpoint; nil when it is damaged, of another version or for another
    /// geometry (the caller then replays the whole log).
    static func decode(_ bytes: [UInt8], geometry: WheelGeometry) -> WheelCheckpoint? {
        bytes.withUnsafeBytes { raw -> WheelCheckpoint? in
            guard raw.count >= headerSize, LittleEndian.load(UInt32.self, raw, 0) == magic,
                LittleEndian.load(UInt32.self, raw, 4) == CRC32C.checksum(UnsafeRawBufferPointer(rebasing: raw[8...])),
                LittleEndian.load(UInt16.self, raw, 8) == version,
                Int(raw[10]) == geometry.slotBits, Int(raw[11]) == geometry.levels
            else { return nil }
            let n = Int(LittleEndian.load(UInt32.self, raw, 12))
            let chunksAt = headerSize + n * slotSize
            guard raw.count >= chunksAt + 8 else { return nil }
            let m = Int(LittleEndian.load(UInt32.self, raw, chunksAt))
            guard raw.count == chunksAt + 8 + m * 16 else { return nil }
            var chunks: [Int64: Int32] = [:]
            for k in 0..<m {
                let at = chunksAt + 8 + k * 16
                let count = LittleEndian.load(Int32.self, raw, at + 8)
                guard count > 0 else { return nil }
                chunks[LittleEndian.load(Int64.self, raw, at)] = count
            }
            var slots: [SlotState] = []
            slots.reserveCapacity(n)
            for k in 0..<n {
                let at = headerSize + k * slotSize
                let s = SlotState(
                    level: Int(raw[at]), slot: Int(LittleEndian.load(UInt16.self, raw, at + 2)),
                    head: LittleEndian.load(Int64.self, raw, at + 8), start: LittleEndian.load(Int64.self, raw, at + 16),
                    count: LittleEndian.load(Int32.self, raw, at + 24), cancels: LittleEndian.load(Int32.self, raw, at + 28),
                    cut: LittleEndian.load(Int64.self, raw, at + 32), oldest: LittleEndian.load(Int64.self, raw, at + 40))
                guard s.level < geometry.levels, s.slot < geometry.slotsPerLevel, s.head >= 0, s.count > 0 else { return nil }
                slots.append(s)
            }
            return WheelCheckpoint(
                geometry: geometry, logPosition: LittleEndian.load(Int64.self, raw, 16), time: LittleEndian.load(Int64.self, raw, 24),
                nextFireSequence: LittleEndian.load(UInt64.self, raw, 32), slots: slots, liveChunks: chunks,
                chunkShift: Int64(LittleEndian.load(UInt32.self, raw, chunksAt + 4)))
        }
    }
}
