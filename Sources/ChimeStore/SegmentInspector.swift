import Logging

/// Reads segment files for tools (`chime inspect`): every batch with its CRC verdict and
/// every damaged range, from the bytes alone — indexes are reported on, never trusted.
public enum SegmentInspector {
    public struct BatchSummary: Sendable, Equatable {
        public var file: String
        public var position: Int64
        public var header: RecordBatchHeader
    }

    public enum Entry: Sendable, Equatable {
        case batch(BatchSummary)
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
        public var batches: Int
        public var records: Int64
        public var damaged: [DamagedRange]
        public var firstOffset: Int64?
        public var lastOffset: Int64?
    }

    /// The segment files of a log directory, or the one file given, in offset order.
    public static func segmentFiles(at path: String) throws -> [String] {
        if Directory.isDirectory(path) {
            let names = try Directory.entries(path).filter { LogSegment<RecordBatchFormat>.baseOffset(fromFileName: $0) != nil }.sorted()
            return names.map { path + "/" + $0 }
        }
        let name = String(path.split(separator: "/").last ?? "")
        guard LogSegment<RecordBatchFormat>.baseOffset(fromFileName: name) != nil else {
            throw StoreError(.invalidArgument, "\(path) is neither a log directory nor a segment file (<20 digits>.log)")
        }
        return [path]
    }

    /// Scans one segment file, calling `visit` for each batch and damaged range in order.
    public static func inspect(
        segmentFile path: String, limits: BatchLimits = BatchLimits(), visit: (Entry) throws -> Void
    ) throws -> SegmentSummary {
        let name = String(path.split(separator: "/").last ?? "")
        guard let base = LogSegment<RecordBatchFormat>.baseOffset(fromFileName: name) else {
            throw StoreError(.invalidArgument, "\(path) is not named like a segment file (<20 digits>.log)")
        }
        let file = try DataFile.open(path, create: false, readOnly: true, calls: .system)
        let size = try file.size()
        let indexPath = String(path.dropLast(4)) + ".index"
        var summary = SegmentSummary(file: path, baseOffset: base, bytes: size, index: .missing, batches: 0, records: 0, damaged: [])
        if let indexFile = try? DataFile.open(indexPath, create: false, readOnly: true, calls: .system) {
            let bytes = try indexFile.read(count: Int(min(try indexFile.size(), 1 << 30)), at: 0)
            summary.index = SegmentIndex.decode(bytes, baseOffset: base, segmentSize: size, intervalBytes: 4096) != nil ? .ok : .stale
        }
        var scanner = SegmentScanner<RecordBatchFormat>(file: file, fileSize: size, from: 0, expectedOffset: base, limits: limits)
        while let event = try scanner.next() {
            switch event {
            case .batch(let position, _):
                let header = try scanner.bytes(at: position, count: RecordBatchHeader.size).withUnsafeBytes { RecordBatchHeader($0) }
                summary.batches += 1
                summary.records += Int64(header.recordCount)
                if summary.firstOffset == nil { summary.firstOffset = header.baseOffset }
                summary.lastOffset = header.lastOffset
                try visit(.batch(BatchSummary(file: path, position: position, header: header)))
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
