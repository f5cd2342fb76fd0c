/// Walks a segment file from a position, entry by entry, verifying each CRC and the offset
/// continuity, reading through a bounded buffer. When a batch fails, it resynchronises by
/// looking for the next position that holds a whole valid batch that plausibly continues
/// the log, so damage in the middle is isolated and never hides the valid batches after it.
struct SegmentScanner<Format: SegmentEntryFormat> {
    enum Event {
        /// A valid batch at `position`.
        case batch(position: Int64, frame: EntryFrame)
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

    /// The frame at `at` if its header is plausible; nil if implausible or cut short.
    private mutating func peek(at: Int64) throws -> EntryFrame? {
        guard try ensure(at, Format.headerSize) else { return nil }
        let local = Int(at - bufferStart)
        return buffer.withUnsafeBytes { Format.peek($0, at: local, limits: limits) }
    }

    /// Checks the whole batch at `at` against the limits and its CRC.
    private mutating func check(at: Int64, count: Int) throws -> Result<EntryFrame, StoreError> {
        guard try ensure(at, count) else {
            return .failure(StoreError(.corruptBatch, "batch of \(count) bytes runs past the end of the file (torn write)"))
        }
        let start = Int(at - bufferStart)
        return buffer.withUnsafeBytes { raw in
            do {
                return .success(try Format.check(UnsafeRawBufferPointer(rebasing: raw[start..<(start + count)]), limits: limits))
            } catch let e as StoreError {
                return .failure(e)
            } catch {
                return .failure(StoreError(.corruptBatch, "\(error)"))
            }
        }
    }

    /// The entry that must come next, at `position` with `expectedOffset`.
    private mutating func expectedBatch() throws -> Result<EntryFrame, StoreError> {
        guard fileSize - position >= Int64(Format.headerSize) else {
            return .failure(StoreError(.corruptBatch, "\(fileSize - position) bytes remain, too few for a header (torn write)"))
        }
        // An implausible header is checked over its own bytes only, which names what is wrong.
        let count = try peek(at: position)?.totalSize ?? Format.headerSize
        let result = try check(at: position, count: count)
        if case .success(let checked) = result, checked.address != expectedOffset {
            return .failure(StoreError(.corruptBatch, "entry starts at address \(checked.address), expected \(expectedOffset)"))
        }
        return result
    }

    /// Whether a whole valid entry at `at` can resume the log after damage starting at
    /// `damageStart`. Cheap tests first: plausible header; an address the skipped bytes
    /// can account for (`Format.resumeRange`); and the next entry chains from it, or it
    /// ends the file (or leaves only a fragment too short for a header, as a torn write
    /// does). Only then the CRC.
    private mutating func resumes(at: Int64, damageStart: Int64) throws -> EntryFrame? {
        guard let f = try peek(at: at) else { return nil }
        guard Format.resumeRange(expected: expectedOffset, damageStart: damageStart, at: at).contains(f.address) else { return nil }
        let end = at + Int64(f.totalSize)
        guard end <= fileSize else { return nil }
        if fileSize - end >= Int64(Format.headerSize) {
            guard let following = try peek(at: end), following.address == f.nextAddress else { return nil }
        }
        guard case .success(let checked) = try check(at: at, count: f.totalSize) else { return nil }
        return checked
    }

    /// Whether the bytes from `start` to the end look like an interrupted write.
    private mutating func looksTorn(from start: Int64) throws -> Bool {
        if fileSize - start < Int64(Format.headerSize) { return true }
        if let f = try peek(at: start), start + Int64(f.totalSize) > fileSize { return true }
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
        case .success(let frame):
            let at = position
            position += Int64(frame.totalSize)
            expectedOffset = frame.nextAddress
            return .batch(position: at, frame: frame)
        case .failure(let error):
            let start = position
            var candidate = start + 1
            while candidate + Int64(Format.headerSize) <= fileSize {
                if let frame = try resumes(at: candidate, damageStart: start) {
                    // The addresses between the damage and this entry are lost; go on from it.
                    position = candidate
                    expectedOffset = frame.address
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
