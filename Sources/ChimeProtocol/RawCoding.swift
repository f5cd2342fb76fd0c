import NIOCore

// The hot payloads (a fetch's deliveries, a settle's receipts) are written and read through
// one raw view of the buffer per message or per run instead of one ByteBuffer call per
// field: each ByteBuffer call pays a uniqueness check and, in code inlined from NIOCore,
// run-time exclusivity checks, which were most of the cost of coding a delivery. The bytes
// are exactly those of the field-by-field codecs (docs/formats.md); tests hold the two to
// the same output.

/// Little-endian stores into memory the caller sized exactly.
struct RawWriter {
    private let base: UnsafeMutableRawBufferPointer
    private(set) var count = 0

    init(_ base: UnsafeMutableRawBufferPointer) { self.base = base }

    @inline(__always)
    mutating func put<T: FixedWidthInteger>(_ v: T) {
        precondition(count + MemoryLayout<T>.size <= base.count, "raw write past the space sized for it")
        base.storeBytes(of: v.littleEndian, toByteOffset: count, as: T.self)
        count += MemoryLayout<T>.size
    }

    @inline(__always)
    mutating func put(bytes: UnsafeRawBufferPointer) {
        precondition(count + bytes.count <= base.count, "raw write past the space sized for it")
        if let from = bytes.baseAddress, !bytes.isEmpty { (base.baseAddress! + count).copyMemory(from: from, byteCount: bytes.count) }
        count += bytes.count
    }

    /// u16 length + UTF-8. Only for strings of at most 65,535 bytes (`WireSizes.fitsRaw`).
    mutating func put(string s: String) {
        var s = s
        s.withUTF8 { utf8 in
            put(UInt16(utf8.count))
            put(bytes: UnsafeRawBufferPointer(utf8))
        }
    }

    /// u32 length + bytes; 0xFFFFFFFF for none.
    mutating func put(optionalBytes b: [UInt8]?) {
        guard let b else { return put(UInt32.max) }
        put(UInt32(b.count))
        b.withUnsafeBytes { put(bytes: $0) }
    }
}

/// Bounds-checked little-endian reads from a raw view; running past the end is a
/// `.malformed` error naming the field, as `WireReader` reports it.
struct RawReader {
    private let base: UnsafeRawBufferPointer
    private(set) var count = 0

    init(_ base: UnsafeRawBufferPointer) { self.base = base }

    private func malformed(_ what: StaticString) -> ProtocolError {
        ProtocolError(.malformed, "\(what) runs past the end of the payload")
    }

    @inline(__always)
    mutating func take<T: FixedWidthInteger>(_: T.Type, _ what: StaticString) throws -> T {
        guard base.count - count >= MemoryLayout<T>.size else { throw malformed(what) }
        defer { count += MemoryLayout<T>.size }
        return T(littleEndian: base.loadUnaligned(fromByteOffset: count, as: T.self))
    }

    mutating func take(bytes n: Int, _ what: StaticString) throws -> UnsafeRawBufferPointer {
        guard n >= 0, base.count - count >= n else { throw malformed(what) }
        defer { count += n }
        return UnsafeRawBufferPointer(rebasing: base[count..<(count + n)])
    }

    /// u16 length + strict UTF-8; `previous` is returned when the bytes are its own.
    mutating func string(_ what: StaticString, sameAs previous: inout String?) throws -> String {
        let bytes = try take(bytes: Int(try take(UInt16.self, what)), what)
        if let p = previous, p.utf8.count == bytes.count, p.utf8.elementsEqual(bytes) { return p }
        guard let s = String(validating: bytes, as: UTF8.self) else { throw ProtocolError(.malformed, "\(what) is not UTF-8") }
        previous = s
        return s
    }

    mutating func string(_ what: StaticString) throws -> String {
        var none: String? = nil
        return try string(what, sameAs: &none)
    }

    /// u32 length + bytes; 0xFFFFFFFF is none.
    mutating func optionalBytes(_ what: StaticString) throws -> [UInt8]? {
        let n = try take(UInt32.self, what)
        if n == .max { return nil }
        return Array(try take(bytes: Int(n), what))
    }
}

extension WireDelivery {
    /// The exact number of bytes `encode` writes; nil when a string is too long for the raw
    /// path (the field-by-field encoder cuts it at a character boundary).
    var rawSize: Int? {
        func text(_ s: String) -> Int? { let n = s.utf8.count; return n <= Int(UInt16.max) ? 2 + n : nil }
        guard let topicBytes = text(topic) else { return nil }
        var n = topicBytes + 29 + 4 + (key?.count ?? 0) + 2 + 4 + body.count + 29 + 29
        for h in headers {
            guard let name = text(h.name) else { return nil }
            n += name + 4 + h.value.count
        }
        if let lastError {
            guard let e = text(lastError) else { return nil }
            n += e
        }
        return n
    }

