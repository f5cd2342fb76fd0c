import CoreMetrics
import Foundation
import Logging
import Synchronization

/// Where an append landed.
public struct AppendResult: Sendable, Equatable {
    /// Offset of the first record appended.
    public var baseOffset: Int64
    /// Offset of the last record appended.
    public var lastOffset: Int64
    /// One past `lastOffset`: the value to wait for durability on.
    public var nextOffset: Int64 { lastOffset + 1 }
}

/// What opening a log found, segment by segment.
public struct LogRecovery: Sendable, Equatable {
    public var segments: [SegmentRecovery]
    public var damaged: [DamagedRange] { segments.flatMap(\.damaged) }
    public var truncatedBytes: Int64 { segments.reduce(0) { $0 + $1.truncatedBytes } }
}

/// Size and span of one segment, for stats and tools.
public struct SegmentInfo: Sendable, Equatable {
    public var baseOffset: Int64
    public var nextOffset: Int64
    public var bytes: Int64
    public var maxTimestamp: Int64
    public var path: String
}

/// An append-only log of entries (record batches for `RecordLog`, timer entries for the
/// timer log) in a directory of segment files.
///
/// One writer at a time is the model (a partition's owner), but the type is safe to share:
/// appends are serialised by a lock that covers only the write itself, reads take the lock
/// just long enough to find their segment, and durability waits happen outside it so that
/// concurrent appenders share fsyncs.
public final class SegmentLog<Format: SegmentEntryFormat>: @unchecked Sendable {
    public let directory: String
    public let configuration: LogConfiguration
    public let recovery: LogRecovery
    private let calls: FileSystemCalls
    /// The system calls this log writes through (so related files, like a checkpoint,
    /// share its fault injection).
    package var fileSystemCalls: FileSystemCalls { calls }
    /// A write or sync failed: the log refuses appends until it is reopened.
    public var isFailed: Bool { lock.withLock { failure != nil } }
    private let logger: Logger
    private let lock = NSLock()
    // Guarded by `lock`.
    private var segments: [LogSegment<Format>]
    private var failure: StoreError? {
        didSet { if oldValue == nil && failure != nil { LogFailures.count.add(1, ordering: .relaxed) } }
    }
    private var isClosed = false
    private var committer: GroupCommitter?
    /// Seals that a roll handed to the background (the sealed segment's data sync under
    /// every policy but `.always`, its index, the directory's entry for the next segment):
    /// a roll does not stall the appender (or, through the lock, readers) for them. Every
    /// sync of the active segment (`flush`, the committers, `close`) waits for them first,
    /// so "durable up to X" still covers every segment below X; a log reopened after a
    /// kill syncs the segments whose seal had not finished before counting them durable.
    private let sealing = DispatchGroup()
    /// One at a time and in order: a roll that was undone and redone writes the same index
    /// path twice.
    private let sealQueue = DispatchQueue(label: "chime-seal")
    /// Background seal syncs not finished yet; under `lock`.
    private var sealsInFlight = 0
    /// How long each fdatasync of the active segment takes: the latency a durable append
    /// waits for (group commit shares one sync among the appends it covers). Made once per
    /// log; a no-op until the executable bootstraps a metrics backend.
    private let syncLatency = CoreMetrics.Timer(label: "chime_fsync_seconds")

    private init(directory: String, configuration: LogConfiguration, calls: FileSystemCalls, logger: Logger, segments: [LogSegment<Format>], recovery: LogRecovery) {
        self.directory = directory
        self.configuration = configuration
        self.calls = calls
        self.logger = logger
        self.segments = segments
        self.recovery = recovery
    }

