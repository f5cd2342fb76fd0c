import ChimeSchedule
import ChimeStore
import Foundation
import Logging

/// A partition's schedules: an append-only record log (`schedules/`) of definitions,
/// deletions and plans, read whole when the partition opens. Each record's key is the
/// schedule's name and its `op` header (one byte) says what it is (docs/formats.md):
///
/// - 1 define: the body is the schedule as JSON (every create and update);
/// - 2 delete: no body;
/// - 3 planned: the occurrence waiting in the wheel — occurrence, fire time, timer id and
///   the revision it was planned under, four little-endian Int64;
/// - 4 unplanned: the timer id of a plan about to be cancelled (Int64), written before the
///   cancel so that a restart in between cancels it again instead of trusting it;
/// - 5 published: a watched schedule's occurrence (overlap policy, fixed delay) and the
///   ready-log offset of its message, two Int64: a restart asks the group about it.
///
/// A plan is written after its timer entry is durable; a restart finds one whose record
/// was lost in the timer log's tail (`Partition.recoverSchedules`). Owned by its
/// partition's actor.
final class ScheduleTable {
    enum Op: UInt8 {
        case define = 1, delete = 2, planned = 3, unplanned = 4, published = 5
    }

    struct Plan: Equatable {
        var occurrence: Int64
        var fireAt: Int64
        var timerID: Int64
        var revision: Int64
    }

    /// A class: looked up for every occurrence, never copied field by field (a struct of a
    /// schedule's strings and arrays cost a retain per field per lookup).
    final class Row {
        fileprivate(set) var schedule: Schedule
        fileprivate(set) var plan: Plan?
        /// A plan whose cancel was begun (`unplanned`) and maybe not done.
        fileprivate(set) var cancelling: Int64?
        /// The last occurrence fired since the partition opened.
        fileprivate(set) var lastOccurrence: Int64?
        /// A watched schedule's last occurrence published, and its ready-log offset.
        fileprivate(set) var published: (occurrence: Int64, offset: Int64)?

        init(schedule: Schedule) { self.schedule = schedule }
    }

    static let opHeader = "op"
    private var log: RecordLog
    private let directory: String
    private let configuration: LogConfiguration
    private let calls: FileSystemCalls
    private let logger: Logger
    /// Records in the log (read at opening, then appended): a compaction rewrites it as two
    /// per row once it holds many more (a planned record is added per occurrence).
    private(set) var records = 0
    private(set) var rows: [String: Row] = [:]
    /// The highest timer id any planned record names: a restart looks for plans made after
    /// it in the timer log.
    private(set) var lastPlannedTimerID: Int64 = -1
    private let clock: () -> Int64

    init(directory: String, configuration: LogConfiguration, calls: FileSystemCalls, clock: @escaping () -> Int64, logger: Logger) throws {
        try TableSwap.finish(directory)
        log = try RecordLog.open(directory: directory, configuration: configuration, calls: calls, logger: logger)
        self.directory = directory
        self.configuration = configuration
        self.calls = calls
        self.logger = logger
        self.clock = clock
        let decoder = JSONDecoder()
        try log.scan(from: log.startOffset, damaged: { error in
            logger.error("damaged batch in the schedule table; the schedules it held are lost", metadata: ["error": "\(error)"])
        }) { batches, from in
            for b in batches where b.nextOffset > from {
                for r in try b.records() where r.offset >= from {
                    guard let keyBytes = r.record.key, let name = String(validating: keyBytes, as: UTF8.self),
                        let opByte = r.record.headers.first(where: { $0.name == Self.opHeader })?.value.first, let op = Op(rawValue: opByte)
                    else {
                        logger.error("unreadable record in the schedule table, skipped", metadata: ["offset": "\(r.offset)"])
                        continue
                    }
                    apply(op, name: name, body: r.record.body, decoder: decoder, logger: logger)
                    records += 1
                }
            }
        }
    }

