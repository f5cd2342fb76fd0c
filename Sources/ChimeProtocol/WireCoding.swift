import NIOCore

/// A payload's fields, read with every length checked against what is left before anything
/// is allocated; any violation is a `.malformed` `ProtocolError`.
public struct WireReader {
    /// Codecs in this module also read it through a raw view (`withRawReader`).
    var buffer: ByteBuffer
    /// The protocol version the connection chose: the few payloads whose layout changed
    /// between versions read it.
    public let version: UInt16

    public init(_ payload: ByteBuffer, version: UInt16 = ProtocolVersion.current) {
        buffer = payload
        self.version = version
    }

    private func malformed(_ what: String) -> ProtocolError {
        ProtocolError(.malformed, "\(what) runs past the end of the payload")
    }

    public mutating func u8(_ what: String = "u8") throws -> UInt8 {
        guard let v = buffer.readInteger(as: UInt8.self) else { throw malformed(what) }
        return v
    }
    public mutating func u16(_ what: String = "u16") throws -> UInt16 {
        guard let v = buffer.readInteger(endianness: .little, as: UInt16.self) else { throw malformed(what) }
        return v
    }
    public mutating func u32(_ what: String = "u32") throws -> UInt32 {
        guard let v = buffer.readInteger(endianness: .little, as: UInt32.self) else { throw malformed(what) }
        return v
    }
    public mutating func i32(_ what: String = "i32") throws -> Int32 {
        guard let v = buffer.readInteger(endianness: .little, as: Int32.self) else { throw malformed(what) }
        return v
    }
    public mutating func u64(_ what: String = "u64") throws -> UInt64 {
        guard let v = buffer.readInteger(endianness: .little, as: UInt64.self) else { throw malformed(what) }
        return v
    }
    public mutating func i64(_ what: String = "i64") throws -> Int64 {
        guard let v = buffer.readInteger(endianness: .little, as: Int64.self) else { throw malformed(what) }
        return v
    }
    /// An i64 where -1 means none.
    public mutating func optionalI64(_ what: String = "i64") throws -> Int64? {
        let v = try i64(what)
        return v == -1 ? nil : v
    }

    /// u16 length + UTF-8.
    public mutating func string(_ what: String = "string") throws -> String {
        // Error text is built only on failure: these run once per field on the hot path.
        guard let length = buffer.readInteger(endianness: .little, as: UInt16.self) else { throw malformed("\(what) length") }
        guard let bytes = buffer.readSlice(length: Int(length)) else { throw malformed(what) }
        guard let s = String(validatingUTF8Bytes: bytes) else { throw ProtocolError(.malformed, "\(what) is not UTF-8") }
        return s
    }

    /// u32 length + bytes; 0xFFFFFFFF is none.
    public mutating func optionalBytes(_ what: String = "bytes") throws -> [UInt8]? {
        guard let n = buffer.readInteger(endianness: .little, as: UInt32.self) else { throw malformed("\(what) length") }
        if n == .max { return nil }
        guard Int(n) <= buffer.readableBytes, let bytes = buffer.readBytes(length: Int(n)) else { throw malformed(what) }
        return bytes
    }

    public mutating func bytes(_ what: String = "bytes") throws -> [UInt8] {
        guard let b = try optionalBytes(what) else { throw ProtocolError(.malformed, "\(what) must be present") }
        return b
    }

    /// A count of items each at least `minimumItemBytes` long: refused when the rest of the
    /// payload cannot hold them, so no array is sized from a lie.
    public mutating func count(_ what: String, minimumItemBytes: Int, limit: Int = .max) throws -> Int {
        guard let count = buffer.readInteger(endianness: .little, as: UInt32.self) else { throw malformed("\(what) count") }
        let n = Int(count)
        guard n <= limit else { throw ProtocolError(.tooManyRecords, "\(n) \(what) is over the limit of \(limit)") }
        guard n * max(1, minimumItemBytes) <= buffer.readableBytes else {
            throw ProtocolError(.malformed, "\(n) \(what) cannot fit in the \(buffer.readableBytes) bytes left")
        }
        return n
    }

    /// Every byte must have been read.
    public func finish(_ what: String) throws {
        guard buffer.readableBytes == 0 else {
            throw ProtocolError(.malformed, "\(buffer.readableBytes) bytes left over after \(what)")
        }
    }
}

private extension String {
    /// Strict UTF-8 validation of a buffer.
    init?(validatingUTF8Bytes buffer: ByteBuffer) {
        guard let bytes = buffer.getBytes(at: buffer.readerIndex, length: buffer.readableBytes) else { return nil }
        guard let s = String(validating: bytes, as: UTF8.self) else { return nil }
        self = s
    }
}

/// Writing the same fields.
extension ByteBuffer {
    public mutating func writeWire(_ v: UInt8) { writeInteger(v) }
    public mutating func writeWire(_ v: UInt16) { writeInteger(v, endianness: .little) }
    public mutating func writeWire(_ v: UInt32) { writeInteger(v, endianness: .little) }
    public mutating func writeWire(_ v: Int32) { writeInteger(v, endianness: .little) }
    public mutating func writeWire(_ v: UInt64) { writeInteger(v, endianness: .little) }
    public mutating func writeWire(_ v: Int64) { writeInteger(v, endianness: .little) }
    public mutating func writeWire(optional v: Int64?) { writeInteger(v ?? -1, endianness: .little) }
    /// u16 length + UTF-8 (at most 65,535 bytes: longer strings are cut at a character boundary).
    public mutating func writeWire(_ s: String) {
        let count = s.utf8.count
        guard count > Int(UInt16.max) else {
            // The usual case, copied straight from the string's storage.
            writeInteger(UInt16(count), endianness: .little)
            writeString(s)
            return
        }
        var utf8 = Array(s.utf8)
        var cut = Int(UInt16.max)
        while cut > 0 && utf8[cut] & 0xC0 == 0x80 { cut -= 1 }
        utf8 = Array(utf8[..<cut])
        writeInteger(UInt16(utf8.count), endianness: .little)
        writeBytes(utf8)
    }
    public mutating func writeWire(bytes: [UInt8]?) {
        guard let bytes else {
            writeInteger(UInt32.max, endianness: .little)
            return
        }
        writeInteger(UInt32(bytes.count), endianness: .little)
        writeBytes(bytes)
    }
}

/// A payload type: decoded from a frame's payload (all of it), encoded into one.
public protocol WireMessage: Sendable, Equatable {
    init(from reader: inout WireReader) throws
    func encode(into buffer: inout ByteBuffer)
    /// About how many bytes `encode` writes, to allocate the payload once (a large answer
    /// grown from a small buffer is copied at every doubling).
    var estimatedSize: Int { get }
}

extension WireMessage {
    /// Decodes a whole payload, as `version` lays it out: bytes left over are an error.
    public init(payload: ByteBuffer, version: UInt16 = ProtocolVersion.current) throws {
        var reader = WireReader(payload, version: version)
        self = try Self(from: &reader)
        try reader.finish("\(Self.self)")
    }

    public var estimatedSize: Int { 64 }

    public func payload(allocator: ByteBufferAllocator = ByteBufferAllocator()) -> ByteBuffer {
        var b = allocator.buffer(capacity: estimatedSize)
        encode(into: &b)
        return b
    }
}
