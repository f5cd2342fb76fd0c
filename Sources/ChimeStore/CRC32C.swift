import CCRC32C

/// CRC-32C (Castagnoli). `CRC32C.checksum("123456789".utf8) == 0xE3069283`.
public enum CRC32C {
    /// Whether the SSE4.2 instruction is in use on this CPU.
    public static var isHardwareAccelerated: Bool { chime_crc32c_hardware_available() != 0 }

    @inline(__always)
    public static func update(_ crc: UInt32, _ bytes: UnsafeRawBufferPointer) -> UInt32 {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return crc }
        return chime_crc32c_update(crc, base, bytes.count)
    }

    @inline(__always)
    public static func checksum(_ bytes: UnsafeRawBufferPointer) -> UInt32 { update(0, bytes) }

    public static func checksum<C: Collection>(_ bytes: C) -> UInt32 where C.Element == UInt8 {
        if let crc = bytes.withContiguousStorageIfAvailable({ checksum(UnsafeRawBufferPointer($0)) }) {
            return crc
        }
        return Array(bytes).withUnsafeBytes { checksum($0) }
    }
}
