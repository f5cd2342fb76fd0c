import CLZ4

/// The LZ4 block format through liblz4. Decompression is bounded: the caller states the
/// exact decompressed size (checked against a limit before anything is allocated) and only
/// `LZ4_decompress_safe` is used, so a hostile input can neither overflow nor balloon memory.
enum LZ4Block {
    /// The largest input LZ4's block API accepts.
    static let maxInputSize = Int(LZ4_MAX_INPUT_SIZE)

    static func compressBound(_ count: Int) -> Int { Int(LZ4_compressBound(Int32(count))) }

    /// Compresses `source` into `destination` (which must hold `compressBound(source.count)`
    /// bytes). Returns the compressed size.
    static func compress(_ source: UnsafeRawBufferPointer, into destination: UnsafeMutableRawBufferPointer) throws -> Int {
        guard source.count <= maxInputSize else {
            throw StoreError(.batchTooLarge, "\(source.count) bytes exceed LZ4's block limit of \(maxInputSize)")
        }
        if source.count == 0 { return 0 }
        let written = LZ4_compress_default(
            source.baseAddress!.assumingMemoryBound(to: CChar.self),
            destination.baseAddress!.assumingMemoryBound(to: CChar.self),
            Int32(source.count), Int32(destination.count))
        guard written > 0 else { throw StoreError(.compression, "LZ4 compression failed") }
        return Int(written)
    }

    /// Decompresses into exactly `decompressedSize` bytes, which the caller has already checked
    /// against its limit. Any other outcome is an error.
    static func decompress(_ source: UnsafeRawBufferPointer, decompressedSize: Int) throws -> [UInt8] {
        guard decompressedSize >= 0, decompressedSize <= maxInputSize else {
            throw StoreError(.compression, "declared size \(decompressedSize) is not a valid LZ4 block size")
        }
        if decompressedSize == 0 {
            guard source.count <= 1 else { throw StoreError(.compression, "LZ4 data for an empty block") }
            return []
        }
        guard source.count > 0, source.count <= Int(Int32.max) else {
            throw StoreError(.compression, "empty LZ4 input for \(decompressedSize) bytes")
        }
        var failed = false
        let output = [UInt8](unsafeUninitializedCapacity: decompressedSize) { buffer, count in
            let n = LZ4_decompress_safe(
                source.baseAddress!.assumingMemoryBound(to: CChar.self),
                UnsafeMutableRawPointer(buffer.baseAddress!).assumingMemoryBound(to: CChar.self),
                Int32(source.count), Int32(decompressedSize))
            if n == Int32(decompressedSize) {
                count = decompressedSize
            } else {
                failed = true
                count = 0
            }
        }
        if failed { throw StoreError(.compression, "LZ4 data does not decompress to its declared \(decompressedSize) bytes") }
        return output
    }
}
