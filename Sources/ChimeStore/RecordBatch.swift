/// Size limits a batch is checked against before anything is allocated for it.
public struct BatchLimits: Sendable, Equatable {
    /// Largest batch on disk or on the wire, header included.
    public var maxBatchBytes: Int
    /// Largest declared uncompressed record section.
    public var maxRecordsSize: Int

    public init(maxBatchBytes: Int = 16 << 20, maxRecordsSize: Int = 64 << 20) {
        self.maxBatchBytes = maxBatchBytes
        self.maxRecordsSize = maxRecordsSize
    }
}

/// A whole, CRC-checked record batch.
public struct RecordBatch: Sendable {
    public let bytes: [UInt8]
    public let header: RecordBatchHeader

    public var baseOffset: Int64 { header.baseOffset }
    public var lastOffset: Int64 { header.lastOffset }
    public var nextOffset: Int64 { header.nextOffset }
    public var recordCount: Int { Int(header.recordCount) }

    /// Checks the header, the length and the CRC. Records are not decoded.
    public init(validating bytes: [UInt8], limits: BatchLimits = BatchLimits()) throws {
        header = try bytes.withUnsafeBytes { try Self.check($0, limits: limits) }
        guard header.totalSize == bytes.count else {
            throw StoreError(.malformedBatch, "batch length field says \(header.totalSize) bytes, got \(bytes.count)")
        }
        self.bytes = bytes
    }

    /// Trusted construction from bytes `check` has already passed.
    init(checked bytes: [UInt8], header: RecordBatchHeader) {
        self.bytes = bytes
        self.header = header
    }

    /// Checks one batch at the start of `raw` (which may hold more bytes after it).
    static func check(_ raw: UnsafeRawBufferPointer, limits: BatchLimits) throws -> RecordBatchHeader {
        guard raw.count >= RecordBatchHeader.size else {
            throw StoreError(.malformedBatch, "\(raw.count) bytes is shorter than the \(RecordBatchHeader.size)-byte batch header")
        }
        let header = RecordBatchHeader(raw)
        guard header.magic == RecordBatchHeader.magic else {
            throw StoreError(.malformedBatch, "unknown batch format version \(header.magic)")
        }
        guard header.entryType == RecordBatchHeader.entryType else {
            throw StoreError(.malformedBatch, "entry type \(header.entryType) is not a record batch")
        }
        guard header.attributes & ~0x7 == 0, header.compression != nil else {
            throw StoreError(.malformedBatch, "unknown batch attributes 0x\(String(header.attributes, radix: 16))")
        }
        guard header.totalSize >= RecordBatchHeader.size else {
            throw StoreError(.malformedBatch, "batch length \(header.batchLength) is shorter than its header")
        }
        guard header.totalSize <= limits.maxBatchBytes else {
            throw StoreError(.batchTooLarge, "batch of \(header.totalSize) bytes is over the limit of \(limits.maxBatchBytes)")
        }
        guard Int(header.recordsSize) <= limits.maxRecordsSize else {
            throw StoreError(.batchTooLarge, "declared record section of \(header.recordsSize) bytes is over the limit of \(limits.maxRecordsSize)")
        }
        guard header.recordCount > 0 else { throw StoreError(.malformedBatch, "batch holds no records") }
        // The smallest record takes 4 bytes (length, timestamp, key and header-count varints).
        guard UInt64(header.recordCount) * UInt64(RecordLayout.minimumSize) <= UInt64(header.recordsSize) else {
            throw StoreError(.malformedBatch, "\(header.recordCount) records cannot fit in \(header.recordsSize) bytes")
        }
        guard header.baseOffset >= 0, header.baseOffset <= Int64.max - Int64(header.recordCount) else {
            throw StoreError(.malformedBatch, "base offset \(header.baseOffset) is out of range")
        }
        guard raw.count >= header.totalSize else {
            throw StoreError(.malformedBatch, "batch declares \(header.totalSize) bytes, only \(raw.count) present")
        }
        if header.compression == Compression.none {
            guard Int(header.recordsSize) == header.totalSize - RecordBatchHeader.size else {
                throw StoreError(.malformedBatch, "uncompressed section is \(header.totalSize - RecordBatchHeader.size) bytes, header says \(header.recordsSize)")
            }
        }
        let crc = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: raw[RecordBatchHeader.crcStart..<header.totalSize]))
        guard crc == header.crc else {
            throw StoreError(.corruptBatch, "CRC mismatch: stored 0x\(String(header.crc, radix: 16)), computed 0x\(String(crc, radix: 16))")
        }
        return header
    }

    /// Runs `body` over the uncompressed record section.
    func withRecordSection<R>(_ body: (UnsafeRawBufferPointer) throws -> R) throws -> R {
        try bytes.withUnsafeBytes { raw in
            let stored = UnsafeRawBufferPointer(rebasing: raw[RecordBatchHeader.size..<header.totalSize])
            switch header.compression {
            case .lz4:
                let section = try LZ4Block.decompress(stored, decompressedSize: Int(header.recordsSize))
                return try section.withUnsafeBytes(body)
            default:
                return try body(stored)
            }
        }
    }

    /// Walks every record and checks the structure: lengths inside bounds, exactly
    /// `recordCount` records filling exactly the section, the first record's timestamp the
    /// header's `firstTimestamp` and the largest its `maxTimestamp` (retention trusts it).
    /// Nothing is allocated for uncompressed batches.
    public func validateRecords() throws {
        try walk(checkingHeader: true) { _, _ in }
    }

    /// Every record with its offset, after the checks of `validateRecords` (in the same
    /// pass): for batches a client encoded, which are stored as they came.
    public func validatedRecords() throws -> [StoredRecord] {
        try decode(checkingHeader: true)
    }

    /// Decodes every record with its offset. Lenient about the header's timestamps and
    /// trailing bytes: it reads what is already stored, and nothing stored may stop a read.
    public func records() throws -> [StoredRecord] {
        try decode(checkingHeader: false)
    }

    private func decode(checkingHeader: Bool) throws -> [StoredRecord] {
        var out: [StoredRecord] = []
        out.reserveCapacity(recordCount)
        let base = baseOffset
        try walk(checkingHeader: checkingHeader) { section, layout in
            out.append(StoredRecord(offset: base + Int64(out.count), record: layout.materialize(section)))
        }
        return out
    }

    /// Parses `recordCount` records, each one malformed or not; with `checkingHeader`, also
    /// holds the header's first and largest timestamp and its count to what the records say.
    private func walk(checkingHeader: Bool, _ visit: (UnsafeRawBufferPointer, RecordLayout) -> Void) throws {
        let count = recordCount
        let first = header.firstTimestamp
        let declaredMax = header.maxTimestamp
        try withRecordSection { section in
            var index = 0
            var maxTimestamp = Int64.min
            for n in 0..<count {
                guard let layout = RecordLayout.parse(section, &index, firstTimestamp: first) else {
                    throw StoreError(.malformedBatch, "record \(n) of \(count) is malformed")
                }
                if checkingHeader && n == 0 && layout.timestamp != first {
                    throw StoreError(.malformedBatch, "first record's timestamp \(layout.timestamp) differs from the batch's firstTimestamp \(first)")
                }
                maxTimestamp = max(maxTimestamp, layout.timestamp)
                visit(section, layout)
            }
            guard checkingHeader else { return }
            guard index == section.count else {
                throw StoreError(.malformedBatch, "\(section.count - index) bytes follow record \(count) of \(count): the batch holds more records than its recordCount")
            }
            guard maxTimestamp == declaredMax else {
                throw StoreError(.malformedBatch, "batch maxTimestamp \(declaredMax) differs from its records' \(maxTimestamp)")
            }
        }
    }
}

