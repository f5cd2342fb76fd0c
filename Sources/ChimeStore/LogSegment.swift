#if canImport(Glibc)
import Glibc
#endif
import Logging

/// A byte range of a segment that holds no valid batch, found by a scan or a read.
public struct DamagedRange: Sendable, Equatable, CustomStringConvertible {
    public var file: String
    public var start: Int64
    /// First byte after the damage (the end of the file for a damaged tail).
    public var end: Int64
    public var reason: String

    public var description: String { "\(file): bytes \(start)..<\(end) damaged (\(reason))" }
}

/// What opening a segment found.
public struct SegmentRecovery: Sendable, Equatable {
    public var baseOffset: Int64
    public var file: String
    /// Whether the segment's bytes were scanned (index missing, stale or damaged, or an
    /// active segment after an unclean stop).
    public var scanned: Bool
    public var validBytes: Int64
    /// Bytes cut off a torn tail of the active segment.
    public var truncatedBytes: Int64
    public var damaged: [DamagedRange]
}

/// One segment file (`<20-digit base address>.<ext>`) and its sparse index.
/// Mutable state is changed only under the owning log's lock; reads use pread.
final class LogSegment<Format: SegmentEntryFormat>: @unchecked Sendable {
    let baseOffset: Int64
    let file: DataFile
    let indexPath: String
    /// Bytes of whole batches; the next batch is written here.
    var size: Int64
    var nextOffset: Int64
    var maxTimestamp: Int64
    var index: SegmentIndex
    var damaged: [DamagedRange] = []
    /// A read-only mapping for random reads (byte-addressed logs), made on first use and
    /// sized to the segment limit so appends stay inside it. Under the log's lock.
    var mapping: MappedRegion?

    var path: String { file.path }

    static func fileName(_ baseOffset: Int64, _ ext: String) -> String {
        let digits = String(baseOffset)
        return String(repeating: "0", count: max(0, 20 - digits.count)) + digits + "." + ext
    }

    /// Parses `00000000000000001234.log` into 1234.
    static func baseOffset(fromFileName name: String) -> Int64? {
        let suffix = "." + Format.fileExtension
        guard name.hasSuffix(suffix) else { return nil }
        let stem = name.dropLast(suffix.count)
        guard stem.count == 20, stem.allSatisfy(\.isASCII), stem.allSatisfy(\.isNumber) else { return nil }
        return Int64(stem)
    }

    private init(baseOffset: Int64, file: DataFile, indexPath: String, size: Int64, intervalBytes: Int) {
        self.baseOffset = baseOffset
        self.file = file
        self.indexPath = indexPath
        self.size = size
        self.nextOffset = baseOffset
        self.maxTimestamp = .min
        self.index = SegmentIndex(baseOffset: baseOffset, intervalBytes: intervalBytes)
    }

    /// Creates a new empty segment and makes its directory entry durable (unless the
    /// caller syncs the directory itself, later but before anything in it counts durable).
    static func create(
        directory: String, baseOffset: Int64, configuration: LogConfiguration, calls: FileSystemCalls, syncDirectory: Bool = true
    ) throws -> LogSegment {
        let path = directory + "/" + fileName(baseOffset, Format.fileExtension)
        let file = try DataFile.open(path, create: true, calls: calls, cache: configuration.descriptors)
        try file.truncate(to: 0)
        if syncDirectory { try Directory.sync(directory) }
        return LogSegment(
            baseOffset: baseOffset, file: file, indexPath: directory + "/" + fileName(baseOffset, "index"),
            size: 0, intervalBytes: configuration.indexIntervalBytes)
    }

