/// Walks a segment file from a position, batch by batch, verifying each CRC and the offset
/// continuity, reading through a bounded buffer. When a batch fails, it resynchronises by
/// looking for the next position that holds a whole valid batch that plausibly continues
/// the log, so damage in the middle is isolated and never hides the valid batches after it.
struct SegmentScanner {
    enum Event {
        /// A valid batch at `position`.
        case batch(position: Int64, header: RecordBatchHeader)
        /// Bytes [start, end) hold no valid batch; the next valid one begins at `end`.
        case damaged(start: Int64, end: Int64, reason: String)
        /// Bytes [start, fileEnd) hold no valid batch up to the end of the file. `torn` when
        /// they look like an interrupted write (too short for a header, a header whose batch
        /// runs past the end, or all zeros); otherwise they are damage.
        case invalidTail(start: Int64, reason: String, torn: Bool)
    }

    let file: DataFile
    let fileSize: Int64
    let limits: BatchLimits
    private(set) var position: Int64
    /// The offset the next batch must start at.
    private(set) var expectedOffset: Int64
    private var buffer: [UInt8] = []
    private var bufferStart: Int64 = 0
    private let chunk: Int

    init(file: DataFile, fileSize: Int64, from position: Int64, expectedOffset: Int64, limits: BatchLimits, chunk: Int = 8 << 20) {
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

    private mutating func header(at: Int64) throws -> RecordBatchHeader? {
        guard try ensure(at, RecordBatchHeader.size) else { return nil }
        let local = Int(at - bufferStart)
        return buffer.withUnsafeBytes { RecordBatchHeader($0, at: local) }
    }

    /// Checks the whole batch at `at` against the limits and its CRC.
    private mutating func check(at: Int64, count: Int) throws -> Result<RecordBatchHeader, StoreError> {
        guard try ensure(at, count) else {
            return .failure(StoreError(.corruptBatch, "batch of \(count) bytes runs past the end of the file (torn write)"))
        }
        let start = Int(at - bufferStart)
        return buffer.withUnsafeBytes { raw in
            do {
                return .success(try RecordBatch.check(UnsafeRawBufferPointer(rebasing: raw[start..<(start + count)]), limits: limits))
            } catch let e as StoreError {
                return .failure(e)
            } catch {
                return .failure(StoreError(.corruptBatch, "\(error)"))
            }
        }
    }

    /// The batch that must come next, at `position` with `expectedOffset`.
    private mutating func expectedBatch() throws -> Result<RecordBatchHeader, StoreError> {
        guard let h = try header(at: position) else {
            return .failure(StoreError(.corruptBatch, "\(fileSize - position) bytes remain, too few for a batch header (torn write)"))
        }
        // An implausible header is checked over its own bytes only, which names what is wrong.
        let count = h.isPlausible(maxBatchBytes: limits.maxBatchBytes) ? h.totalSize : RecordBatchHeader.size
        let result = try check(at: position, count: count)
        if case .success(let checked) = result, checked.baseOffset != expectedOffset {
            return .failure(StoreError(.corruptBatch, "batch starts at offset \(checked.baseOffset), expected \(expectedOffset)"))
        }
        return result
    }

    /// Whether a whole valid batch at `at` can resume the log after damage starting at
    /// `damageStart`. Cheap tests first: plausible header; an offset no lower than expected
    /// and no higher than the skipped bytes could have held (4 bytes a record at least);
    /// and the next batch chains from it, or it ends the file (or leaves only a fragment too
    /// short for a header, as a torn write does). Only then the CRC.
    private mutating func resumes(at: Int64, damageStart: Int64) throws -> RecordBatchHeader? {
        guard let h = try header(at: at), h.isPlausible(maxBatchBytes: limits.maxBatchBytes) else { return nil }
        let skippedRecords = (at - damageStart) / Int64(RecordLayout.minimumSize)
        guard h.baseOffset >= expectedOffset, h.baseOffset - expectedOffset <= skippedRecords else { return nil }
        let end = at + Int64(h.totalSize)
        guard end <= fileSize else { return nil }
        if fileSize - end >= Int64(RecordBatchHeader.size) {
            guard let following = try header(at: end), following.isPlausible(maxBatchBytes: limits.maxBatchBytes),
                following.baseOffset == h.nextOffset
            else { return nil }
        }
        guard case .success(let checked) = try check(at: at, count: h.totalSize) else { return nil }
        return checked
    }

    /// Whether the bytes from `start` to the end look like an interrupted write.
    private mutating func looksTorn(from start: Int64) throws -> Bool {
        if fileSize - start < Int64(RecordBatchHeader.size) { return true }
        if let h = try header(at: start), h.isPlausible(maxBatchBytes: limits.maxBatchBytes), start + Int64(h.totalSize) > fileSize {
            return true
        }
        var at = start
        while at < fileSize {
            let n = Int(min(Int64(chunk), fileSize - at))
            guard try ensure(at, n) else { return false }
            let local = Int(at - bufferStart)
            if buffer[local..<(local + n)].contains(where: { $0 != 0 }) { return false }
            at += Int64(n)
        }
        return true
    }

    /// The next event, or nil at the end of the file.
    mutating func next() throws -> Event? {
        guard position < fileSize else { return nil }
        switch try expectedBatch() {
        case .success(let header):
            let at = position
            position += Int64(header.totalSize)
            expectedOffset = header.nextOffset
            return .batch(position: at, header: header)
        case .failure(let error):
            let start = position
            var candidate = start + 1
            while candidate + Int64(RecordBatchHeader.size) <= fileSize {
                if let header = try resumes(at: candidate, damageStart: start) {
                    // The offsets between the damage and this batch are lost; continue from it.
                    position = candidate
                    expectedOffset = header.baseOffset
                    return .damaged(start: start, end: candidate, reason: error.message)
                }
                candidate += 1
            }
            position = fileSize
            return .invalidTail(start: start, reason: error.message, torn: try looksTorn(from: start))
        }
    }

    /// A copy of the bytes of the batch the last `.batch` event reported (still buffered).
    mutating func bytes(at position: Int64, count: Int) throws -> [UInt8] {
        guard try ensure(position, count) else {
            throw StoreError(.io, "batch at \(position) is no longer readable", file: file.path, position: position)
        }
        let start = Int(position - bufferStart)
        return Array(buffer[start..<(start + count)])
    }
}