    /// Writes exactly `rawSize` bytes: the layout of `encodeFieldByField`.
    func encodeRaw(into w: inout RawWriter) {
        w.put(string: topic)
        w.put(partition)
        w.put(offset)
        w.put(id.topicID)
        w.put(id.partition)
        w.put(id.kind)
        w.put(id.value)
        w.put(optionalBytes: key)
        w.put(UInt16(headers.count))
        for h in headers {
            w.put(string: h.name)
            w.put(optionalBytes: h.value)
        }
        w.put(optionalBytes: body)
        w.put(publishedAt)
        w.put(dueAt)
        w.put(deliveredAt)
        w.put(attempt)
        if let lastError {
            w.put(UInt8(1))
            w.put(string: lastError)
        } else {
            w.put(UInt8(0))
        }
        w.put(receipt.topicID)
        w.put(receipt.partition)
        w.put(receipt.source)
        w.put(receipt.offset)
        w.put(receipt.lease)
        w.put(leaseDeadline)
    }

    init(raw r: inout RawReader, previousTopic: inout String?) throws {
        topic = try r.string("topic", sameAs: &previousTopic)
        partition = try r.take(UInt32.self, "partition")
        offset = try r.take(Int64.self, "offset")
        let idTopic = try r.take(UInt32.self, "id topic")
        let idPartition = try r.take(UInt32.self, "id partition")
        let idKind = try r.take(UInt8.self, "id kind")
        let idValue = try r.take(Int64.self, "id value")
        guard idKind <= 1 else { throw ProtocolError(.malformed, "unknown id kind \(idKind)") }
        id = WireMessageID(topicID: idTopic, partition: idPartition, kind: idKind, value: idValue)
        key = try r.optionalBytes("key")
        let headerCount = Int(try r.take(UInt16.self, "header count"))
        var headers: [WireHeader] = []
        headers.reserveCapacity(min(headerCount, 64))
        for _ in 0..<headerCount {
            let name = try r.string("header name")
            guard let value = try r.optionalBytes("header value") else { throw ProtocolError(.malformed, "header value must be present") }
            headers.append(WireHeader(name: name, value: value))
        }
        self.headers = headers
        guard let body = try r.optionalBytes("body") else { throw ProtocolError(.malformed, "body must be present") }
        self.body = body
        publishedAt = try r.take(Int64.self, "publishedAt")
        dueAt = try r.take(Int64.self, "dueAt")
        deliveredAt = try r.take(Int64.self, "deliveredAt")
        attempt = try r.take(UInt32.self, "attempt")
        lastError = try r.take(UInt8.self, "error flag") == 1 ? try r.string("last error") : nil
        receipt = try WireReceipt(raw: &r)
        leaseDeadline = try r.take(Int64.self, "lease deadline")
    }
}

extension WireReceipt {
    func encodeRaw(into w: inout RawWriter) {
        w.put(topicID)
        w.put(partition)
        w.put(source)
        w.put(offset)
        w.put(lease)
    }

    init(raw r: inout RawReader) throws {
        topicID = try r.take(UInt32.self, "topic id")
        partition = try r.take(UInt32.self, "partition")
        source = try r.take(UInt8.self, "source")
        offset = try r.take(Int64.self, "offset")
        lease = try r.take(UInt32.self, "lease")
        guard source <= 1 else { throw ProtocolError(.malformed, "unknown delivery source \(source)") }
    }
}

extension WireReader {
    /// Runs `body` over the unread bytes; it returns how many it consumed.
    mutating func withRawReader<R>(_ body: (inout RawReader) throws -> R) throws -> R {
        let (value, consumed) = try buffer.withUnsafeReadableBytes { raw -> (R, Int) in
            var r = RawReader(raw)
            let value = try body(&r)
            return (value, r.count)
        }
        buffer.moveReaderIndex(forwardBy: consumed)
        return value
    }
}

extension ByteBuffer {
    /// Appends exactly `size` bytes written by `body`.
    mutating func writeRaw(size: Int, _ body: (inout RawWriter) -> Void) {
        let written = writeWithUnsafeMutableBytes(minimumWritableBytes: size) { space in
            var w = RawWriter(UnsafeMutableRawBufferPointer(rebasing: space[0..<size]))
            body(&w)
            precondition(w.count == size, "raw encoding wrote \(w.count) of the \(size) bytes sized for it")
            return size
        }
        assert(written == size)
    }
}
