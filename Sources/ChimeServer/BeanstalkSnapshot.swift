import ChimeStore
import Foundation

/// A checkpoint of the beanstalkd listener, so that a restart reads the journal only from
/// `journalFrom` on instead of from its start: the cold jobs (4–8 bytes each), the ids, the
/// sparse index of where puts are in the journal, and how far the wake-ups were read.
/// Jobs held whole are not in it: the journal is read back from the put of the lowest of
/// them (`journalFrom`), and puts of jobs that the snapshot holds cold are skipped there.
///
/// File `beanstalk.snapshot` (docs/formats.md, "beanstalkd snapshot"), little-endian:
/// magic "CBS1" (u32 0x3153_4243), version u8 (1), journalFrom i64, journalEnd i64,
/// wakeupsFrom i64, nextID u64, idLease u64, tube count u32 and per tube (number u16,
/// name length u8, name), index count u32 and per entry (id u64, offset i64), chunk count
/// u32 and per chunk (key u64, form u8: 0 sparse — count u32, slots u16, due seconds u32,
/// tube numbers u16, count each; 1 dense — sole tube u16, 65,536 due seconds u32, and when
/// the sole tube is 0, 65,536 tube numbers u16), then a CRC32C (u32) of everything before it.
/// Written atomically (temp file, fsync, rename).
struct BeanstalkSnapshot: Equatable {
    static let magic: UInt32 = 0x3153_4243
    static let version: UInt8 = 1
    static let fileName = "beanstalk.snapshot"

    /// The journal offset replay starts from, and the offset after the last record the
    /// state holds (delayed puts from there on may go cold: their wake-ups were scheduled).
    var journalFrom: Int64
    var journalEnd: Int64
    /// The offset of the first wake-up in `__beanstalk_due` not yet applied.
    var wakeupsFrom: Int64
    var nextID: UInt64
    var idLease: UInt64
    var cold: BeanstalkColdJobs
    var index: BeanstalkJournalIndex

    struct Unreadable: Error, CustomStringConvertible {
        var description: String
    }

