import ChimeStore
import Logging

/// A group's committed position in one partition, made durable: a small log of acks
/// (`acks/`, one record per ack call: the acked offsets as ranges) and a snapshot
/// (`acks.snapshot`: both frontiers, the acked offsets above them, and the journal offset
/// it covers). Opening loads the snapshot and replays the journal after it.
final class AckJournal: @unchecked Sendable {
    private static let magic: UInt32 = 0x4B41_4843  // "CHAK"
    let log: RecordLog
    private let snapshotPath: String
    /// What the last snapshot written held (nil before one): an unchanged group writes none.
    private var lastSnapshot: [UInt8]?

    struct Position {
        var readyFrontier: Int64 = 0
        var readyAcked: [Int64] = []
        var retryFrontier: Int64 = 0
        var retryAcked: [Int64] = []
    }

    init(directory: String, configuration: LogConfiguration, calls: FileSystemCalls, logger: Logger) throws {
        log = try RecordLog.open(directory: directory + "/acks", configuration: configuration, calls: calls, logger: logger)
        snapshotPath = directory + "/acks.snapshot"
    }

    /// The committed position: snapshot plus journal. `readyStart`: the ready log's first
    /// offset, where a group that never acked starts.
    func restore(readyStart: Int64) throws -> Position {
        var p = Position(readyFrontier: readyStart)
        var from = log.startOffset
        if var r = SnapshotReader(path: snapshotPath, magic: Self.magic), r.version == 1, let journal = r.i64(),
            let rf = r.i64(), let rn = r.u32()
        {
            p.readyFrontier = rf
            p.readyAcked = (0..<rn).compactMap { _ in r.i64() }
            if let tf = r.i64(), let tn = r.u32() {
                p.retryFrontier = tf
                p.retryAcked = (0..<tn).compactMap { _ in r.i64() }
            }
            from = max(from, journal)
        }
        try log.scan(from: from) { batches, readFrom in
            for b in batches {
                for r in try b.records() where r.offset >= readFrom {
                    Self.decode(r.record.body) { source, first, count in
                        for o in first..<(first + Int64(count)) {
                            if source == .ready { p.readyAcked.append(o) } else { p.retryAcked.append(o) }
                        }
                    }
                }
            }
        }
        return p
    }

    /// Appends one ack call's offsets; returns the journal offset to wait for.
    func append(_ acked: [(source: DeliverySource, offset: Int64)], now: Int64) throws -> Int64 {
        var body: [UInt8] = []
        body.reserveCapacity(16 * 8)
        for source in [DeliverySource.ready, .retry] {
            let offsets = acked.filter { $0.source == source }.map(\.offset).sorted()
            var k = 0
            while k < offsets.count {
                var n = 1
                while k + n < offsets.count, offsets[k + n] == offsets[k] + Int64(n) { n += 1 }
                body.append(source.rawValue)
                LittleEndian.append(offsets[k], to: &body)
                LittleEndian.append(UInt32(n), to: &body)
                k += n
            }
        }
        var builder = RecordBatchBuilder(capacity: body.count + 64)
        builder.append(Record(timestamp: now, body: body))
        return try log.append(try builder.build()).nextOffset
    }

    static func decode(_ body: [UInt8], _ each: (DeliverySource, Int64, UInt32) -> Void) {
        body.withUnsafeBytes { raw in
            var i = 0
            while i + 13 <= raw.count {
                let source = DeliverySource(rawValue: raw[i]) ?? .ready
                each(source, LittleEndian.load(Int64.self, raw, i + 1), LittleEndian.load(UInt32.self, raw, i + 9))
                i += 13
            }
        }
    }

    /// Writes the snapshot, then drops the journal segments it covers.
    func snapshot(ready: DeliveryWindow, retry: DeliveryWindow, journalEnd: Int64) throws {
        var w = SnapshotWriter(magic: Self.magic, version: 1)
        w.i64(journalEnd)
        for window in [ready, retry] {
            w.i64(window.frontier)
            let acked = window.ackedOffsets
            w.u32(UInt32(acked.count))
            for o in acked { w.i64(o) }
        }
        // A group that acked nothing since writes nothing: at thousands of partitions that
        // would be thousands of atomic file writes each second.
        guard w.bytes != lastSnapshot else { return }
        try w.write(to: snapshotPath)
        lastSnapshot = w.bytes
        try log.removeSegments(endingAtOrBefore: journalEnd)
    }
}

/// Reads records of a log by offset, keeping the last batches read decoded: deliveries
/// walk forward, and redeliveries mostly come back in order.
struct RecordCursor {
    let log: RecordLog
    private var cache: [StoredRecord] = []
    private var cacheBase: Int64 = 0

    init(log: RecordLog) { self.log = log }

    /// The record at `offset`; nil past the end of the log. A damaged batch throws a
    /// `StoreError` whose `resumeOffset` says where the log goes on.
    mutating func record(at offset: Int64) throws -> StoredRecord? {
        if offset >= cacheBase, offset < cacheBase + Int64(cache.count) {
            let r = cache[Int(offset - cacheBase)]
            // Batches are contiguous unless recovery cut damage out between them.
            if r.offset == offset { return r }
            if let found = cache.first(where: { $0.offset >= offset }) { return found }
        }
        let batches = try log.read(from: offset, maxBytes: 1 << 20)
        guard !batches.isEmpty else { return nil }
        var records: [StoredRecord] = []
        for b in batches { records.append(contentsOf: try b.records()) }
        guard let first = records.first, first.offset <= offset, offset < first.offset + Int64(records.count) else {
            // A gap in the log (damage skipped at recovery): go on after it.
            cache = records
            cacheBase = records.first?.offset ?? offset
            return records.first { $0.offset >= offset }
        }
        cache = records
        cacheBase = first.offset
        let r = cache[Int(offset - cacheBase)]
        return r.offset == offset ? r : cache.first { $0.offset >= offset }
    }
}
