import ChimeStore
import Logging

/// Where a flow lives: the partition of the job that spawned it, and the ready-log offset
/// that job was first stored at (one flow per job). Printed `<topic id>-<partition>-f<id>`.
public struct FlowRef: Hashable, Sendable, CustomStringConvertible, LosslessStringConvertible {
    public var topicID: UInt32
    public var partition: Int
    public var id: Int64

    public init(topicID: UInt32, partition: Int, id: Int64) {
        self.topicID = topicID
        self.partition = partition
        self.id = id
    }

    public var description: String { "\(topicID)-\(partition)-f\(id)" }

    public init?(_ text: String) {
        let parts = text.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 3, let topic = UInt32(parts[0]), let partition = Int(parts[1]), partition >= 0, parts[2].first == "f",
            let id = Int64(parts[2].dropFirst()), id >= 0
        else { return nil }
        self.init(topicID: topic, partition: partition, id: id)
    }
}

/// A child's place in its flow, as its `chime-flow` header carries it (24 bytes, little
/// endian): the flow, the group whose outcome counts, and the child's index.
struct FlowMembership: Equatable, Sendable {
    var flow: FlowRef
    var groupID: UInt32
    var index: UInt32

    var bytes: [UInt8] {
        var b: [UInt8] = []
        b.reserveCapacity(24)
        LittleEndian.append(flow.topicID, to: &b)
        LittleEndian.append(UInt32(flow.partition), to: &b)
        LittleEndian.append(flow.id, to: &b)
        LittleEndian.append(groupID, to: &b)
        LittleEndian.append(index, to: &b)
        return b
    }

    init(flow: FlowRef, groupID: UInt32, index: UInt32) {
        self.flow = flow
        self.groupID = groupID
        self.index = index
    }

    init?(_ b: [UInt8]) {
        guard b.count == 24 else { return nil }
        let (topic, partition, id, group, index) = b.withUnsafeBytes {
            (
                LittleEndian.load(UInt32.self, $0, 0), LittleEndian.load(UInt32.self, $0, 4), LittleEndian.load(Int64.self, $0, 8),
                LittleEndian.load(UInt32.self, $0, 16), LittleEndian.load(UInt32.self, $0, 20)
            )
        }
        guard id >= 0 else { return nil }
        self.init(flow: FlowRef(topicID: topic, partition: Int(partition), id: id), groupID: group, index: index)
    }

    /// The membership a record's headers carry, if any.
    static func of(_ headers: [RecordHeader]) -> FlowMembership? {
        headers.first { $0.name == ReservedHeader.flow }.flatMap { FlowMembership($0.value) }
    }
}

/// When a flow's continuation goes.
public enum FlowPolicy: UInt8, Sendable, Equatable {
    /// Once every child has ended (the default).
    case waitForAll = 0
    /// At the first child that fails, or once every child has succeeded.
    case failFast = 1
}

/// A message as the table keeps it (the continuation, a child before it is published).
struct FlowMessage: Equatable, Sendable {
    var key: [UInt8]?
    var headers: [RecordHeader]
    var body: [UInt8]
}

/// How a flow stands (`Broker.flowStatus`).
public struct FlowStatus: Sendable, Equatable {
    public var ref: FlowRef
    public var children: Int
    public var succeeded: Int
    public var failed: Int
    public var pending: Int { children - succeeded - failed }
    public var policy: FlowPolicy
    /// Its continuation was published (its id), or the flow was aborted.
    public var continuation: MessageID?
    public var aborted: Bool
}

/// One child's final outcome.
public struct FlowOutcome: Sendable, Equatable {
    public var index: Int
    public var succeeded: Bool
    /// The child's result (an ack's, at most `FlowTable.maxResultBytes`) or its error.
    public var detail: [UInt8]

    public init(index: Int, succeeded: Bool, detail: [UInt8]) {
        self.index = index
        self.succeeded = succeeded
        self.detail = detail
    }
}

/// A partition's flows: an append-only record log (`flows/`) read whole when the partition
/// opens. Each record's key is the flow's id (8 bytes) and its `op` header one byte
/// (docs/formats.md, "Flows"):
///
/// - 1 open: the flow (policy, group, child count, child topic, continuation) — with every
///   child (op 6, in the same batch: all of them, or none);
/// - 2 spawned: the children were published (their ids);
/// - 3 outcome: one child's end (index, succeeded, result or error);
/// - 4 closed: the continuation was published (its id);
/// - 5 aborted.
///
/// In memory per open flow: counts and one bit per child. Owned by its partition's actor.
final class FlowTable {
    enum Op: UInt8 {
        case open = 1, spawned = 2, outcome = 3, closed = 4, aborted = 5, child = 6
    }

