/// Walks a segment file from a position, batch by batch, verifying each CRC and the offset
/// continuity, reading through a bounded buffer. When a batch fails, it resynchronises by
/// looking for the next position that holds a whole valid batch with a higher offset, so
/// damage in the middle is isolated and never hides the valid batches after it.
struct SegmentScanner {
    enum Event {
        /// A valid batch at `position`.
        case batch(position: Int64, header: RecordBatchHeader)
        /// Bytes [start, end) hold no valid batch; the next valid one begins at `end`.
        case damaged(start: Int64, end: Int64, reason: String)
        /// Bytes [start, fileEnd) hold no valid batch up to the end of the file.
        case invalidTail(start: Int64, reason: String)
    }

    let file: DataFile
    let fileSize: Int64
    let limits: BatchLimits
    private(set) var position: Int64
    /// The offset the next batch must start at (nil: accept any, for the first batch).
    private(set) var expectedOffset: Int64?
    private var buffer: [UInt8] = []
    private var bufferStart: Int64 = 0
    private let chunk: Int

    init(file: DataFile, fileSize: Int64, from position: Int64, expectedOffset: Int64?, limits: BatchLimits, chunk: Int = 8 << 20) {
        self.file = file
        self.fileSize = fileSize
        self.position = position
        self.expectedOffset = expectedOffset
        self.limits = limits
        self.chunk = chunk
    }

    /// Makes bytes [at, at + count) available in `buffer`; false if the file ends first.
    private mutating func ensure(_ at: Int64, _ count: Int) throws -> Bool {
        if at + Int64(count) > fileSize { return false }
        if at >= bufferStart && at + Int64(count) <= bufferStart + Int64(buffer.count) { return true }
        let want = max(count, chunk)
        let length = Int(min(Int64(want), fileSize - at))
        buffer = try file.read(count: length, at: at)
        bufferStart = at
        return buffer.count >= count
    }

    /// Checks for a whole valid batch at `at`; returns its header or why not.
    private mutating func batch(at: Int64, resync: Bool) throws -> Result<RecordBatchHeader, StoreError> {
        guard try ensure(at, RecordBatchHeader.size) else {
            return .failure(StoreError(.corruptBatch, "\(fileSize - at) bytes remain, too few for a batch header (torn write)"))
        }
        let local = Int(at - bufferStart)
        let header = buffer.withUnsafeBytes { RecordBatchHeader($0, at: local) }
        let plausible = header.isPlausible(maxBatchBytes: limits.maxBatchBytes)
        if !plausible && resync { return .failure(StoreError(.corruptBatch, "no batch header")) }
        if plausible {
            guard try ensure(at, header.totalSize) else {
                return .failure(StoreError(.corruptBatch, "batch of \(header.totalSize) bytes runs past the end of the file (torn write)"))
            }
        }
        // An implausible header is checked over its own bytes only, which names what is wrong.
        let start = Int(at - bufferStart)
        let count = plausible ? header.totalSize : RecordBatchHeader.size
        let result: Result<RecordBatchHeader, StoreError> = buffer.withUnsafeBytes { raw in
            do {
                return .success(try RecordBatch.check(UnsafeRawBufferPointer(rebasing: raw[start..<(start + count)]), limits: limits))
            } catch let e as StoreError {
                return .failure(e)
            } catch {
                return .failure(StoreError(.corruptBatch, "\(error)"))
            }
        }
        guard case .success(let h) = result else { return result }
        if let expected = expectedOffset, resync ? h.baseOffset < expected : h.baseOffset != expected {
            return .failure(StoreError(.corruptBatch, "batch starts at offset \(h.baseOffset), expected \(expected)"))
        }
        return .success(h)
    }

    /// A copy of the bytes of the batch the last `.batch` event reported (still buffered).
    mutating func bytes(at position: Int64, count: Int) throws -> [UInt8] {
        guard try ensure(position, count) else {
            throw StoreError(.io, "batch at \(position) is no longer readable", file: file.path, position: position)
        }
        let start = Int(position - bufferStart)
        return Array(buffer[start..<(start + count)])
    }

    /// The next event, or nil at the end of the file.
    mutating func next() throws -> Event? {
        guard position < fileSize else { return nil }
        switch try batch(at: position, resync: false) {
        case .success(let header):
            let at = position
            position += Int64(header.totalSize)
            expectedOffset = header.nextOffset
            return .batch(position: at, header: header)
        case .failure(let error):
            let start = position
            var candidate = start + 1
            while candidate + Int64(RecordBatchHeader.size) <= fileSize {
                if case .success(let header) = try batch(at: candidate, resync: true) {
                    // The offsets between the damage and this batch are lost; continue from it.
                    position = candidate
                    expectedOffset = header.baseOffset
                    return .damaged(start: start, end: candidate, reason: error.message)
                }
                candidate += 1
            }
            position = fileSize
            return .invalidTail(start: start, reason: error.message)
        }
    }
}
