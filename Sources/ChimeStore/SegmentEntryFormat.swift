/// How a log numbers what it stores.
public enum LogAddressing: Sendable {
    /// Each record takes one offset (the ready log: Kafka-style offsets).
    case records
    /// Each entry's address is its byte position in the whole log (the timer log: a list
    /// link is a position that can be read directly, no index needed).
    case bytes
}

/// What the segment layer needs to know of one entry, whatever its kind.
public struct EntryFrame: Sendable, Equatable {
    /// First address the entry covers; stamped by the log on append (bytes 0–7).
    public var address: Int64
    public var totalSize: Int
    /// Addresses it covers: its record count, or its size under byte addressing.
    public var span: Int64
    /// Newest timestamp inside, for retention (Int64.min when the kind has none).
    public var maxTimestamp: Int64

    public init(address: Int64, totalSize: Int, span: Int64, maxTimestamp: Int64) {
        self.address = address
        self.totalSize = totalSize
        self.span = span
        self.maxTimestamp = maxTimestamp
    }

    /// The address after this entry (saturating; checked entries never saturate).
    public var nextAddress: Int64 {
        let (sum, overflow) = address.addingReportingOverflow(span)
        return overflow ? .max : sum
    }
}

/// One kind of segment-log entry. Every kind shares the frame of docs/formats.md — i64
/// address, u32 length, u32 CRC-32C of everything after it, u8 magic, u8 entry type — so
/// the segment machinery (append, group commit, recovery, resync, retention) is shared and
/// only these static functions differ. Generic code over a format is specialised, so
/// nothing here costs a dynamic call per entry.
public protocol SegmentEntryFormat: Sendable {
    associatedtype Entry: Sendable

    /// Segment files are `<20-digit base address>.<fileExtension>`.
    static var fileExtension: String { get }
    static var addressing: LogAddressing { get }
    /// Bytes needed to judge an entry's plausibility and size.
    static var headerSize: Int { get }

    /// The frame of the entry at raw[at...] (headerSize bytes available) if its header is
    /// plausible: known magic and type, a size within limits. No CRC is computed.
    static func peek(_ raw: UnsafeRawBufferPointer, at: Int, limits: BatchLimits) -> EntryFrame?

    /// Full check of one whole entry at the start of `raw`: every header rule and the CRC.
    static func check(_ raw: UnsafeRawBufferPointer, limits: BatchLimits) throws -> EntryFrame

    /// Extra checks before an append (e.g. walking every record).
    static func validateForAppend(_ bytes: [UInt8], frame: EntryFrame, configuration: LogConfiguration) throws

    /// The entry over bytes that passed `check`.
    static func entry(checked bytes: [UInt8], frame: EntryFrame) -> Entry

    /// The address just past `entry`: where the next one starts.
    static func nextAddress(after entry: Entry) -> Int64
}

extension SegmentEntryFormat {
    /// Addresses a valid entry found at `at` may carry after damage that began at
    /// `damageStart`, where `expected` was due.
    static func resumeRange(expected: Int64, damageStart: Int64, at: Int64) -> ClosedRange<Int64> {
        switch addressing {
        case .bytes:
            // Addresses are positions: exactly one is possible.
            let exact = expected + (at - damageStart)
            return exact...exact
        case .records:
            // No record is shorter than 4 bytes, so the skipped bytes held at most this many.
            return expected...(expected + (at - damageStart) / Int64(RecordLayout.minimumSize))
        }
    }
}

/// Record batches (docs/formats.md), addressed by record offset: the ready log.
public enum RecordBatchFormat: SegmentEntryFormat {
    public typealias Entry = RecordBatch

    public static let fileExtension = "log"
    public static let addressing = LogAddressing.records
    public static let headerSize = RecordBatchHeader.size

    @inline(__always)
    public static func peek(_ raw: UnsafeRawBufferPointer, at: Int, limits: BatchLimits) -> EntryFrame? {
        let h = RecordBatchHeader(raw, at: at)
        guard h.isPlausible(maxBatchBytes: limits.maxBatchBytes) else { return nil }
        return frame(h)
    }

    public static func check(_ raw: UnsafeRawBufferPointer, limits: BatchLimits) throws -> EntryFrame {
        frame(try RecordBatch.check(raw, limits: limits))
    }

    public static func validateForAppend(_ bytes: [UInt8], frame: EntryFrame, configuration: LogConfiguration) throws {
        guard configuration.validateRecordsOnAppend else { return }
        try entry(checked: bytes, frame: frame).validateRecords()
    }

    public static func nextAddress(after batch: RecordBatch) -> Int64 { batch.nextOffset }

    public static func entry(checked bytes: [UInt8], frame: EntryFrame) -> RecordBatch {
        RecordBatch(checked: bytes, header: bytes.withUnsafeBytes { RecordBatchHeader($0) })
    }

    @inline(__always)
    static func frame(_ h: RecordBatchHeader) -> EntryFrame {
        EntryFrame(address: h.baseOffset, totalSize: h.totalSize, span: Int64(h.recordCount), maxTimestamp: h.maxTimestamp)
    }
}

/// The ready log: record batches by offset.
public typealias RecordLog = SegmentLog<RecordBatchFormat>