    /// The largest result a child's ack may give.
    static let maxResultBytes = 1 << 10
    /// Children in one spawn.
    static let maxChildren = 100_000
    /// Bytes of one spawn (children and continuation), so it fits one record batch.
    static let maxSpawnBytes = 8 << 20

    final class Flow {
        let policy: FlowPolicy
        let groupID: UInt32
        let count: Int
        let childTopic: String
        let continuationTopic: String
        fileprivate(set) var continuation: FlowMessage?
        /// Offset of its open record: outcome records come after it.
        fileprivate(set) var openOffset: Int64
        /// When it was closed or aborted (broker time, ms): kept `retention` after that.
        fileprivate(set) var finishedAt: Int64?
        fileprivate(set) var ended: [UInt64]
        fileprivate(set) var succeeded = 0
        fileprivate(set) var failed = 0
        fileprivate(set) var spawned = false
        fileprivate(set) var closed: MessageID?
        fileprivate(set) var aborted = false
        /// Children kept until they are published (only between open and spawned).
        fileprivate(set) var unpublished: [FlowMessage] = []

        init(policy: FlowPolicy, groupID: UInt32, count: Int, childTopic: String, continuationTopic: String, continuation: FlowMessage, openOffset: Int64) {
            self.policy = policy
            self.groupID = groupID
            self.count = count
            self.childTopic = childTopic
            self.continuationTopic = continuationTopic
            self.continuation = continuation
            self.openOffset = openOffset
            ended = [UInt64](repeating: 0, count: (count + 63) / 64)
        }

        func hasEnded(_ index: Int) -> Bool { ended[index / 64] & (1 << UInt64(index % 64)) != 0 }

        /// Whether its continuation is due: every child ended, or (fail fast) one failed.
        var isComplete: Bool { succeeded + failed == count || (policy == .failFast && failed > 0) }
        var isFinished: Bool { closed != nil || aborted }
    }

    static let opHeader = "op"
    /// How long a finished flow is kept (its continuation reads its outcomes, a spawn
    /// again from its job finds it): then a compaction drops it.
    static let retentionMilliseconds: Int64 = 7 * 86_400_000
    private var log: RecordLog
    private let directory: String
    private let configuration: LogConfiguration
    private let calls: FileSystemCalls
    private let logger: Logger
    /// Records in the log, and after the last compaction (it runs when they have grown fourfold).
    private(set) var records = 0
    private var recordsAfterCompaction = 0
    private let clock: () -> Int64
    private(set) var flows: [Int64: Flow] = [:]

    init(directory: String, configuration: LogConfiguration, calls: FileSystemCalls, clock: @escaping () -> Int64, logger: Logger) throws {
        try TableSwap.finish(directory)
        log = try RecordLog.open(directory: directory, configuration: configuration, calls: calls, logger: logger)
        self.directory = directory
        self.configuration = configuration
        self.calls = calls
        self.logger = logger
        self.clock = clock
        defer { recordsAfterCompaction = records }
        try log.scan(from: log.startOffset, damaged: { error in
            logger.error("damaged batch in the flow table; the flows it held are lost", metadata: ["error": "\(error)"])
        }) { batches, from in
            for b in batches where b.nextOffset > from {
                for r in try b.records() where r.offset >= from {
                    guard let key = r.record.key, key.count == 8, let opByte = r.record.headers.first(where: { $0.name == Self.opHeader })?.value.first,
                        let op = Op(rawValue: opByte)
                    else {
                        logger.error("unreadable record in the flow table, skipped", metadata: ["offset": "\(r.offset)"])
                        continue
                    }
                    let id = key.withUnsafeBytes { LittleEndian.load(Int64.self, $0, 0) }
                    var reader = ByteReader(r.record.body)
                    records += 1
                    do {
                        try apply(op, id: id, offset: r.offset, &reader)
                        if op == .closed || op == .aborted { flows[id]?.finishedAt = r.record.timestamp }
                    } catch {
                        logger.error("unreadable flow record, skipped", metadata: ["offset": "\(r.offset)", "error": "\(error)"])
                    }
                }
            }
        }
    }