    /// Opens (creating if needed) the log in `directory` and recovers it: sealed segments
    /// are checked against their indexes, the active one is scanned after an unclean stop
    /// and its torn tail cut; damage elsewhere is isolated and reported in `recovery`.
    public static func open(
        directory: String, configuration: LogConfiguration = LogConfiguration(),
        calls: FileSystemCalls = .system, logger: Logger
    ) throws -> SegmentLog {
        try configuration.validate()
        try Directory.create(directory)
        let names = try Directory.entries(directory)
        for name in names where name.hasSuffix(".tmp") {
            try Directory.remove(directory + "/" + name)
        }
        let bases = names.compactMap(LogSegment<Format>.baseOffset(fromFileName:)).sorted()
        var segments: [LogSegment<Format>] = []
        var reports: [SegmentRecovery] = []
        for (i, base) in bases.enumerated() {
            let (segment, report) = try LogSegment<Format>.open(
                directory: directory, baseOffset: base, active: i == bases.count - 1,
                configuration: configuration, calls: calls, logger: logger)
            if let previous = segments.last {
                if base < previous.nextOffset {
                    throw StoreError(.corruptBatch, "segment starts at offset \(base) but the one before it ends at \(previous.nextOffset)", file: segment.path)
                }
                if base > previous.nextOffset {
                    logger.error("offsets missing between segments", metadata: [
                        "from": "\(previous.nextOffset)", "to": "\(base)", "file": "\(segment.path)",
                    ])
                }
            }
            segments.append(segment)
            reports.append(report)
        }
        if segments.isEmpty {
            segments.append(try LogSegment<Format>.create(directory: directory, baseOffset: 0, configuration: configuration, calls: calls))
        }
        // What a killed process left in the page cache is not on disk yet: sync it before
        // counting it durable — the active segment, every sealed one whose background seal
        // had not finished (it has no valid index), and the directory's entries for them.
        for (segment, report) in zip(segments.dropLast(), reports) where report.scanned { try segment.file.sync() }
        try segments.last!.file.sync()
        try Directory.sync(directory)
        let log = SegmentLog(
            directory: directory, configuration: configuration, calls: calls, logger: logger,
            segments: segments, recovery: LogRecovery(segments: reports))
        switch configuration.durability {
        case .always:
            log.startCommitter(intervalMilliseconds: nil)
        case .interval(let ms):
            log.startCommitter(intervalMilliseconds: ms)
        case .never:
            break
        }
        return log
    }

    private func startCommitter(intervalMilliseconds: Int?) {
        let start = segments.last!.nextOffset
        committer = GroupCommitter(durable: start, intervalMilliseconds: intervalMilliseconds) { [weak self] in
            guard let self else { throw StoreError(.closed, "the log is gone") }
            return try self.syncActive()
        }
    }

    // MARK: - Offsets

    /// The first offset still stored.
    public var startOffset: Int64 { lock.withLock { segments.first!.baseOffset } }
    /// The offset the next record will get.
    public var endOffset: Int64 { lock.withLock { segments.last!.nextOffset } }
    /// Everything below this offset is known to be on disk.
    public var durableOffset: Int64 { lock.withLock { committer }?.durableOffset ?? endOffset }

    public var segmentInfos: [SegmentInfo] {
        lock.withLock {
            segments.map { SegmentInfo(baseOffset: $0.baseOffset, nextOffset: $0.nextOffset, bytes: $0.size, maxTimestamp: $0.maxTimestamp, path: $0.path) }
        }
    }

    public var totalBytes: Int64 { lock.withLock { segments.reduce(0) { $0 + $1.size } } }

    // MARK: - Append

    /// Validates and appends batches (baseOffsets are stamped here), returning where they
    /// went. The bytes are written but not yet synced: use `appendDurably` or
    /// `waitUntilDurable` to wait as the durability policy says.
    @discardableResult
    public func append(_ batch: [UInt8]) throws -> AppendResult {
        try append(contentsOf: [batch])
    }