/// Where one record's fields lie inside a record section.
struct RecordLayout {
    /// Length, timestamp delta, key length and header count: one byte each at least.
    static let minimumSize = 4

    var timestamp: Int64
    var key: Range<Int>?
    var headersStart: Int
    var headerCount: Int
    var body: Range<Int>

    /// Parses the record at `index` and moves `index` past it; nil if it is malformed.
    @inline(__always)
    static func parse(_ s: UnsafeRawBufferPointer, _ index: inout Int, firstTimestamp: Int64) -> RecordLayout? {
        let end = s.count
        guard let length = VarInt.read(s, &index, end: end), length <= UInt64(end - index) else { return nil }
        let recordEnd = index + Int(length)
        guard let delta = VarInt.readSigned(s, &index, end: recordEnd),
            let keyField = VarInt.read(s, &index, end: recordEnd)
        else { return nil }
        var key: Range<Int>? = nil
        if keyField > 0 {
            let keyLength = keyField - 1
            guard keyLength <= UInt64(recordEnd - index) else { return nil }
            key = index..<(index + Int(keyLength))
            index += Int(keyLength)
        }
        guard let headerCount = VarInt.read(s, &index, end: recordEnd), headerCount <= UInt64(recordEnd - index) / 2 else {
            return nil
        }
        let headersStart = index
        for _ in 0..<Int(headerCount) {
            guard let nameLength = VarInt.read(s, &index, end: recordEnd), nameLength <= UInt64(recordEnd - index) else { return nil }
            index += Int(nameLength)
            guard let valueLength = VarInt.read(s, &index, end: recordEnd), valueLength <= UInt64(recordEnd - index) else { return nil }
            index += Int(valueLength)
        }
        let body = index..<recordEnd
        index = recordEnd
        return RecordLayout(
            timestamp: firstTimestamp &+ delta, key: key, headersStart: headersStart, headerCount: Int(headerCount), body: body)
    }

    func materialize(_ s: UnsafeRawBufferPointer) -> Record {
        var headers: [RecordHeader] = []
        if headerCount > 0 {
            headers.reserveCapacity(headerCount)
            var index = headersStart
            for _ in 0..<headerCount {
                // Bounds were checked by parse.
                let nameLength = Int(VarInt.read(s, &index, end: body.lowerBound)!)
                let name = String(decoding: UnsafeRawBufferPointer(rebasing: s[index..<(index + nameLength)]), as: UTF8.self)
                index += nameLength
                let valueLength = Int(VarInt.read(s, &index, end: body.lowerBound)!)
                headers.append(RecordHeader(name: name, value: Array(s[index..<(index + valueLength)])))
                index += valueLength
            }
        }
        return Record(
            timestamp: timestamp, key: key.map { Array(s[$0]) }, headers: headers, body: Array(s[body]))
    }
}