    private func apply(_ op: Op, id: Int64, offset: Int64, _ r: inout ByteReader) throws {
        switch op {
        case .open:
            let policy = FlowPolicy(rawValue: try r.u8()) ?? .waitForAll
            let group = try r.u32()
            let count = Int(try r.u32())
            let childTopic = try r.string()
            let topic = try r.string()
            let continuation = try Self.readMessage(&r)
            flows[id] = Flow(policy: policy, groupID: group, count: count, childTopic: childTopic, continuationTopic: topic, continuation: continuation, openOffset: offset)
        case .child:
            guard let f = flows[id], !f.spawned else { return }
            f.unpublished.append(try Self.readMessage(&r))
        case .spawned:
            flows[id]?.spawned = true
            flows[id]?.unpublished = []
        case .outcome:
            guard let f = flows[id] else { return }
            let index = Int(try r.u32())
            let ok = try r.u8() == 1
            mark(f, index, ok)
        case .closed:
            guard let f = flows[id] else { return }
            f.closed = MessageID(topicID: try r.u32(), partition: Int(try r.u32()), kind: .ready, value: try r.i64())
            f.continuation = nil
        case .aborted:
            flows[id]?.aborted = true
            flows[id]?.continuation = nil
        }
    }

    private func mark(_ f: Flow, _ index: Int, _ ok: Bool) {
        guard index >= 0, index < f.count, !f.hasEnded(index) else { return }
        f.ended[index / 64] |= 1 << UInt64(index % 64)
        if ok { f.succeeded += 1 } else { f.failed += 1 }
    }

    // MARK: - Writes (durable on return, as the log's policy says)

    /// Opens flow `id` with its children, in one batch. Returns false when it exists.
    func open(
        _ id: Int64, policy: FlowPolicy, groupID: UInt32, childTopic: String, children: [FlowMessage], continuationTopic: String,
        continuation: FlowMessage
    ) throws -> Bool {
        guard flows[id] == nil else { return false }
        var head: [UInt8] = []
        head.append(policy.rawValue)
        LittleEndian.append(groupID, to: &head)
        LittleEndian.append(UInt32(children.count), to: &head)
        Self.write(childTopic, to: &head)
        Self.write(continuationTopic, to: &head)
        Self.write(continuation, to: &head)
        var records: [(Op, [UInt8])] = [(.open, head)]
        for c in children {
            var b: [UInt8] = []
            Self.write(c, to: &b)
            records.append((.child, b))
        }
        let offset = try append(id, records)
        let flow = Flow(
            policy: policy, groupID: groupID, count: children.count, childTopic: childTopic, continuationTopic: continuationTopic,
            continuation: continuation, openOffset: offset)
        flow.unpublished = children
        flows[id] = flow
        return true
    }

    /// The children were published, as `children` (in index order).
    func spawned(_ id: Int64, children: [MessageID]) throws {
        guard let f = flows[id], !f.spawned else { return }
        var b: [UInt8] = []
        b.reserveCapacity(children.count * 16)
        for c in children {
            LittleEndian.append(c.topicID, to: &b)
            LittleEndian.append(UInt32(c.partition), to: &b)
            LittleEndian.append(c.value, to: &b)
        }
        _ = try append(id, [(.spawned, b)])
        f.spawned = true
        f.unpublished = []
    }

    /// The ids of the children of flow `id` that have not ended (read from its spawned record).
    func pendingChildren(_ id: Int64) throws -> [MessageID] {
        guard let f = flows[id], f.spawned else { return [] }
        var key: [UInt8] = []
        LittleEndian.append(id, to: &key)
        var ids: [MessageID] = []
        var found = false
        try log.scan(from: Swift.max(f.openOffset, log.startOffset), chunkBytes: 1 << 20, while: { !found }) { batches, from in
            for b in batches where !found {
                for r in try b.records() where r.offset >= from && !found {
                    guard r.record.key == key, r.record.headers.first(where: { $0.name == Self.opHeader })?.value.first == Op.spawned.rawValue else { continue }
                    found = true
                    var reader = ByteReader(r.record.body)
                    var index = 0
                    while let topic = try? reader.u32() {
                        let partition = Int(try reader.u32())
                        let offset = try reader.i64()
                        if index < f.count, !f.hasEnded(index) { ids.append(MessageID(topicID: topic, partition: partition, kind: .ready, value: offset)) }
                        index += 1
                    }
                }
            }
        }
        return ids
    }