    /// Appends several batches as one unit: all of them land, or none does.
    @discardableResult
    public func append(contentsOf batches: [[UInt8]]) throws -> AppendResult {
        guard !batches.isEmpty else { throw StoreError(.invalidArgument, "nothing to append") }
        // Per-batch checks run before the lock: CRC, limits, structure.
        var headers: [EntryFrame] = []
        headers.reserveCapacity(batches.count)
        for (i, bytes) in batches.enumerated() {
            do {
                let frame = try bytes.withUnsafeBytes { try Format.check($0, limits: configuration.limits) }
                guard frame.totalSize == bytes.count else {
                    throw StoreError(.malformedBatch, "length field says \(frame.totalSize) bytes, got \(bytes.count)")
                }
                try Format.validateForAppend(bytes, frame: frame, configuration: configuration)
                headers.append(frame)
            } catch let error as StoreError {
                throw StoreError(error.code, batches.count > 1 ? "batch \(i): \(error.message)" : error.message)
            }
        }

        lock.lock()
        defer { lock.unlock() }
        if isClosed { throw StoreError(.closed, "the log is closed") }
        if let failure { throw StoreError(.logFailed, "an earlier write or sync failed (\(failure)); reopen the log to recover") }

        let first = segments.last!.nextOffset
        var offsets = [Int64](repeating: 0, count: batches.count)
        var next = first
        for i in batches.indices {
            offsets[i] = next.littleEndian
            next += headers[i].span
        }
        let undo = UndoPoint(segments.count, segments.last!)
        do {
            var i = 0
            while i < batches.count {
                var active = segments.last!
                if active.size > 0 && !fits(i, headers, offsets, in: active, at: active.size) {
                    try roll()
                    active = segments.last!
                }
                // As many batches as fit the segment go in one write, at most 256 (512 iovecs).
                var j = i + 1
                var bytes = active.size + Int64(headers[i].totalSize)
                while j < batches.count && j - i < 256 && fits(j, headers, offsets, in: active, at: bytes) {
                    bytes += Int64(headers[j].totalSize)
                    j += 1
                }
                try write(batches[i..<j], offsets: offsets, from: i, headers: headers, to: active)
                i = j
            }
        } catch let error as StoreError {
            // All or nothing: cut back what this call wrote, drop the segments it created.
            do {
                try rollBack(to: undo)
            } catch {
                failure = failure ?? (error as? StoreError) ?? StoreError(.io, "\(error)")
            }
            // ENOSPC leaves the log usable once there is room; anything else does not.
            if error.code != .noSpace { failure = failure ?? error }
            if let failure { committer?.fail(failure) }
            throw error
        }
        return AppendResult(baseOffset: first, lastOffset: next - 1)
    }

    /// Whether batch `i` fits `segment` after `bytes`: the size limit, and offsets that the
    /// segment's 32-bit index can address relative to its base.
    private func fits(_ i: Int, _ headers: [EntryFrame], _ offsets: [Int64], in segment: LogSegment<Format>, at bytes: Int64) -> Bool {
        let end = Int64(littleEndian: offsets[i]) + headers[i].span
        return bytes + Int64(headers[i].totalSize) <= Int64(configuration.segmentBytes)
            && end - segment.baseOffset <= configuration.maxOffsetsPerSegment
    }

    /// Where the active segment stood before an append call.
    private struct UndoPoint {
        var segmentCount: Int
        var size: Int64
        var nextOffset: Int64
        var maxTimestamp: Int64
        // Not the index itself: holding a copy would make the next append copy the whole
        // entry array (copy-on-write). Rolling back truncates it instead.

        init(_ count: Int, _ active: LogSegment<Format>) {
            self.init(count, size: active.size, nextOffset: active.nextOffset, maxTimestamp: active.maxTimestamp)
        }

        init(_ count: Int, size: Int64, nextOffset: Int64, maxTimestamp: Int64) {
            segmentCount = count
            self.size = size
            self.nextOffset = nextOffset
            self.maxTimestamp = maxTimestamp
        }
    }

    /// Restores the log to `undo`. Under `lock`.
    private func rollBack(to undo: UndoPoint) throws {
        while segments.count > undo.segmentCount {
            let created = segments.removeLast()
            try created.removeFiles()
        }
        if segments.count < undo.segmentCount { return }
        let active = segments.last!
        // Always: a failed write may have left bytes past the recorded size.
        try active.file.truncate(to: undo.size)
        active.size = undo.size
        active.nextOffset = undo.nextOffset
        active.maxTimestamp = undo.maxTimestamp
        active.index.truncate(toPosition: undo.size)
        try Directory.remove(active.indexPath)  // a roll may have written it
        try Directory.sync(directory)
    }

