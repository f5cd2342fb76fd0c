/// Little-endian fixed-width integers and LEB128 varints over raw bytes.
/// Every multi-byte integer in Chime's formats is little-endian (docs/formats.md).
package enum LittleEndian {
    // Concrete functions per width, not one generic: a generic version cost a metadata
    // lookup per call when another module called it unspecialised (measured: half of a
    // fire's time).
    @inlinable @inline(__always) package static func load(_ type: UInt16.Type, _ bytes: UnsafeRawBufferPointer, _ at: Int) -> UInt16 {
        UInt16(littleEndian: bytes.loadUnaligned(fromByteOffset: at, as: UInt16.self))
    }
    @inlinable @inline(__always) package static func store(_ value: UInt16, _ bytes: UnsafeMutableRawBufferPointer, _ at: Int) {
        bytes.storeBytes(of: value.littleEndian, toByteOffset: at, as: UInt16.self)
    }
    @inlinable @inline(__always) package static func append(_ value: UInt16, to array: inout [UInt8]) {
        // Byte by byte: `append(contentsOf:)` with a raw buffer is a generic sequence copy,
        // measured at 4.6 % of a scheduled publish's server time.
        let v = value
        array.append(UInt8(truncatingIfNeeded: v))
        array.append(UInt8(truncatingIfNeeded: v &>> 8))
    }
    @inlinable @inline(__always) package static func load(_ type: UInt32.Type, _ bytes: UnsafeRawBufferPointer, _ at: Int) -> UInt32 {
        UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: at, as: UInt32.self))
    }
    @inlinable @inline(__always) package static func store(_ value: UInt32, _ bytes: UnsafeMutableRawBufferPointer, _ at: Int) {
        bytes.storeBytes(of: value.littleEndian, toByteOffset: at, as: UInt32.self)
    }
    @inlinable @inline(__always) package static func append(_ value: UInt32, to array: inout [UInt8]) {
        // Byte by byte: `append(contentsOf:)` with a raw buffer is a generic sequence copy,
        // measured at 4.6 % of a scheduled publish's server time.
        let v = value
        array.append(UInt8(truncatingIfNeeded: v))
        array.append(UInt8(truncatingIfNeeded: v &>> 8))
        array.append(UInt8(truncatingIfNeeded: v &>> 16))
        array.append(UInt8(truncatingIfNeeded: v &>> 24))
    }
    @inlinable @inline(__always) package static func load(_ type: Int32.Type, _ bytes: UnsafeRawBufferPointer, _ at: Int) -> Int32 {
        Int32(littleEndian: bytes.loadUnaligned(fromByteOffset: at, as: Int32.self))
    }
    @inlinable @inline(__always) package static func store(_ value: Int32, _ bytes: UnsafeMutableRawBufferPointer, _ at: Int) {
        bytes.storeBytes(of: value.littleEndian, toByteOffset: at, as: Int32.self)
    }
    @inlinable @inline(__always) package static func append(_ value: Int32, to array: inout [UInt8]) {
        append(UInt32(bitPattern: value), to: &array)
    }
    @inlinable @inline(__always) package static func load(_ type: Int64.Type, _ bytes: UnsafeRawBufferPointer, _ at: Int) -> Int64 {
        Int64(littleEndian: bytes.loadUnaligned(fromByteOffset: at, as: Int64.self))
    }
    @inlinable @inline(__always) package static func store(_ value: Int64, _ bytes: UnsafeMutableRawBufferPointer, _ at: Int) {
        bytes.storeBytes(of: value.littleEndian, toByteOffset: at, as: Int64.self)
    }
    @inlinable @inline(__always) package static func append(_ value: Int64, to array: inout [UInt8]) {
        append(UInt64(bitPattern: value), to: &array)
    }
    @inlinable @inline(__always) package static func load(_ type: UInt64.Type, _ bytes: UnsafeRawBufferPointer, _ at: Int) -> UInt64 {
        UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: at, as: UInt64.self))
    }
    @inlinable @inline(__always) package static func store(_ value: UInt64, _ bytes: UnsafeMutableRawBufferPointer, _ at: Int) {
        bytes.storeBytes(of: value.littleEndian, toByteOffset: at, as: UInt64.self)
    }
    @inlinable @inline(__always) package static func append(_ value: UInt64, to array: inout [UInt8]) {
        // Byte by byte: `append(contentsOf:)` with a raw buffer is a generic sequence copy,
        // measured at 4.6 % of a scheduled publish's server time.
        let v = value
        array.append(UInt8(truncatingIfNeeded: v))
        array.append(UInt8(truncatingIfNeeded: v &>> 8))
        array.append(UInt8(truncatingIfNeeded: v &>> 16))
        array.append(UInt8(truncatingIfNeeded: v &>> 24))
        array.append(UInt8(truncatingIfNeeded: v &>> 32))
        array.append(UInt8(truncatingIfNeeded: v &>> 40))
        array.append(UInt8(truncatingIfNeeded: v &>> 48))
        array.append(UInt8(truncatingIfNeeded: v &>> 56))
    }
}

/// Unsigned LEB128 (7 bits a byte, low groups first) and zig-zag for signed values.
package enum VarInt {
    @inline(__always)
    @inlinable package static func append(_ value: UInt64, to array: inout [UInt8]) {
        var v = value
        while v >= 0x80 {
            array.append(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
        }
        array.append(UInt8(v))
    }

    @inline(__always)
    @inlinable package static func appendSigned(_ value: Int64, to array: inout [UInt8]) {
        append(UInt64(bitPattern: (value << 1) ^ (value >> 63)), to: &array)
    }

    @inlinable package static func size(_ value: UInt64) -> Int {
        var v = value, n = 1
        while v >= 0x80 { v >>= 7; n += 1 }
        return n
    }

    /// Reads a varint at `index`, advancing it. Returns nil when the bytes end first or the
    /// value runs past 10 bytes.
    @inline(__always)
    @inlinable package static func read(_ bytes: UnsafeRawBufferPointer, _ index: inout Int, end: Int) -> UInt64? {
        var result: UInt64 = 0
        var shift: UInt64 = 0
        while index < end {
            let byte = bytes[index]
            index += 1
            if shift == 63 && byte > 1 { return nil }
            result |= UInt64(byte & 0x7F) << shift
            if byte < 0x80 { return result }
            shift += 7
            if shift > 63 { return nil }
        }
        return nil
    }

    @inline(__always)
    @inlinable package static func readSigned(_ bytes: UnsafeRawBufferPointer, _ index: inout Int, end: Int) -> Int64? {
        guard let raw = read(bytes, &index, end: end) else { return nil }
        return Int64(bitPattern: raw >> 1) ^ -Int64(bitPattern: raw & 1)
    }
}