    /// Records children's ends in one append; returns the flows they changed. An end of a
    /// child that had ended already (or of an unknown or finished flow) is left out.
    func outcomes(_ ends: [(id: Int64, index: Int, succeeded: Bool, detail: [UInt8])]) throws -> Set<Int64> {
        var records: [(Int64, Op, [UInt8])] = []
        var marked = Set<Int64>()
        var seen = Set<[Int64]>()
        for e in ends {
            guard let f = flows[e.id], !f.isFinished, e.index >= 0, e.index < f.count, !f.hasEnded(e.index), seen.insert([e.id, Int64(e.index)]).inserted
            else { continue }
            var b: [UInt8] = []
            LittleEndian.append(UInt32(e.index), to: &b)
            b.append(e.succeeded ? 1 : 0)
            b += e.detail.prefix(Self.maxResultBytes)
            records.append((e.id, .outcome, b))
        }
        guard !records.isEmpty else { return [] }
        _ = try append(records)
        for e in ends where seen.contains([e.id, Int64(e.index)]) {
            guard let f = flows[e.id], !f.hasEnded(e.index) else { continue }
            mark(f, e.index, e.succeeded)
            marked.insert(e.id)
        }
        return marked
    }

    func closed(_ id: Int64, continuation: MessageID) throws {
        guard let f = flows[id], f.closed == nil else { return }
        var b: [UInt8] = []
        LittleEndian.append(continuation.topicID, to: &b)
        LittleEndian.append(UInt32(continuation.partition), to: &b)
        LittleEndian.append(continuation.value, to: &b)
        _ = try append(id, [(.closed, b)])
        f.closed = continuation
        f.continuation = nil
        f.finishedAt = clock()
    }

    func aborted(_ id: Int64) throws {
        guard let f = flows[id], !f.isFinished else { return }
        _ = try append(id, [(.aborted, [])])
        f.aborted = true
        f.continuation = nil
        f.finishedAt = clock()
    }

    /// Appends records of flow `id` in one batch; returns the first one's offset.
    private func append(_ id: Int64, _ records: [(Op, [UInt8])]) throws -> Int64 {
        try append(records.map { (id, $0.0, $0.1) })
    }

    /// Appends records (of any flows) in one batch; returns the first one's offset.
    private func append(_ records: [(id: Int64, op: Op, body: [UInt8])]) throws -> Int64 {
        var builder = RecordBatchBuilder(capacity: records.reduce(64) { $0 + $1.body.count + 40 })
        let now = clock()
        for (id, op, body) in records {
            var key: [UInt8] = []
            LittleEndian.append(id, to: &key)
            builder.append(Record(timestamp: now, key: key, headers: [RecordHeader(name: Self.opHeader, value: [op.rawValue])], body: body))
        }
        let first = log.endOffset
        _ = try log.append(try builder.build())
        if log.configuration.durability != .never { try log.flush() }
        self.records += records.count
        return first
    }

    // MARK: - Compaction

    /// Whether the log has grown fourfold since it was last written whole (and holds
    /// 10,000 records at least): an outcome record is added per child.
    var worthCompacting: Bool { records > max(10_000, 4 * recordsAfterCompaction) }

    /// Drops flows finished more than `retentionMilliseconds` ago and rewrites the log with
    /// the records of the others, in their order, into `flows.new/`, synced, swapped in by
    /// two renames (`TableSwap`: a crash leaves one whole table).
    func compact() throws {
        let now = clock()
        for (id, f) in flows where f.finishedAt.map({ now - $0 > Self.retentionMilliseconds }) == true { flows[id] = nil }
        let fresh = directory + ".new"
        if Directory.isDirectory(fresh) { try Directory.removeTree(fresh) }
        var written = 0
        var opens: [Int64: Int64] = [:]
        do {
            let out = try RecordLog.open(directory: fresh, configuration: configuration, calls: calls, logger: logger)
            var builder = RecordBatchBuilder(capacity: 1 << 20)
            func flush() throws {
                guard !builder.isEmpty else { return }
                _ = try out.append(try builder.build())
                builder.reset()
            }
            try log.scan(from: log.startOffset) { batches, from in
                for b in batches where b.nextOffset > from {
                    for r in try b.records() where r.offset >= from {
                        guard let key = r.record.key, key.count == 8 else { continue }
                        let id = key.withUnsafeBytes { LittleEndian.load(Int64.self, $0, 0) }
                        guard let f = flows[id] else { continue }
                        let op = r.record.headers.first { $0.name == Self.opHeader }?.value.first
                        // Children already published are not needed again.
                        if op == Op.child.rawValue && f.spawned { continue }
                        // An open and its children stay in one batch: all of them, or none.
                        if op == Op.open.rawValue {
                            try flush()
                            opens[id] = out.endOffset
                        } else if op != Op.child.rawValue && builder.sectionSize >= 1 << 20 {
                            try flush()
                        }
                        builder.append(r.record)
                        written += 1
                    }
                }
            }
            try flush()
            try out.flush()
            try out.close()
        }
        try TableSwap.replace(&log, directory: directory) {
            try RecordLog.open(directory: directory, configuration: configuration, calls: calls, logger: logger)
        }
        for (id, offset) in opens { flows[id]?.openOffset = offset }
        logger.debug("flow table compacted", metadata: ["records": "\(records)", "now": "\(written)"])
        records = written
        recordsAfterCompaction = written
    }

