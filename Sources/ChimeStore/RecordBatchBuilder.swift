/// Encodes records into one batch in the on-disk (and wire) format.
///
/// Each record in the record section:
///
///     varint        recordLength       bytes after this varint
///     zigzag varint timestampDelta     against the batch's firstTimestamp
///     varint        keyLength + 1      0 = no key
///     bytes         key
///     varint        headerCount
///       varint nameLength, name (UTF-8), varint valueLength, value   (per header)
///     bytes         body               the rest of the record
///
/// Work is per batch: one growing buffer for the section, one output allocation.
public struct RecordBatchBuilder: Sendable {
    public let compression: Compression
    public let producerId: Int64
    public let baseSequence: Int32
    private var section: [UInt8]
    private var scratch: [UInt8] = []
    public private(set) var recordCount: Int = 0
    private var firstTimestamp: Int64 = 0
    private var maxTimestamp: Int64 = .min

    public init(compression: Compression = .none, producerId: Int64 = -1, baseSequence: Int32 = -1, capacity: Int = 4096) {
        self.compression = compression
        self.producerId = producerId
        self.baseSequence = baseSequence
        section = []
        section.reserveCapacity(capacity)
    }

    public var isEmpty: Bool { recordCount == 0 }
    /// Uncompressed size of the record section so far.
    public var sectionSize: Int { section.count }

    public mutating func append(_ record: Record) {
        record.body.withUnsafeBytes { body in
            append(timestamp: record.timestamp, key: record.key, headers: record.headers, body: body)
        }
    }

    public mutating func append(timestamp: Int64, key: [UInt8]? = nil, headers: [RecordHeader] = [], body: UnsafeRawBufferPointer) {
        if recordCount == 0 { firstTimestamp = timestamp }
        maxTimestamp = max(maxTimestamp, timestamp)
        // Fields after the length go to scratch first so the length prefix can be written.
        scratch.removeAll(keepingCapacity: true)
        VarInt.appendSigned(timestamp &- firstTimestamp, to: &scratch)
        if let key {
            VarInt.append(UInt64(key.count) + 1, to: &scratch)
            scratch.append(contentsOf: key)
        } else {
            VarInt.append(0, to: &scratch)
        }
        VarInt.append(UInt64(headers.count), to: &scratch)
        for header in headers {
            // Straight from the string's UTF-8 view: no array per header.
            let name = header.name.utf8
            VarInt.append(UInt64(name.count), to: &scratch)
            scratch.append(contentsOf: name)
            VarInt.append(UInt64(header.value.count), to: &scratch)
            scratch.append(contentsOf: header.value)
        }
        VarInt.append(UInt64(scratch.count + body.count), to: &section)
        section.append(contentsOf: scratch)
        section.append(contentsOf: body)
        recordCount += 1
    }

