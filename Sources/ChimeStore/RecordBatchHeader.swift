/// The fixed 56-byte header of a record batch, format version 1 (docs/formats.md).
///
///     0  i64 baseOffset       stamped by the log on append; outside the CRC
///     8  u32 batchLength      bytes after this field
///    12  u32 crc              CRC-32C of bytes [16, 12 + batchLength)
///    16  u8  magic            1
///    17  u8  entryType        1 = record batch
///    18  u16 attributes       bits 0-2 compression; the rest must be 0
///    20  u32 recordCount      > 0
///    24  i64 firstTimestamp   ms since the Unix epoch
///    32  i64 maxTimestamp
///    40  i64 producerId       -1 = none
///    48  i32 baseSequence     -1 = none
///    52  u32 recordsSize      uncompressed size of the record section
///    56  ...                  record section (recordsSize bytes raw, or LZ4 block)
public struct RecordBatchHeader: Sendable, Equatable {
    public static let size = 56
    public static let magic: UInt8 = 1
    public static let entryType: UInt8 = 1
    /// Bytes before the CRC-covered part.
    static let crcStart = 16
    static let lengthFieldEnd = 12

    public var baseOffset: Int64
    public var batchLength: UInt32
    public var crc: UInt32
    public var magic: UInt8
    public var entryType: UInt8
    public var attributes: UInt16
    public var recordCount: UInt32
    public var firstTimestamp: Int64
    public var maxTimestamp: Int64
    public var producerId: Int64
    public var baseSequence: Int32
    public var recordsSize: UInt32

    /// Size of the whole batch on disk.
    public var totalSize: Int { Self.lengthFieldEnd + Int(batchLength) }
    /// Valid once `RecordBatch.check` passed (which bounds baseOffset); saturating otherwise.
    public var lastOffset: Int64 { nextOffset &- 1 }
    public var nextOffset: Int64 {
        let (sum, overflow) = baseOffset.addingReportingOverflow(Int64(recordCount))
        return overflow ? .max : sum
    }
    public var compression: Compression? { Compression(rawValue: attributes & 0x7) }

    /// Reads the header fields; no check is made here (see `RecordBatch.validate`).
    @inline(__always)
    public init(_ bytes: UnsafeRawBufferPointer, at position: Int = 0) {
        precondition(bytes.count - position >= Self.size)
        baseOffset = LittleEndian.load(Int64.self, bytes, position)
        batchLength = LittleEndian.load(UInt32.self, bytes, position + 8)
        crc = LittleEndian.load(UInt32.self, bytes, position + 12)
        magic = bytes[position + 16]
        entryType = bytes[position + 17]
        attributes = LittleEndian.load(UInt16.self, bytes, position + 18)
        recordCount = LittleEndian.load(UInt32.self, bytes, position + 20)
        firstTimestamp = LittleEndian.load(Int64.self, bytes, position + 24)
        maxTimestamp = LittleEndian.load(Int64.self, bytes, position + 32)
        producerId = LittleEndian.load(Int64.self, bytes, position + 40)
        baseSequence = LittleEndian.load(Int32.self, bytes, position + 48)
        recordsSize = LittleEndian.load(UInt32.self, bytes, position + 52)
    }

    /// Cheap plausibility of a header before its CRC is computed: magic, type, attributes
    /// and a length that fits the limit. Used to resynchronise past damage.
    @inline(__always)
    func isPlausible(maxBatchBytes: Int) -> Bool {
        magic == Self.magic && entryType == Self.entryType && attributes & ~0x7 == 0
            && compression != nil && recordCount > 0 && totalSize >= Self.size && totalSize <= maxBatchBytes
    }
}