    // MARK: - Reads

    /// The outcomes of flow `id` recorded from journal offset `cursor` on (at most `max`),
    /// and the offset to go on from (nil: none left).
    func outcomes(_ id: Int64, from cursor: Int64, max: Int) throws -> (outcomes: [FlowOutcome], next: Int64?) {
        guard let f = flows[id] else { return ([], nil) }
        var out: [FlowOutcome] = []
        var next: Int64? = nil
        var key: [UInt8] = []
        LittleEndian.append(id, to: &key)
        try log.scan(from: Swift.max(cursor, f.openOffset, log.startOffset), chunkBytes: 1 << 20, while: { next == nil }) { batches, from in
            for b in batches where next == nil {
                for r in try b.records() where r.offset >= from && next == nil {
                    guard r.record.key == key, r.record.headers.first(where: { $0.name == Self.opHeader })?.value.first == Op.outcome.rawValue else { continue }
                    guard out.count < max else {
                        next = r.offset
                        break
                    }
                    var reader = ByteReader(r.record.body)
                    let index = Int(try reader.u32())
                    let ok = try reader.u8() == 1
                    out.append(FlowOutcome(index: index, succeeded: ok, detail: reader.rest()))
                }
            }
        }
        return (out, next)
    }

    func close() throws { try log.close() }
    var bytes: Int64 { log.totalBytes }

    // MARK: - Coding

    static func write(_ s: String, to b: inout [UInt8]) {
        LittleEndian.append(UInt32(s.utf8.count), to: &b)
        b += s.utf8
    }

    static func write(_ m: FlowMessage, to b: inout [UInt8]) {
        if let key = m.key {
            LittleEndian.append(UInt32(key.count), to: &b)
            b += key
        } else {
            LittleEndian.append(UInt32.max, to: &b)
        }
        LittleEndian.append(UInt32(m.headers.count), to: &b)
        for h in m.headers {
            write(h.name, to: &b)
            LittleEndian.append(UInt32(h.value.count), to: &b)
            b += h.value
        }
        LittleEndian.append(UInt32(m.body.count), to: &b)
        b += m.body
    }

    static func readMessage(_ r: inout ByteReader) throws -> FlowMessage {
        let keyLength = try r.u32()
        let key = keyLength == UInt32.max ? nil : try r.bytes(Int(keyLength))
        let n = Int(try r.u32())
        var headers: [RecordHeader] = []
        for _ in 0..<n {
            let name = try r.string()
            headers.append(RecordHeader(name: name, value: try r.bytes(Int(try r.u32()))))
        }
        return FlowMessage(key: key, headers: headers, body: try r.bytes(Int(try r.u32())))
    }
}

/// Reads a flow record's little-endian fields; a short or malformed body throws.
struct ByteReader {
    struct Short: Error {}
    private let bytes: [UInt8]
    private var at = 0

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    mutating func bytes(_ n: Int) throws -> [UInt8] {
        guard n >= 0, n <= bytes.count - at else { throw Short() }
        defer { at += n }
        return Array(bytes[at..<at + n])
    }
    mutating func u8() throws -> UInt8 { try bytes(1)[0] }
    mutating func u32() throws -> UInt32 { try bytes(4).withUnsafeBytes { LittleEndian.load(UInt32.self, $0, 0) } }
    mutating func i64() throws -> Int64 { try bytes(8).withUnsafeBytes { LittleEndian.load(Int64.self, $0, 0) } }
    mutating func string() throws -> String {
        let b = try bytes(Int(try u32()))
        guard let s = String(validating: b, as: UTF8.self) else { throw Short() }
        return s
    }
    mutating func rest() -> [UInt8] {
        defer { at = bytes.count }
        return Array(bytes[at...])
    }
}
