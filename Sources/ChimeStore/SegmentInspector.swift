import Logging

/// Reads segment files for tools (`chime inspect`): every entry with its CRC verdict and
/// every damaged range, from the bytes alone — indexes are reported on, never trusted.
/// Generic over the entry format; record batches have a convenience API on top.
public enum SegmentInspector {
    public struct BatchSummary: Sendable, Equatable {
        public var file: String
        public var position: Int64
        public var header: RecordBatchHeader
        /// Why the records do not match the header (their count, first or largest
        /// timestamp, bytes after the last), when they were checked and did not.
        public var structureError: String? = nil
    }

    public enum Entry: Sendable, Equatable {
        case batch(BatchSummary)
        case damaged(DamagedRange)
    }

    /// One item of a generic scan: a checked entry (its bytes), or a damaged range.
    public enum Item<Format: SegmentEntryFormat> {
        case entry(position: Int64, frame: EntryFrame, entry: Format.Entry)
        case damaged(DamagedRange)
    }

    public enum IndexState: String, Sendable {
        case ok, missing, stale
    }

    public struct SegmentSummary: Sendable, Equatable {
        public var file: String
        public var baseOffset: Int64
        public var bytes: Int64
        public var index: IndexState
        /// Entries (batches, for a ready log).
        public var batches: Int
        /// Addresses the entries span (records, for a ready log; bytes for a timer log).
        public var records: Int64
        public var damaged: [DamagedRange]
        public var firstOffset: Int64?
        public var lastOffset: Int64?
    }

    /// The segment files of a log directory, or the one file given, in address order:
    /// `.log` (ready log) or `.timer` (timer log) files.
    public static func segmentFiles(at path: String) throws -> [String] {
        func isSegment(_ name: String) -> Bool {
            LogSegment<RecordBatchFormat>.baseOffset(fromFileName: name) != nil || isTimerSegment(name)
        }
        if Directory.isDirectory(path) {
            return try Directory.entries(path).filter(isSegment).sorted().map { path + "/" + $0 }
        }
        let name = String(path.split(separator: "/").last ?? "")
        guard isSegment(name) else {
            throw StoreError(.invalidArgument, "\(path) is neither a log directory nor a segment file (<20 digits>.log or .timer)")
        }
        return [path]
    }

    /// Whether a file name is a timer-log segment (`<20 digits>.timer`).
    public static func isTimerSegment(_ name: String) -> Bool {
        name.hasSuffix(".timer") && name.dropLast(6).count == 20 && name.dropLast(6).allSatisfy { $0.isASCII && $0.isNumber }
    }

    /// Scans one segment file of `format`, calling `visit` for each entry and damaged range.
    public static func scan<Format: SegmentEntryFormat>(
        _ format: Format.Type, segmentFile path: String, limits: BatchLimits = BatchLimits(),
        visit: (Item<Format>) throws -> Void
    ) throws -> SegmentSummary {
        let name = String(path.split(separator: "/").last ?? "")
        guard let base = LogSegment<Format>.baseOffset(fromFileName: name) else {
            throw StoreError(.invalidArgument, "\(path) is not named like a segment file (<20 digits>.\(Format.fileExtension))")
        }
        let file = try DataFile.open(path, create: false, readOnly: true, calls: .system)
        let status = try file.status()
        let size = status.size
        let indexPath = String(path.dropLast(Format.fileExtension.count + 1)) + ".index"
        var summary = SegmentSummary(file: path, baseOffset: base, bytes: size, index: .missing, batches: 0, records: 0, damaged: [])
        if let indexFile = try? DataFile.open(indexPath, create: false, readOnly: true, calls: .system) {
            let bytes = try indexFile.read(count: Int(min(try indexFile.size(), 1 << 30)), at: 0)
            summary.index = SegmentIndex.decode(bytes, baseOffset: base, segment: status, intervalBytes: 4096) != nil ? .ok : .stale
        }
        var scanner = SegmentScanner<Format>(file: file, fileSize: size, from: 0, expectedOffset: base, limits: limits)
        while let event = try scanner.next() {
            switch event {
            case .batch(let position, let frame):
                summary.batches += 1
                summary.records += frame.span
                if summary.firstOffset == nil { summary.firstOffset = frame.address }
                summary.lastOffset = frame.nextAddress - 1
                let bytes = try scanner.bytes(at: position, count: frame.totalSize)
                try visit(.entry(position: position, frame: frame, entry: Format.entry(checked: bytes, frame: frame)))
            case .damaged(let start, let end, let reason):
                let range = DamagedRange(file: path, start: start, end: end, reason: reason)
                summary.damaged.append(range)
                try visit(.damaged(range))
            case .invalidTail(let start, let reason, _):
                let range = DamagedRange(file: path, start: start, end: size, reason: reason)
                summary.damaged.append(range)
                try visit(.damaged(range))
            }
        }
        return summary
    }

    /// Scans one ready-log segment file, batch by batch; with `checkRecords`, every batch's
    /// records are walked and held to its header (`RecordBatch.validateRecords`).
    public static func inspect(
        segmentFile path: String, limits: BatchLimits = BatchLimits(), checkRecords: Bool = false, visit: (Entry) throws -> Void
    ) throws -> SegmentSummary {
        try scan(RecordBatchFormat.self, segmentFile: path, limits: limits) { item in
            switch item {
            case .entry(let position, _, let batch):
                var summary = BatchSummary(file: path, position: position, header: batch.header)
                if checkRecords {
                    do { try batch.validateRecords() } catch let error as StoreError { summary.structureError = error.message }
                }
                try visit(.batch(summary))
            case .damaged(let range):
                try visit(.damaged(range))
            }
        }
    }

    /// Reads the records of the batch at `position` of a segment file.
    public static func records(segmentFile path: String, position: Int64, limits: BatchLimits = BatchLimits()) throws -> [StoredRecord] {
        let file = try DataFile.open(path, create: false, readOnly: true, calls: .system)
        let head = try file.read(count: RecordBatchHeader.size, at: position)
        guard head.count == RecordBatchHeader.size else { throw StoreError(.corruptBatch, "no batch header", file: path, position: position) }
        let header = head.withUnsafeBytes { RecordBatchHeader($0) }
        guard header.totalSize <= limits.maxBatchBytes else { throw StoreError(.batchTooLarge, "batch too large", file: path, position: position) }
        let bytes = try file.read(count: header.totalSize, at: position)
        return try RecordBatch(validating: bytes, limits: limits).records()
    }
}