    /// Writes batches[range] to `segment` in one pwritev, each with its stamped offset,
    /// then records them. Under `lock`.
    private func write(_ range: ArraySlice<[UInt8]>, offsets: [Int64], from first: Int, headers: [EntryFrame], to segment: LogSegment<Format>) throws {
        let start = segment.size
        try offsets.withUnsafeBytes { offsetBytes in
            var buffers: [UnsafeRawBufferPointer] = []
            buffers.reserveCapacity(range.count * 2)
            try Self.withBytes(of: range, from: range.startIndex) { k, raw in
                let stamp = (first + k) * 8
                buffers.append(UnsafeRawBufferPointer(rebasing: offsetBytes[stamp..<(stamp + 8)]))
                buffers.append(UnsafeRawBufferPointer(rebasing: raw[8...]))
            } then: {
                try segment.file.writeAll(buffers, at: start)
            }
        }
        var position = start
        for k in 0..<range.count {
            let header = headers[first + k]
            let base = Int64(littleEndian: offsets[first + k])
            segment.index.didAppend(baseOffset: base, position: position, size: header.totalSize)
            segment.maxTimestamp = max(segment.maxTimestamp, header.maxTimestamp)
            position += Int64(header.totalSize)
            segment.nextOffset = base + header.span
        }
        segment.size = position
    }

    /// Calls `each` with the bytes of every array in `arrays[index...]`, nested so that all
    /// of them stay valid, then runs `then` while they still are. Callers pass at most 256.
    private static func withBytes(
        of arrays: ArraySlice<[UInt8]>, from index: Int,
        _ each: (Int, UnsafeRawBufferPointer) -> Void, then: () throws -> Void
    ) throws {
        guard index < arrays.endIndex else { return try then() }
        try arrays[index].withUnsafeBytes { raw in
            each(index - arrays.startIndex, raw)
            try withBytes(of: arrays, from: index + 1, each, then: then)
        }
    }

    /// Seals the active segment and starts a new one. Under `lock`, so what waits for the
    /// disk here holds up readers and appenders: only the sealed segment's data sync, and
    /// only under `.always` — a power loss must never keep a later segment's bytes without
    /// this one's tail (an append spanning the roll would survive in part), and under
    /// `.always` that sync is short, the committer having synced all but the last appends.
    /// Its index, the directory's entry for the new file and (under the other policies)
    /// the data sync go to the background (see `sealing`): an index file synced and
    /// renamed and a directory sync, tens of ms in a row on a busy disk.
    private func roll() throws {
        let active = segments.last!
        if configuration.durability == .always {
            do {
                try active.file.sync()
            } catch let error as StoreError {
                failure = failure ?? error
                throw error
            }
            committer?.advance(to: active.nextOffset)
        }
        let next = try LogSegment<Format>.create(
            directory: directory, baseOffset: active.nextOffset, configuration: configuration, calls: calls, syncDirectory: false)
        segments.append(next)
        // Queued after the new file exists, so the seal's directory sync covers its entry.
        sealInBackground(active)
        logger.debug("rolled segment", metadata: ["base": "\(next.baseOffset)"])
    }

    /// Runs `work` on `sealQueue`, after what was queued before, counted in `sealing` so
    /// that syncs, deletions and `close` can wait for it.
    private func runInBackground(_ work: @escaping @Sendable () -> Void) {
        sealing.enter()
        sealQueue.async { [sealing] in
            work()
            sealing.leave()
        }
    }

    /// Syncs a segment a roll sealed, writes its index and syncs the directory, on
    /// `sealQueue`. Under `lock`.
    private func sealInBackground(_ segment: LogSegment<Format>) {
        let file = segment.file
        // Stamped now, under the lock, after the segment's last write. Without it (its
        // status unreadable) the next open scans the segment instead.
        let index = (bytes: try? segment.encodedIndex(), path: segment.indexPath)
        let directory = self.directory
        sealsInFlight += 1
        runInBackground { [self] in
            var failed: StoreError? = nil
            do {
                try file.sync()
                do {
                    guard let bytes = index.bytes else { throw StoreError(.io, "the sealed segment's status could not be read for its index") }
                    try Directory.writeAtomically(bytes, to: index.path, calls: file.calls) { publish in
                        // Only for a segment still sealed: an append that failed after
                        // the roll undoes it (`rollBack`), and the index would then
                        // describe bytes that are gone. Checked and renamed under the lock.
                        try lock.withLock {
                            guard segments.last !== segment, segments.contains(where: { $0 === segment }) else { return }
                            try publish()
                        }
                    }
                } catch {
                    // The index only saves a scan: a missing or stale one is rebuilt.
                    logger.warning("index of a sealed segment not written; the next open rebuilds it", metadata: ["error": "\(error)"])
                    try Directory.sync(directory)
                }
            } catch {
                failed = error as? StoreError ?? StoreError(.io, "sync of a sealed segment failed: \(error)")
            }
            lock.withLock {
                sealsInFlight -= 1
                if let failed { failure = failure ?? failed }
            }
            if let error = failed {
                logger.error("sync of a sealed segment failed; the log refuses appends until reopened", metadata: ["error": "\(error)"])
            }
        }
    }