    private func apply(_ op: Op, name: String, body: [UInt8], decoder: JSONDecoder, logger: Logger) {
        switch op {
        case .define:
            guard let schedule = try? decoder.decode(Schedule.self, from: Data(body)) else {
                logger.error("unreadable schedule definition, skipped", metadata: ["schedule": "\(name)"])
                return
            }
            if rows[name] != nil { rows[name]!.schedule = schedule } else { rows[name] = Row(schedule: schedule) }
        case .delete:
            // The plan's cancel is done by the deletion before this record; a restart
            // cancels again what the table still names (`takeOrphans`).
            if let row = rows.removeValue(forKey: name), let id = row.plan?.timerID ?? row.cancelling { orphans.append(id) }
        case .planned:
            guard body.count == 32, rows[name] != nil else { return }
            let plan = body.withUnsafeBytes { b in
                Plan(
                    occurrence: LittleEndian.load(Int64.self, b, 0), fireAt: LittleEndian.load(Int64.self, b, 8),
                    timerID: LittleEndian.load(Int64.self, b, 16), revision: LittleEndian.load(Int64.self, b, 24))
            }
            rows[name]!.plan = plan
            rows[name]!.cancelling = nil
            lastPlannedTimerID = max(lastPlannedTimerID, plan.timerID)
        case .published:
            guard body.count == 16, rows[name] != nil else { return }
            rows[name]!.published = body.withUnsafeBytes { (LittleEndian.load(Int64.self, $0, 0), LittleEndian.load(Int64.self, $0, 8)) }
        case .unplanned:
            guard body.count == 8, rows[name] != nil else { return }
            rows[name]!.cancelling = body.withUnsafeBytes { LittleEndian.load(Int64.self, $0, 0) }
            rows[name]!.plan = nil
        }
    }

    /// Timer ids of plans of deleted schedules, found while reading the table: cancelled
    /// again at recovery (the cancel may not have reached the disk).
    private(set) var orphans: [Int64] = []
    func takeOrphans() -> [Int64] {
        defer { orphans = [] }
        return orphans
    }

    // MARK: - Writes (durable on return, as the log's policy says)

    func define(_ schedule: Schedule) throws {
        let body = Array(try JSONEncoder().encode(schedule))
        try append([(schedule.name, .define, body)])
        if rows[schedule.name] != nil { rows[schedule.name]!.schedule = schedule } else { rows[schedule.name] = Row(schedule: schedule) }
    }

    func delete(_ name: String) throws {
        try append([(name, .delete, [])])
        rows[name] = nil
    }

    /// Records plans made (their timer entries durable already), in one append.
    func planned(_ plans: [(name: String, plan: Plan)]) throws {
        guard !plans.isEmpty else { return }
        try append(
            plans.map { p in (p.name, .planned, Self.encode(p.plan)) })
        for p in plans where rows[p.name] != nil {
            rows[p.name]!.plan = p.plan
            rows[p.name]!.cancelling = nil
            lastPlannedTimerID = max(lastPlannedTimerID, p.plan.timerID)
        }
    }

    /// Records the messages watched schedules' occurrences were published as.
    func published(_ entries: [(name: String, occurrence: Int64, offset: Int64)]) throws {
        let known = entries.filter { rows[$0.name] != nil }
        guard !known.isEmpty else { return }
        try append(
            known.map { e in
                var body: [UInt8] = []
                LittleEndian.append(e.occurrence, to: &body)
                LittleEndian.append(e.offset, to: &body)
                return (e.name, .published, body)
            })
        for e in known { rows[e.name]!.published = (e.occurrence, e.offset) }
    }

    /// Records that these plans are about to be cancelled.
    func unplanned(_ names: [String]) throws {
        let cancels = names.compactMap { name in rows[name]?.plan.map { (name, $0.timerID) } }
        guard !cancels.isEmpty else { return }
        try append(
            cancels.map { c in
                var body: [UInt8] = []
                LittleEndian.append(c.1, to: &body)
                return (c.0, .unplanned, body)
            })
        for c in cancels {
            rows[c.0]!.plan = nil
            rows[c.0]!.cancelling = c.1
        }
    }

