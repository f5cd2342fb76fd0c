#if canImport(Glibc)
import Glibc
#endif
import ChimeStore

/// The small state files of the broker (producer state, group acks, fired-log marks):
/// `magic u32, version u8, body…, crc32c u32` (the CRC covers everything before it),
/// written atomically (temp file, fsync, rename, directory fsync). A file that fails its
/// checks is ignored: each is only a starting point that the logs after it complete.
struct SnapshotWriter {
    private(set) var bytes: [UInt8] = []

    init(magic: UInt32, version: UInt8) {
        LittleEndian.append(magic, to: &bytes)
        bytes.append(version)
    }

    mutating func u8(_ v: UInt8) { bytes.append(v) }
    mutating func u16(_ v: UInt16) { LittleEndian.append(v, to: &bytes) }
    mutating func u32(_ v: UInt32) { LittleEndian.append(v, to: &bytes) }
    mutating func i32(_ v: Int32) { LittleEndian.append(v, to: &bytes) }
    mutating func i64(_ v: Int64) { LittleEndian.append(v, to: &bytes) }
    mutating func u64(_ v: UInt64) { LittleEndian.append(v, to: &bytes) }

    func write(to path: String) throws {
        var out = bytes
        LittleEndian.append(CRC32C.checksum(out), to: &out)
        try Directory.writeAtomically(out, to: path, calls: .system)
    }
}

struct SnapshotReader {
    private let bytes: [UInt8]
    private var index = 5
    let version: UInt8

    /// Nil when the file is missing, too short, of another kind, or fails its CRC.
    init?(path: String, magic: UInt32) {
        guard let data = try? FileBytes.read(path), data.count >= 9 else { return nil }
        let (body, stored) = (data.dropLast(4), data.suffix(4))
        let crc = stored.withUnsafeBytes { LittleEndian.load(UInt32.self, $0, 0) }
        guard CRC32C.checksum(body) == crc, body.withUnsafeBytes({ LittleEndian.load(UInt32.self, $0, 0) }) == magic else { return nil }
        bytes = Array(body)
        version = bytes[4]
    }

    var remaining: Int { bytes.count - index }

    private mutating func take<T: FixedWidthInteger>(_: T.Type) -> T? {
        let size = MemoryLayout<T>.size
        guard index + size <= bytes.count else { return nil }
        var v: T = 0
        for k in (0..<size).reversed() { v = v << 8 | T(truncatingIfNeeded: bytes[index + k]) }
        index += size
        return v
    }

    mutating func u8() -> UInt8? { take(UInt8.self) }
    mutating func u16() -> UInt16? { take(UInt16.self) }
    mutating func u32() -> UInt32? { take(UInt32.self) }
    mutating func i32() -> Int32? { take(Int32.self) }
    mutating func i64() -> Int64? { take(Int64.self) }
    mutating func u64() -> UInt64? { take(UInt64.self) }
}

/// Reads a whole small file; nil when it does not exist.
enum FileBytes {
    static func read(_ path: String) throws -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            if errno == ENOENT { return nil }
            throw StoreError.system("open", errno: errno, file: path)
        }
        defer { close(fd) }
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw StoreError.system("read", errno: errno, file: path)
            }
            if n == 0 { return out }
            out.append(contentsOf: chunk[0..<n])
        }
    }
}

/// FNV-1a, 64 bits: the stable hash of keys (partition choice, dedup, key ordering). Stable
/// across processes and versions, unlike `Hasher`.
enum KeyHash {
    @inline(__always)
    static func of(_ bytes: [UInt8]) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in bytes {
            h ^= UInt64(b)
            h = h &* 0x0000_0100_0000_01b3
        }
        return h
    }
}