    /// Opens an existing segment. A valid index (matching the data size) is trusted for
    /// structure; otherwise the segment is scanned, CRC by CRC. For the active segment a
    /// torn tail is cut off; elsewhere, damage is only isolated and reported.
    static func open(
        directory: String, baseOffset: Int64, active: Bool, configuration: LogConfiguration,
        calls: FileSystemCalls, readOnly: Bool = false, logger: Logger
    ) throws -> (LogSegment, SegmentRecovery) {
        let path = directory + "/" + fileName(baseOffset, Format.fileExtension)
        let file = try DataFile.open(path, create: false, readOnly: readOnly, calls: calls, cache: configuration.descriptors)
        let status = try file.status()
        let size = status.size
        let segment = LogSegment(
            baseOffset: baseOffset, file: file, indexPath: directory + "/" + fileName(baseOffset, "index"),
            size: size, intervalBytes: configuration.indexIntervalBytes)
        var report = SegmentRecovery(baseOffset: baseOffset, file: path, scanned: false, validBytes: size, truncatedBytes: 0, damaged: [])

        if let bytes = try? DataFile.open(segment.indexPath, create: false, readOnly: true, calls: calls, cache: configuration.descriptors),
            let content = try? bytes.read(count: Int(min(try bytes.size(), 1 << 30)), at: 0),
            let loaded = SegmentIndex.decode(content, baseOffset: baseOffset, segment: status, intervalBytes: configuration.indexIntervalBytes)
        {
            segment.index = loaded.index
            segment.nextOffset = loaded.nextOffset
            segment.maxTimestamp = loaded.maxTimestamp
            return (segment, report)
        }

        report.scanned = true
        var scanner = SegmentScanner<Format>(file: file, fileSize: size, from: 0, expectedOffset: baseOffset, limits: configuration.limits)
        while let event = try scanner.next() {
            switch event {
            case .batch(let position, let frame):
                segment.index.didAppend(baseOffset: frame.address, position: position, size: frame.totalSize)
                segment.nextOffset = frame.nextAddress
                segment.maxTimestamp = max(segment.maxTimestamp, frame.maxTimestamp)
            case .damaged(let start, let end, let reason):
                let range = DamagedRange(file: path, start: start, end: end, reason: reason)
                logger.error("segment damage isolated; the valid batches after it stay readable", metadata: [
                    "file": "\(path)", "start": "\(start)", "end": "\(end)", "reason": "\(reason)",
                ])
                segment.damaged.append(range)
                report.damaged.append(range)
            case .invalidTail(let start, let reason, let torn):
                if active && !readOnly && torn {
                    // Only the last write can be torn: cut it so appends continue after the
                    // last whole batch.
                    logger.warning("cutting a torn tail off the active segment", metadata: [
                        "file": "\(path)", "position": "\(start)", "bytes": "\(size - start)", "reason": "\(reason)",
                    ])
                    try file.truncate(to: start)
                    try file.sync()
                    report.truncatedBytes = size - start
                    segment.size = start
                } else {
                    // A whole batch that fails its checks is damage, not a torn write: kept,
                    // reported, and appends go after it.
                    let range = DamagedRange(file: path, start: start, end: size, reason: reason)
                    if !readOnly {
                        logger.error("segment ends in damage; isolated, not cut", metadata: [
                            "file": "\(path)", "start": "\(start)", "end": "\(size)", "reason": "\(reason)",
                        ])
                    }
                    segment.damaged.append(range)
                    report.damaged.append(range)
                }
            }
        }
        report.validBytes = segment.size - segment.damaged.reduce(0) { $0 + ($1.end - $1.start) }
        if Format.addressing == .bytes {
            // Addresses are positions: what follows kept damage starts after its bytes.
            segment.nextOffset = baseOffset + segment.size
        }
        if !active && !readOnly {
            // Remember the rebuilt index so the next open need not scan.
            try? segment.writeIndex()
        }
        return (segment, report)
    }

    /// Writes the index atomically, stamped with the segment file's size and change time.
    func writeIndex() throws {
        try Directory.writeAtomically(try encodedIndex(), to: indexPath, calls: file.calls)
    }

    /// The index file's bytes, stamped with the segment file's size and change time as they
    /// are now (after its last write: a segment is sealed or the log closing).
    func encodedIndex() throws -> [UInt8] {
        // The segment's size, not the file's: a file longer than its segment (a failed
        // append not cut back) makes the index stale, and the next open scans.
        let changed = try file.status().changeTime
        return index.encode(nextOffset: nextOffset, maxTimestamp: maxTimestamp, covered: FileStatus(size: size, changeTime: changed))
    }

    func removeFiles() throws {
        // A reader may still hold this segment: its descriptor stays open until it goes.
        try? file.keepOpen()
        try Directory.remove(file.path)
        try Directory.remove(indexPath)
    }
}