    /// A cancel begun by `unplanned` is done.
    func cancelled(_ name: String) { rows[name]?.cancelling = nil }

    func fired(_ name: String, occurrence: Int64) {
        guard rows[name] != nil else { return }
        rows[name]!.lastOccurrence = max(rows[name]!.lastOccurrence ?? .min, occurrence)
        rows[name]!.plan = nil
    }

    private func append(_ entries: [(name: String, op: Op, body: [UInt8])]) throws {
        var builder = RecordBatchBuilder(capacity: entries.reduce(64) { $0 + $1.name.utf8.count + $1.body.count + 32 })
        let now = clock()
        for r in entries {
            builder.append(Record(timestamp: now, key: Array(r.name.utf8), headers: [RecordHeader(name: Self.opHeader, value: [r.op.rawValue])], body: r.body))
        }
        _ = try log.append(try builder.build())
        if log.configuration.durability != .never { try log.flush() }
        records += entries.count
    }

    // MARK: - Compaction

    /// Whether the log holds over four times the records its rows need (and 10,000 at least).
    var worthCompacting: Bool { records > max(10_000, 8 * rows.count) }

    /// Rewrites the log as its rows: a define and, if planned, a planned (or an unplanned)
    /// record each, into `schedules.new/`, synced, then swapped in by two renames. A crash
    /// at any point leaves one whole table (`TableSwap`).
    func compact() throws {
        let fresh = directory + ".new"
        if Directory.isDirectory(fresh) { try Directory.removeTree(fresh) }
        let encoder = JSONEncoder()
        var written = 0
        do {
            let log = try RecordLog.open(directory: fresh, configuration: configuration, calls: calls, logger: logger)
            var builder = RecordBatchBuilder(capacity: 1 << 20)
            let now = clock()
            func add(_ name: String, _ op: Op, _ body: [UInt8]) throws {
                builder.append(Record(timestamp: now, key: Array(name.utf8), headers: [RecordHeader(name: Self.opHeader, value: [op.rawValue])], body: body))
                written += 1
                if builder.sectionSize >= 1 << 20 {
                    _ = try log.append(try builder.build())
                    builder.reset()
                }
            }
            for (name, row) in rows.sorted(by: { $0.key < $1.key }) {
                try add(name, .define, Array(try encoder.encode(row.schedule)))
                if let p = row.published {
                    var body: [UInt8] = []
                    LittleEndian.append(p.occurrence, to: &body)
                    LittleEndian.append(p.offset, to: &body)
                    try add(name, .published, body)
                }
                if let plan = row.plan {
                    try add(name, .planned, Self.encode(plan))
                } else if let id = row.cancelling {
                    var body: [UInt8] = []
                    LittleEndian.append(id, to: &body)
                    try add(name, .unplanned, body)
                }
            }
            if !builder.isEmpty { _ = try log.append(try builder.build()) }
            try log.flush()
            try log.close()
        }
        // The old log's plans of deleted schedules were cancelled already (`takeOrphans`
        // ran at opening, deletions cancel first): nothing of it is needed any more.
        // On a failed swap, whichever whole table is there serves on (the same rows either way).
        try TableSwap.replace(&log, directory: directory) {
            try RecordLog.open(directory: directory, configuration: configuration, calls: calls, logger: logger)
        }
        logger.debug("schedule table compacted", metadata: ["records": "\(records)", "now": "\(written)"])
        records = written
    }

    private static func encode(_ plan: Plan) -> [UInt8] {
        var body: [UInt8] = []
        body.reserveCapacity(32)
        for v in [plan.occurrence, plan.fireAt, plan.timerID, plan.revision] { LittleEndian.append(v, to: &body) }
        return body
    }

    func close() throws { try log.close() }
    var bytes: Int64 { log.totalBytes }
}