    func encoded() -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(64 + cold.chunks.count * BeanstalkColdJobs.chunkSize * 6 + index.count * 16)
        precondition(UInt16(1).littleEndian == 1, "the snapshot's arrays are written as a little-endian host holds them")
        func raw<T: FixedWidthInteger>(_ v: T) { withUnsafeBytes(of: v.littleEndian) { out += $0 } }
        raw(Self.magic)
        out.append(Self.version)
        raw(journalFrom)
        raw(journalEnd)
        raw(wakeupsFrom)
        raw(nextID)
        raw(idLease)
        raw(UInt32(cold.tubeNames.count))
        for (number, name) in cold.tubeNames.sorted(by: { $0.key < $1.key }) {
            raw(number)
            out.append(UInt8(name.utf8.count))
            out += name.utf8
        }
        raw(UInt32(index.count))
        for (id, offset) in zip(index.ids, index.offsets) {
            raw(id)
            raw(offset)
        }
        raw(UInt32(cold.chunks.count))
        for key in cold.chunks.keys.sorted() {
            let c = cold.chunks[key]!
            raw(key)
            // The arrays go as the host holds them: little-endian (checked above).
            if let slots = c.slots {
                out.append(0)
                raw(UInt32(slots.count))
                slots.withUnsafeBytes { out += $0 }
                c.dues.withUnsafeBytes { out += $0 }
                c.tubes!.withUnsafeBytes { out += $0 }
            } else {
                out.append(1)
                raw(c.soleTube)
                c.dues.withUnsafeBytes { out += $0 }
                c.tubes?.withUnsafeBytes { out += $0 }
            }
        }
        raw(CRC32C.checksum(out))
        return out
    }

    init(
        journalFrom: Int64, journalEnd: Int64, wakeupsFrom: Int64, nextID: UInt64, idLease: UInt64, cold: BeanstalkColdJobs,
        index: BeanstalkJournalIndex
    ) {
        self.journalFrom = journalFrom
        self.journalEnd = journalEnd
        self.wakeupsFrom = wakeupsFrom
        self.nextID = nextID
        self.idLease = idLease
        self.cold = cold
        self.index = index
    }

    init(decoding bytes: [UInt8]) throws(Unreadable) {
        var at = 0
        func take<T: FixedWidthInteger>(_: T.Type) throws(Unreadable) -> T {
            let n = MemoryLayout<T>.size
            guard bytes.count - 4 - at >= n else { throw Unreadable(description: "the beanstalkd snapshot is cut short") }
            var v: T = 0
            for k in (0..<n).reversed() { v = v << 8 | T(truncatingIfNeeded: bytes[at + k]) }
            at += n
            return v
        }
        guard bytes.count >= 9 else { throw Unreadable(description: "the beanstalkd snapshot is cut short") }
        let stored = bytes.suffix(4).enumerated().reduce(UInt32(0)) { $0 | UInt32($1.element) << (8 * $1.offset) }
        guard CRC32C.checksum(bytes.dropLast(4)) == stored else { throw Unreadable(description: "the beanstalkd snapshot fails its CRC") }
        guard try take(UInt32.self) == Self.magic else { throw Unreadable(description: "not a beanstalkd snapshot") }
        let version = try take(UInt8.self)
        guard version == Self.version else { throw Unreadable(description: "a beanstalkd snapshot of version \(version), not \(Self.version)") }
        journalFrom = try take(Int64.self)
        journalEnd = try take(Int64.self)
        wakeupsFrom = try take(Int64.self)
        nextID = try take(UInt64.self)
        idLease = try take(UInt64.self)
        var names: [UInt16: String] = [:]
        for _ in 0..<(try take(UInt32.self)) {
            let number = try take(UInt16.self)
            let n = Int(try take(UInt8.self))
            guard bytes.count - 4 - at >= n else { throw Unreadable(description: "the beanstalkd snapshot is cut short") }
            names[number] = String(decoding: bytes[at..<at + n], as: UTF8.self)
            at += n
        }
        index = BeanstalkJournalIndex()
        for _ in 0..<(try take(UInt32.self)) {
            let id = try take(UInt64.self), offset = try take(Int64.self)
            index.append(id: id, offset: offset)
        }
        var chunks: [UInt64: BeanstalkColdChunk] = [:]
        precondition(UInt16(1).littleEndian == 1, "the snapshot's arrays are read as a little-endian host holds them")
        func array<T: FixedWidthInteger>(_: T.Type, _ count: Int) throws(Unreadable) -> [T] {
            let size = count * MemoryLayout<T>.size
            guard count >= 0, bytes.count - 4 - at >= size else { throw Unreadable(description: "the beanstalkd snapshot is cut short") }
            var out = [T](repeating: 0, count: count)
            bytes.withUnsafeBytes { b in out.withUnsafeMutableBytes { $0.copyMemory(from: UnsafeRawBufferPointer(rebasing: b[at..<at + size])) } }
            at += size
            return out
        }
        let n = BeanstalkColdJobs.chunkSize
        for _ in 0..<(try take(UInt32.self)) {
            let key = try take(UInt64.self)
            let chunk: BeanstalkColdChunk?
            switch try take(UInt8.self) {
            case 0:
                let k = Int(try take(UInt32.self))
                guard k <= n else { throw Unreadable(description: "a sparse chunk of \(k) jobs") }
                chunk = BeanstalkColdChunk(slots: try array(UInt16.self, k), dues: try array(UInt32.self, k), tubes: try array(UInt16.self, k))
            case 1:
                let sole = try take(UInt16.self)
                let dues = try array(UInt32.self, n)
                chunk = BeanstalkColdChunk(dense: dues, soleTube: sole, tubes: sole == 0 ? try array(UInt16.self, n) : nil)
            case let form:
                throw Unreadable(description: "a chunk of unknown form \(form)")
            }
            guard let chunk, chunks.updateValue(chunk, forKey: key) == nil else { throw Unreadable(description: "chunk \(key) is not whole, or twice") }
        }
        do {
            cold = try BeanstalkColdJobs(chunks: chunks, tubeNames: names)
        } catch {
            throw Unreadable(description: "a beanstalkd snapshot whose cold jobs do not add up: \(error)")
        }
        guard at == bytes.count - 4 else { throw Unreadable(description: "the beanstalkd snapshot has \(bytes.count - 4 - at) bytes too many") }
    }

    /// Reads the snapshot in `directory`; nil if there is none.
    static func read(directory: String) throws -> BeanstalkSnapshot? {
        guard let data = FileManager.default.contents(atPath: directory + "/" + fileName) else { return nil }
        return try BeanstalkSnapshot(decoding: [UInt8](data))
    }

    func write(directory: String) throws {
        try Directory.writeAtomically(encoded(), to: directory + "/" + Self.fileName, calls: .system)
    }
}