    /// Appends and returns once the batches are as durable as the policy promises: on disk
    /// under `.always` (sharing the sync with concurrent appends), written otherwise.
    @discardableResult
    public func appendDurably(_ batches: [[UInt8]]) async throws -> AppendResult {
        let result = try append(contentsOf: batches)
        if configuration.durability == .always { try await waitUntilDurable(result.nextOffset) }
        return result
    }

    @discardableResult
    public func appendDurably(_ batch: [UInt8]) async throws -> AppendResult {
        try await appendDurably([batch])
    }

    /// Returns once every offset below `offset` is as durable as the log's policy promises
    /// before an acknowledgement: on disk under `.always` (sharing syncs with concurrent
    /// appenders); at once under `.interval` (its clock syncs within the interval) and
    /// `.never` (the page cache holds it; nothing is promised across a power loss). The
    /// wait for an append's acknowledgement: under those two policies it must not run an
    /// fdatasync on the caller's thread for every append.
    public func waitForAcknowledgement(_ offset: Int64) async throws {
        if configuration.durability == .always {
            try await waitUntilDurable(offset)
        } else {
            let end = lock.withLock { segments.last!.nextOffset }
            guard offset <= end else { throw StoreError(.invalidArgument, "offset \(offset) is past the end of the log (\(end))") }
            if let failure = lock.withLock({ failure }) { throw failure }
        }
    }

    /// Returns once every offset below `offset` is on disk, sharing the sync with every
    /// other waiter (the group committer) under `.always` and `.interval`; at once under
    /// `.never`. For a record that must not be durable before what it refers to (a group's
    /// ack of a message), without an fdatasync on the caller's thread.
    public func waitUntilDurableShared(_ offset: Int64) async throws {
        guard let committer = lock.withLock({ self.committer }) else { return }
        try await committer.waitUntilDurable(offset)
    }

    /// Waits until every offset below `offset` is on disk. Under `.never` and `.interval`
    /// this forces a sync (on the caller's thread): for checkpoints, which must not claim
    /// what the disk lacks, not for acknowledgements (`waitForAcknowledgement`).
    public func waitUntilDurable(_ offset: Int64) async throws {
        let (committer, end) = lock.withLock { (self.committer, segments.last!.nextOffset) }
        guard offset <= end else {
            throw StoreError(.invalidArgument, "offset \(offset) is past the end of the log (\(end))")
        }
        if let committer, configuration.durability == .always {
            try await committer.waitUntilDurable(offset)
        } else {
            try flush()
        }
    }

    /// Cuts the log back to `address`, dropping everything from there on: for a log whose
    /// owner finds, on opening, that its last append was cut short by a crash (a prefix of
    /// its entries reached the disk) and must not count. Byte-addressed logs only; the
    /// address must be an entry boundary at or after the start of the log.
    public func truncate(to address: Int64) throws {
        precondition(Format.addressing == .bytes, "truncate(to:) is for byte-addressed logs")
        try lock.withLock {
            if let failure { throw failure }
            guard address >= segments.first!.baseOffset, address <= segments.last!.nextOffset else {
                throw StoreError(.invalidArgument, "cannot truncate to \(address): the log holds \(segments.first!.baseOffset)..<\(segments.last!.nextOffset)")
            }
            // The segment the address falls in becomes the active one, cut there.
            let keep = max(1, segments.lastIndex { $0.baseOffset < address }.map { $0 + 1 } ?? 1)
            let holder = segments[keep - 1]
            try rollBack(to: UndoPoint(keep, size: address - holder.baseOffset, nextOffset: address, maxTimestamp: holder.maxTimestamp))
            try holder.file.sync()
            committer?.cut(to: address)
        }
    }