    /// Appends a record whose part after the timestamp is encoded already — `payload`:
    /// varint keyLength + 1, key, varint headerCount, headers, body (as a timer entry holds
    /// a scheduled record) — with up to two more headers after its own. The bytes are
    /// copied as they are: nothing is decoded into arrays. Returns false (and appends
    /// nothing) when `payload` is not well formed.
    @discardableResult
    public mutating func append(timestamp: Int64, payload: UnsafeRawBufferPointer, adding first: RecordHeader? = nil, _ second: RecordHeader? = nil) -> Bool {
        let end = payload.count
        var i = 0
        guard let keyField = VarInt.read(payload, &i, end: end), keyField <= UInt64(end - i) + 1 else { return false }
        if keyField > 0 { i += Int(keyField - 1) }
        let afterKey = i
        guard let count = VarInt.read(payload, &i, end: end), count <= UInt64(end - i) / 2 else { return false }
        let afterCount = i
        for _ in 0..<Int(count) {
            guard let n = VarInt.read(payload, &i, end: end), n <= UInt64(end - i) else { return false }
            i += Int(n)
            guard let v = VarInt.read(payload, &i, end: end), v <= UInt64(end - i) else { return false }
            i += Int(v)
        }
        let afterHeaders = i
        func encodedSize(_ h: RecordHeader?) -> Int {
            guard let h else { return 0 }
            let n = h.name.utf8.count
            return VarInt.size(UInt64(n)) + n + VarInt.size(UInt64(h.value.count)) + h.value.count
        }
        let added = (first == nil ? 0 : 1) + (second == nil ? 0 : 1)
        if recordCount == 0 { firstTimestamp = timestamp }
        maxTimestamp = max(maxTimestamp, timestamp)
        let delta = timestamp &- firstTimestamp
        let zigzag = UInt64(bitPattern: (delta << 1) ^ (delta >> 63))
        let length = VarInt.size(zigzag) + afterKey + VarInt.size(count + UInt64(added)) + (afterHeaders - afterCount)
            + encodedSize(first) + encodedSize(second) + (end - afterHeaders)
        section.reserveCapacity(section.count + length + 10)
        VarInt.append(UInt64(length), to: &section)
        VarInt.append(zigzag, to: &section)
        section.append(contentsOf: UnsafeRawBufferPointer(rebasing: payload[0..<afterKey]))
        VarInt.append(count + UInt64(added), to: &section)
        section.append(contentsOf: UnsafeRawBufferPointer(rebasing: payload[afterCount..<afterHeaders]))
        func put(_ h: RecordHeader?) {
            guard let h else { return }
            VarInt.append(UInt64(h.name.utf8.count), to: &section)
            section.append(contentsOf: h.name.utf8)
            VarInt.append(UInt64(h.value.count), to: &section)
            section.append(contentsOf: h.value)
        }
        put(first)
        put(second)
        section.append(contentsOf: UnsafeRawBufferPointer(rebasing: payload[afterHeaders..<end]))
        recordCount += 1
        return true
    }

    /// The finished batch: baseOffset 0 (the log stamps the real one), CRC filled in.
    /// LZ4 is kept only when it makes the section smaller.
    public func build() throws -> [UInt8] {
        guard recordCount > 0 else { throw StoreError(.invalidArgument, "a batch needs at least one record") }
        guard section.count <= Int(UInt32.max) - RecordBatchHeader.size else {
            throw StoreError(.batchTooLarge, "record section of \(section.count) bytes")
        }
        var attributes: UInt16 = 0
        var output: [UInt8]
        if compression == .lz4 && !section.isEmpty {
            let bound = LZ4Block.compressBound(section.count)
            output = [UInt8](repeating: 0, count: RecordBatchHeader.size + bound)
            let compressed = try output.withUnsafeMutableBytes { out in
                try section.withUnsafeBytes { src in
                    try LZ4Block.compress(src, into: UnsafeMutableRawBufferPointer(rebasing: out[RecordBatchHeader.size...]))
                }
            }
            if compressed < section.count {
                output.removeLast(bound - compressed)
                attributes = Compression.lz4.rawValue
            } else {
                output.removeLast(bound)
                output.append(contentsOf: section)
            }
        } else {
            output = [UInt8](repeating: 0, count: RecordBatchHeader.size)
            output.reserveCapacity(RecordBatchHeader.size + section.count)
            output.append(contentsOf: section)
        }
        let total = output.count
        output.withUnsafeMutableBytes { b in
            LittleEndian.store(Int64(0), b, 0)
            LittleEndian.store(UInt32(total - RecordBatchHeader.lengthFieldEnd), b, 8)
            b[16] = RecordBatchHeader.magic
            b[17] = RecordBatchHeader.entryType
            LittleEndian.store(attributes, b, 18)
            LittleEndian.store(UInt32(recordCount), b, 20)
            LittleEndian.store(firstTimestamp, b, 24)
            LittleEndian.store(maxTimestamp, b, 32)
            LittleEndian.store(producerId, b, 40)
            LittleEndian.store(baseSequence, b, 48)
            LittleEndian.store(UInt32(section.count), b, 52)
            let crc = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: b[RecordBatchHeader.crcStart...]))
            LittleEndian.store(crc, b, 12)
        }
        return output
    }

    /// Clears the records, keeping the buffers for the next batch.
    public mutating func reset() {
        section.removeAll(keepingCapacity: true)
        recordCount = 0
        maxTimestamp = .min
    }
}