    /// Returns once the log's background work (seals of rolled segments, deletions asked
    /// for with `inBackground`) is done.
    public func waitForBackgroundWork() {
        sealing.wait()
    }

    /// Syncs the active segment now.
    public func flush() throws {
        let covered = try syncActive()
        lock.withLock { committer }?.advance(to: covered)
    }

    /// fdatasync of the active segment; returns the offset it covered. Called by the
    /// committer (on a sync thread) without the lock held across the sync.
    private func syncActive() throws -> Int64 {
        var target: (file: DataFile, end: Int64)? = nil
        while target == nil {
            sealing.wait()
            // A roll between the wait and the lock leaves a seal in flight: wait again, so
            // the offset returned never covers a sealed segment not yet on disk.
            target = try lock.withLock {
                if let failure { throw failure }
                guard sealsInFlight == 0 else { return nil }
                let active = segments.last!
                return (active.file, active.nextOffset)
            }
        }
        let (file, end) = target!
        let started = DispatchTime.now().uptimeNanoseconds
        do {
            try file.sync()
            syncLatency.recordNanoseconds(Int64(DispatchTime.now().uptimeNanoseconds &- started))
        } catch let error as StoreError {
            lock.withLock { failure = failure ?? error }
            throw error
        }
        return end
    }

    // MARK: - Read

    /// Whole batches holding offsets from `offset` on, up to about `maxBytes` (at least one
    /// batch when any is there). The first batch may start before `offset`. Returns [] at
    /// the end of the log. A damaged batch in the way is a `.corruptBatch` error whose
    /// `resumeOffset` says where reading can go on.
    public func read(from offset: Int64, maxBytes: Int = 1 << 20) throws -> [Format.Entry] {
        var snapshot: [(segment: LogSegment<Format>, end: Int64, position: Int64, expected: Int64, next: Int64?)] = []
        try lock.withLock {
            let start = segments.first!.baseOffset
            guard offset >= start else {
                throw StoreError(.offsetOutOfRange, "offset \(offset) is before the log start \(start) (deleted by retention)", resumeOffset: start)
            }
            guard offset < segments.last!.nextOffset else { return }
            let low = indexOfSegment(containing: offset)
            // The segment holding the offset, and the next one in case the offset falls
            // after the last readable batch of the first (a gap left by damage).
            for k in low..<min(low + 2, segments.count) {
                let s = segments[k]
                let entry = k == low ? s.index.entry(atOrBefore: offset) : (position: 0, offset: s.baseOffset)
                snapshot.append((s, s.size, entry.position, entry.offset, k + 1 < segments.count ? segments[k + 1].baseOffset : nil))
            }
        }
        var out: [Format.Entry] = []
        var bytes = 0
        for part in snapshot {
            try collect(
                from: part.segment, end: part.end, position: part.position, expected: part.expected, after: part.next,
                offset: offset, maxBytes: maxBytes, into: &out, bytes: &bytes)
            if !out.isEmpty { break }
        }
        return out
    }

    /// The segment holding `address` (byte addressing), with its valid size. Under `lock`.
    private func segmentHolding(_ address: Int64) throws -> LogSegment<Format> {
        guard address >= segments.first!.baseOffset, address < segments.last!.nextOffset else {
            throw StoreError(.offsetOutOfRange, "address \(address) is outside the log [\(segments.first!.baseOffset), \(segments.last!.nextOffset))")
        }
        let s = segments[indexOfSegment(containing: address)]
        guard address < s.baseOffset + s.size else {
            throw StoreError(.offsetOutOfRange, "address \(address) falls in a gap after segment \(s.baseOffset)")
        }
        return s
    }

    /// Index of the last segment whose base is ≤ `address`. Under `lock`.
    private func indexOfSegment(containing address: Int64) -> Int {
        var low = 0, high = segments.count - 1
        while low < high {
            let mid = (low + high + 1) / 2
            if segments[mid].baseOffset <= address { low = mid } else { high = mid - 1 }
        }
        return low
    }

    /// Runs `body` over the mapped bytes of a byte-addressed log from `address` to the end
    /// of the valid data of its segment: no copy, no system call once the segment is
    /// mapped. The bytes are whatever the file holds; the caller checks the entry (CRC).
    /// The mapping lives as long as the segment, so retention cannot pull it away mid-read;
    /// an I/O error on a mapped page ends the process (recovery then reports the damage).
    public func withMappedBytes<R>(at address: Int64, _ body: (UnsafeRawBufferPointer) throws -> R) throws -> R {
        precondition(Format.addressing == .bytes, "withMappedBytes(at:) needs byte addressing")
        let (segment, mapping, end): (LogSegment<Format>, MappedRegion, Int64) = try lock.withLock {
            let s = try segmentHolding(address)
            if s.mapping == nil || Int64(s.mapping!.length) < s.size {
                s.mapping = try MappedRegion(file: s.file, length: Int(max(s.size, Int64(configuration.segmentBytes))))
            }
            return (s, s.mapping!, s.size)
        }
        let position = Int(address - segment.baseOffset)
        return try withExtendedLifetime(segment) {
            try body(UnsafeRawBufferPointer(start: mapping.base + position, count: Int(end) - position))
        }
    }

    /// The entry at `address` of a byte-addressed log (a timer log): one direct read, the
    /// entry checked like any other. Throws `offsetOutOfRange` for an address outside the
    /// log and `corruptBatch` when the bytes there are not a valid entry for that address.
    public func entry(at address: Int64) throws -> Format.Entry {
        precondition(Format.addressing == .bytes, "entry(at:) needs byte addressing")
        let (segment, end): (LogSegment<Format>, Int64) = try lock.withLock {
            let s = try segmentHolding(address)
            return (s, s.size)
        }
        let position = address - segment.baseOffset
        let head = try segment.file.read(count: Int(min(Int64(Format.headerSize), end - position)), at: position)
        guard head.count == Format.headerSize,
            let peeked = head.withUnsafeBytes({ Format.peek($0, at: 0, limits: configuration.limits) }),
            position + Int64(peeked.totalSize) <= end
        else {
            throw StoreError(.corruptBatch, "no valid entry header at address \(address)", file: segment.path, position: position)
        }
        let bytes = peeked.totalSize == head.count ? head : try segment.file.read(count: peeked.totalSize, at: position)
        let frame: EntryFrame
        do {
            frame = try bytes.withUnsafeBytes { try Format.check($0, limits: configuration.limits) }
        } catch let error as StoreError {
            throw StoreError(.corruptBatch, error.message, file: segment.path, position: position)
        }
        guard frame.address == address else {
            throw StoreError(.corruptBatch, "entry at \(address) says it is at \(frame.address)", file: segment.path, position: position)
        }
        return Format.entry(checked: bytes, frame: frame)
    }

    private func collect(
        from segment: LogSegment<Format>, end: Int64, position: Int64, expected: Int64, after nextSegment: Int64?, offset: Int64,
        maxBytes: Int, into out: inout [Format.Entry], bytes: inout Int
    ) throws {
        // The batch at the index position must carry the index's offset: the index is a
        // hint, the scanner checks it like every other batch.
        var scanner = SegmentScanner<Format>(
            file: segment.file, fileSize: end, from: position, expectedOffset: expected, limits: configuration.limits,
            chunk: max(64 << 10, min(maxBytes, 8 << 20)))
        var damage: (start: Int64, reason: String)? = nil
        while let event = try scanner.next() {
            switch event {
            case .batch(let at, let frame):
                if let d = damage {
                    // Damage lies before the wanted offset only if this entry does not start after it.
                    if frame.address > offset {
                        throw StoreError(.corruptBatch, "damaged batch: \(d.reason)", file: segment.path, position: d.start, resumeOffset: frame.address)
                    }
                    damage = nil
                }
                if frame.nextAddress <= offset { continue }
                out.append(Format.entry(checked: try scanner.bytes(at: at, count: frame.totalSize), frame: frame))
                bytes += frame.totalSize
                if bytes >= maxBytes { return }
            case .damaged(let start, _, let reason), .invalidTail(let start, let reason, _):
                if !out.isEmpty { return }
                logger.error("damaged batch on read", metadata: ["file": "\(segment.path)", "position": "\(start)", "reason": "\(reason)"])
                damage = (start, reason)
            }
        }
        if let d = damage {
            throw StoreError(.corruptBatch, "damaged batch: \(d.reason)", file: segment.path, position: d.start, resumeOffset: nextSegment ?? segment.nextOffset)
        }
    }

    // MARK: - Retention and close

    /// Deletes whole sealed segments that retention allows, oldest first; never the active
    /// one. Returns the base offsets deleted.
    @discardableResult
    public func enforceRetention(nowMilliseconds now: Int64) throws -> [Int64] {
        let policy = configuration.retention
        let removed: [LogSegment<Format>] = lock.withLock {
            var total = segments.reduce(0) { $0 + $1.size }
            var removed: [LogSegment<Format>] = []
            while segments.count > 1 {
                let oldest = segments[0]
                let tooOld = policy.maxAgeMilliseconds.map { Self.age(now: now, of: oldest.maxTimestamp) > $0 } ?? false
                let tooBig = policy.maxBytes.map { total > $0 } ?? false
                guard tooOld || tooBig else { break }
                segments.removeFirst()
                total -= oldest.size
                removed.append(oldest)
            }
            return removed
        }
        return try deleteFiles(of: removed, reason: "retention")
    }

    /// Deletes the oldest sealed segments that end at or before `address` (never the active
    /// one). For logs whose owner knows nothing below `address` is needed any more (the
    /// timer log's reclaim). Returns the base addresses deleted. `inBackground`: the
    /// segments leave the log at once, their files are deleted on the log's background
    /// queue (after any seal still running), so the caller does not wait for unlink and a
    /// directory sync; `close` waits for it. (A crash before it leaves files the next open
    /// finds again, below what the owner needs; its next reclaim deletes them.)
    @discardableResult
    public func removeSegments(endingAtOrBefore address: Int64, inBackground: Bool = false) throws -> [Int64] {
        let removed: [LogSegment<Format>] = lock.withLock {
            var removed: [LogSegment<Format>] = []
            while segments.count > 1, segments[0].nextOffset <= address {
                removed.append(segments.removeFirst())
            }
            return removed
        }
        guard inBackground, !removed.isEmpty else { return try deleteFiles(of: removed, reason: "reclaim") }
        runInBackground { [self] in
            do {
                _ = try deleteFiles(of: removed, reason: "reclaim", waitForSeals: false)
            } catch {
                logger.warning("deleting reclaimed segments failed; they are found again and deleted at the next open's reclaim", metadata: ["error": "\(error)"])
            }
        }
        return removed.map(\.baseOffset)
    }

    /// Deletes the files of segments already taken out of the log, then syncs the
    /// directory. Readers still holding a segment keep reading it until they let go.
    private func deleteFiles(of removed: [LogSegment<Format>], reason: String, waitForSeals: Bool = true) throws -> [Int64] {
        guard !removed.isEmpty else { return [] }
        // A background seal may still be writing the index of a segment being deleted.
        if waitForSeals { sealing.wait() }
        for segment in removed {
            try segment.removeFiles()
            logger.info("deleted segment", metadata: ["reason": "\(reason)", "file": "\(segment.path)", "bytes": "\(segment.size)"])
        }
        try Directory.sync(directory)
        return removed.map(\.baseOffset)
    }

    /// Milliseconds from `timestamp` to `now`, saturating; 0 for an empty segment or a
    /// timestamp in the future.
    static func age(now: Int64, of timestamp: Int64) -> Int64 {
        guard timestamp != .min, now > timestamp else { return 0 }
        let (age, overflow) = now.subtractingReportingOverflow(timestamp)
        return overflow ? .max : age
    }

    /// Syncs, writes the active segment's index (so the next open needs no scan) and
    /// stops its syncs. Appends after this fail with `.closed`.
    public func close() throws {
        // Refuse appends first, so the committer's last sync covers every append made.
        let committer: GroupCommitter? = lock.withLock {
            guard !isClosed else { return nil }
            isClosed = true
            defer { self.committer = nil }
            return self.committer
        }
        committer?.stop()
        sealing.wait()
        try lock.withLock {
            if failure != nil { return }
            let active = segments.last!
            try active.file.sync()
            try active.writeIndex()
        }
    }
}

/// How many logs of this process have failed a write or sync so far (never down: a failed
/// log stays failed until reopened). Zero lets a health check skip asking every log.
public enum LogFailures {
    static let count = Atomic<Int>(0)
    public static var any: Bool { count.load(ordering: .relaxed) > 0 }
}
