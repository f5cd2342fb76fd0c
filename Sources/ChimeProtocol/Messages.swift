import NIOCore

// The payloads of protocol version 1, byte by byte in docs/formats.md ("Wire protocol").
// These are plain wire structs: the server maps them to the engine's types, the client to
// its own API, and neither side needs the other's module.

/// The protocol versions this build speaks.
public enum ProtocolVersion {
    /// 2 adds `publishRecords` (opcode 17); everything of 1 is unchanged.
    /// 3 writes due times as `WireDue` (a kind byte, then the time): a delay travels as a
    /// delay and the broker stamps it on receipt.
    /// 4 adds `peek` (opcode 18) and a join's `createTopics` flag (a byte at its end).
    /// 5 adds groups as objects: `createGroup`, `configureGroup`, `describeGroup` and
    /// `deleteGroup` (opcodes 19–22) with their settings (`WireGroupSettings`), and `release`
    /// (23: a settle that gives messages back without counting an attempt).
    /// 6 adds `jobStatus` (opcode 24): where a message stands, by its id.
    /// 7 adds schedules: `scheduleWrite`, `scheduleControl`, `scheduleBackfill` and
    /// `scheduleList` (opcodes 25–28), whose documents are JSON.
    /// 8 adds locks with fencing tokens: `lockAcquire`, `lockRenew`, `lockRelease` and
    /// `lockList` (opcodes 29–32).
    /// 9 adds job events: a fence (lock, token) at the end of `publish` and of a settle,
    /// `jobAbort`, `abortNotices`, `jobSnooze` and `callbackComplete` (opcodes 33–36), and
    /// flows: `flowSpawn`, `flowQuery`, `flowAbort` (37–39).
    public static let current: UInt16 = 9
    /// The first version whose publish and settle end with a fence.
    public static let fences: UInt16 = 9
    /// The first version whose due times can be relative.
    public static let relativeDueTimes: UInt16 = 3
    /// The first version whose join says whether to create the topics.
    public static let joinWithoutCreating: UInt16 = 4
    public static let oldest: UInt16 = 1
}

/// First frame of a connection: the versions the client speaks, its name, its token.
public struct Hello: WireMessage {
    public var minVersion: UInt16
    public var maxVersion: UInt16
    public var client: String
    public var token: [UInt8]?

    public init(minVersion: UInt16 = ProtocolVersion.oldest, maxVersion: UInt16 = ProtocolVersion.current, client: String, token: [UInt8]? = nil) {
        self.minVersion = minVersion
        self.maxVersion = maxVersion
        self.client = client
        self.token = token
    }
    public init(from r: inout WireReader) throws {
        minVersion = try r.u16("minVersion")
        maxVersion = try r.u16("maxVersion")
        client = try r.string("client name")
        token = try r.optionalBytes("token")
    }
    public func encode(into b: inout ByteBuffer) {
        b.writeWire(minVersion)
        b.writeWire(maxVersion)
        b.writeWire(client)
        b.writeWire(bytes: token)
    }
}

public struct HelloReply: WireMessage {
    public var version: UInt16
    public var server: String
    public init(version: UInt16, server: String) {
        self.version = version
        self.server = server
    }
    public init(from r: inout WireReader) throws {
        version = try r.u16("version")
        server = try r.string("server name")
    }
    public func encode(into b: inout ByteBuffer) {
        b.writeWire(version)
        b.writeWire(server)
    }
}

/// The payload of an error response: a code (1-99 protocol errors, 100 and up the
/// engine's, see docs/formats.md) and a message for people.
public struct ErrorReply: WireMessage, Error {
    public var code: UInt16
    public var message: String
    public init(code: UInt16, message: String) {
        self.code = code
        self.message = message
    }
    public init(_ error: ProtocolError) { self.init(code: error.code.wire, message: error.message) }
    public init(from r: inout WireReader) throws {
        code = try r.u16("error code")
        message = try r.string("error message")
    }
    public func encode(into b: inout ByteBuffer) {
        b.writeWire(code)
        b.writeWire(message)
    }
}

/// A payload with no fields (several requests and replies).
public struct Empty: WireMessage {
    public init() {}
    public init(from r: inout WireReader) throws {}
    public func encode(into b: inout ByteBuffer) {}
}

// MARK: - Topics

public struct WireTopicSettings: WireMessage {
    public var partitions: UInt32
    public var retentionMilliseconds: Int64?
    public var retentionBytes: Int64?
    public var maxMessageBytes: UInt32
    public var maxAttempts: UInt16
    public var dedupWindowMilliseconds: Int64
    public init(partitions: UInt32, retentionMilliseconds: Int64?, retentionBytes: Int64?, maxMessageBytes: UInt32, maxAttempts: UInt16, dedupWindowMilliseconds: Int64) {
        self.partitions = partitions
        self.retentionMilliseconds = retentionMilliseconds
        self.retentionBytes = retentionBytes
        self.maxMessageBytes = maxMessageBytes
        self.maxAttempts = maxAttempts
        self.dedupWindowMilliseconds = dedupWindowMilliseconds
    }
    public init(from r: inout WireReader) throws {
        partitions = try r.u32("partitions")
        retentionMilliseconds = try r.optionalI64("retention ms")
        retentionBytes = try r.optionalI64("retention bytes")
        maxMessageBytes = try r.u32("max message bytes")
        maxAttempts = try r.u16("max attempts")
        dedupWindowMilliseconds = try r.i64("dedup window")
    }
    public func encode(into b: inout ByteBuffer) {
        b.writeWire(partitions)
        b.writeWire(optional: retentionMilliseconds)
        b.writeWire(optional: retentionBytes)
        b.writeWire(maxMessageBytes)
        b.writeWire(maxAttempts)
        b.writeWire(dedupWindowMilliseconds)
    }
}

/// Create a topic: its settings, or the broker's defaults (flag 0).
public struct CreateTopic: WireMessage {
    public var name: String
    public var settings: WireTopicSettings?
    public init(name: String, settings: WireTopicSettings?) {
        self.name = name
        self.settings = settings
    }
    public init(from r: inout WireReader) throws {
        name = try r.string("topic")
        settings = try r.u8("settings flag") == 1 ? try WireTopicSettings(from: &r) : nil
    }
    public func encode(into b: inout ByteBuffer) {
        b.writeWire(name)
        if let settings {
            b.writeWire(UInt8(1))
            settings.encode(into: &b)
        } else {
            b.writeWire(UInt8(0))
        }
    }
}

public struct WireTopic: WireMessage {
    public var name: String
    public var id: UInt32
    public var settings: WireTopicSettings
    public init(name: String, id: UInt32, settings: WireTopicSettings) {
        self.name = name
        self.id = id
        self.settings = settings
    }
    public init(from r: inout WireReader) throws {
        name = try r.string("topic")
        id = try r.u32("topic id")
        settings = try WireTopicSettings(from: &r)
    }
    public func encode(into b: inout ByteBuffer) {
        b.writeWire(name)
        b.writeWire(id)
        settings.encode(into: &b)
    }
}

public struct TopicList: WireMessage {
    public var topics: [WireTopic]
    public init(topics: [WireTopic]) { self.topics = topics }
    public init(from r: inout WireReader) throws {
        topics = try (0..<r.count("topics", minimumItemBytes: 40)).map { _ in try WireTopic(from: &r) }
    }
    public func encode(into b: inout ByteBuffer) {
        b.writeWire(UInt32(topics.count))
        for t in topics { t.encode(into: &b) }
    }
}

/// A topic by name (delete topic).
public struct TopicName: WireMessage {
    public var name: String
    public init(name: String) { self.name = name }
    public init(from r: inout WireReader) throws { name = try r.string("topic") }
    public func encode(into b: inout ByteBuffer) { b.writeWire(name) }
}

// MARK: - Publish

public struct WireMessageID: WireMessage, Hashable {
    /// As the CLI prints and takes it: `<topic id>-<partition>-r<offset>` for a message
    /// stored ready, `…-s<position>` for one scheduled.
    public var text: String { "\(topicID)-\(partition)-\(kind == 1 ? "s" : "r")\(value)" }
    public var topicID: UInt32
    public var partition: UInt32
    /// 0 ready-log offset, 1 scheduled (timer-log position).
    public var kind: UInt8
    public var value: Int64
    public init(topicID: UInt32, partition: UInt32, kind: UInt8, value: Int64) {
        self.topicID = topicID
        self.partition = partition
        self.kind = kind
        self.value = value
    }
    public init(from r: inout WireReader) throws {
        topicID = try r.u32("topic id")
        partition = try r.u32("partition")
        kind = try r.u8("id kind")
        value = try r.i64("id value")
        guard kind <= 1 else { throw ProtocolError(.malformed, "unknown id kind \(kind)") }
    }
    public func encode(into b: inout ByteBuffer) {
        b.writeWire(topicID)
        b.writeWire(partition)
        b.writeWire(kind)
        b.writeWire(value)
    }
}

public struct WireHeader: Sendable, Equatable {
    public var name: String
    public var value: [UInt8]
    public init(name: String, value: [UInt8]) {
        self.name = name
        self.value = value
    }
}

func readHeaders(_ r: inout WireReader) throws -> [WireHeader] {
    let n = Int(try r.u16("header count"))
    var out: [WireHeader] = []
    out.reserveCapacity(min(n, 64))
    for _ in 0..<n { out.append(WireHeader(name: try r.string("header name"), value: try r.bytes("header value"))) }
    return out
}

func writeHeaders(_ headers: [WireHeader], _ b: inout ByteBuffer) {
    b.writeWire(UInt16(headers.count))
    for h in headers {
        b.writeWire(h.name)
        b.writeWire(bytes: h.value)
    }
}

/// When a message is due, as a client names it.
public enum WireDue: Sendable, Equatable {
    /// At this wall-clock time, ms since the Unix epoch (converted to broker time when the
    /// broker receives it, by its own wall clock).
    case at(Int64)
    /// This many ms after the broker receives it (version 3 on; an older broker is sent
    /// `at` the client's clock plus the delay).
    case after(Int64)

    /// Version 3: u8 kind (0 none, 1 at, 2 after), then an i64 unless none. Versions 1 and
    /// 2: an i64 time, −1 for none.
    static func read(_ r: inout WireReader, _ what: String) throws -> WireDue? {
        guard r.version >= ProtocolVersion.relativeDueTimes else { return try r.optionalI64(what).map(WireDue.at) }
        switch try r.u8("\(what) kind") {
        case 0: return nil
        case 1: return .at(try r.i64(what))
        case 2: return .after(try r.i64(what))
        case let kind: throw ProtocolError(.malformed, "unknown \(what) kind \(kind)")
        }
    }

    static func write(_ due: WireDue?, version: UInt16, into b: inout ByteBuffer) {
        guard version >= ProtocolVersion.relativeDueTimes else {
            switch due {
            case nil: b.writeWire(optional: nil)
            case .at(let t): b.writeWire(t)
            case .after: preconditionFailure("a delay is sent to a version \(version) broker as a time (ChimeClient resolves it)")
            }
            return
        }
        switch due {
        case nil: b.writeWire(UInt8(0))
        case .at(let t):
            b.writeWire(UInt8(1))
            b.writeWire(t)
        case .after(let ms):
            b.writeWire(UInt8(2))
            b.writeWire(ms)
        }
    }
}

/// One message of a publish.
public struct OutgoingRecord: WireMessage {
    public var due: WireDue?
    public var dedupKey: [UInt8]?
    public var key: [UInt8]?
    public var headers: [WireHeader]
    public var body: [UInt8]
    public init(due: WireDue? = nil, dedupKey: [UInt8]? = nil, key: [UInt8]? = nil, headers: [WireHeader] = [], body: [UInt8]) {
        self.due = due
        self.dedupKey = dedupKey
        self.key = key
        self.headers = headers
        self.body = body
    }
    /// Bytes of the smallest encoded record in any version (for count checks).
    static let minimumSize = 1 + 4 + 4 + 2 + 4
    public init(from r: inout WireReader) throws {
        due = try WireDue.read(&r, "due time")
        dedupKey = try r.optionalBytes("dedup key")
        key = try r.optionalBytes("key")
        headers = try readHeaders(&r)
        body = try r.bytes("body")
    }
    public func encode(into b: inout ByteBuffer) { encode(into: &b, version: ProtocolVersion.current) }
    /// As `version` lays a record out.
    public func encode(into b: inout ByteBuffer, version: UInt16) {
        WireDue.write(due, version: version, into: &b)
        b.writeWire(bytes: dedupKey)
        b.writeWire(bytes: key)
        writeHeaders(headers, &b)
        b.writeWire(bytes: body)
    }
}

/// Publish a batch to a topic: to `partition`, or (-1) by key as the broker routes.
/// `producerID` -1: not idempotent.
public struct Publish: WireMessage {
    /// Most records one publish may carry.
    public static let maxRecords = 100_000
    public var topic: String
    public var partition: Int32
    public var producerID: Int64
    public var sequence: Int32
    public var records: [OutgoingRecord]
    /// Version 9: written only while `fence` names the live grant of its lock.
    public var fence: WireFence?
    /// The protocol version `encode` writes for (the records' due times change in 3).
    public var version: UInt16
    public init(
        topic: String, partition: Int32 = -1, producerID: Int64 = -1, sequence: Int32 = -1, records: [OutgoingRecord],
        fence: WireFence? = nil, version: UInt16 = ProtocolVersion.current
    ) {
        self.topic = topic
        self.partition = partition
        self.producerID = producerID
        self.sequence = sequence
        self.records = records
        self.fence = fence
        self.version = version
    }
    public init(from r: inout WireReader) throws {
        topic = try r.string("topic")
        partition = try r.i32("partition")
        producerID = try r.i64("producer id")
        sequence = try r.i32("sequence")
        let n = try r.count("records", minimumItemBytes: OutgoingRecord.minimumSize, limit: Self.maxRecords)
        records = []
        records.reserveCapacity(n)
        for _ in 0..<n { records.append(try OutgoingRecord(from: &r)) }
        fence = r.version >= ProtocolVersion.fences ? try WireFence.read(&r) : nil
        version = r.version
    }
    public func encode(into b: inout ByteBuffer) {
        b.writeWire(topic)
        b.writeWire(partition)
        b.writeWire(producerID)
        b.writeWire(sequence)
        b.writeWire(UInt32(records.count))
        for rec in records { rec.encode(into: &b, version: version) }
        if version >= ProtocolVersion.fences { WireFence.write(fence, into: &b) }
    }
}

/// Opcode 17 (version 2): immediate records for one partition, already encoded as one
/// record batch in the store's format (docs/formats.md, "Record batch"), so the broker
/// checks and appends the bytes as they came instead of decoding and encoding each record.
/// The batch's producer id and base sequence are the publish's idempotence stamp (−1: none).
/// Records carry no due time and no dedup key: those go through `publish`.
public struct PublishRecords: WireMessage {
    public var topic: String
    public var partition: UInt32
    public var batch: [UInt8]
    public init(topic: String, partition: UInt32, batch: [UInt8]) {
        self.topic = topic
        self.partition = partition
        self.batch = batch
    }
    public init(from r: inout WireReader) throws {
        topic = try r.string("topic")
        partition = try r.u32("partition")
        batch = try r.bytes("record batch")
    }
    public func encode(into b: inout ByteBuffer) {
        b.writeWire(topic)
        b.writeWire(partition)
        b.writeWire(bytes: batch)
    }
}

public struct PublishReply: WireMessage {
    public struct Outcome: Sendable, Equatable {
        public var id: WireMessageID?
        public var partition: UInt32
        public var duplicate: Bool
        public init(id: WireMessageID?, partition: UInt32, duplicate: Bool) {
            self.id = id
            self.partition = partition
            self.duplicate = duplicate
        }
    }
    public var outcomes: [Outcome]
    public init(outcomes: [Outcome]) { self.outcomes = outcomes }
    public init(from r: inout WireReader) throws {
        let n = try r.count("outcomes", minimumItemBytes: 5)
        outcomes = try (0..<n).map { _ in
            let flags = try r.u8("outcome flags")
            let partition = try r.u32("partition")
            let id = flags & 1 != 0 ? try WireMessageID(from: &r) : nil
            return Outcome(id: id, partition: partition, duplicate: flags & 2 != 0)
        }
    }
    public func encode(into b: inout ByteBuffer) {
        b.writeWire(UInt32(outcomes.count))
        for o in outcomes {
            b.writeWire(UInt8((o.id == nil ? 0 : 1) | (o.duplicate ? 2 : 0)))
            b.writeWire(o.partition)
            o.id?.encode(into: &b)
        }
    }
}

/// Cancel (no due time) or reschedule (`due`) a scheduled message.
public struct ScheduleChange: WireMessage {
    public var id: WireMessageID
    public var due: WireDue?
    /// The protocol version `encode` writes for.
    public var version: UInt16
    public init(id: WireMessageID, due: WireDue? = nil, version: UInt16 = ProtocolVersion.current) {
        self.id = id
        self.due = due
        self.version = version
    }
    public init(from r: inout WireReader) throws {
        id = try WireMessageID(from: &r)
        due = try WireDue.read(&r, "due time")
        version = r.version
    }
    public func encode(into b: inout ByteBuffer) {
        id.encode(into: &b)
        WireDue.write(due, version: version, into: &b)
    }
}

// MARK: - Groups

public struct Join: WireMessage {
    public var group: String
    public var member: String
    public var topics: [String]
    /// Whether joining creates the topics that do not exist (version 4 on; before, it always
    /// did). Without it an unknown topic is refused (100), and the client waits for it.
    public var createTopics: Bool
    /// The protocol version `encode` writes for.
    public var version: UInt16
    public init(group: String, member: String, topics: [String], createTopics: Bool = true, version: UInt16 = ProtocolVersion.current) {
        self.group = group
        self.member = member
        self.topics = topics
        self.createTopics = createTopics
        self.version = version
    }
    public init(from r: inout WireReader) throws {
        group = try r.string("group")
        member = try r.string("member")
        topics = try (0..<r.count("topics", minimumItemBytes: 2, limit: 1_000)).map { _ in try r.string("topic") }
        version = r.version
        if r.version >= ProtocolVersion.joinWithoutCreating {
            let flag = try r.u8("create topics")
            guard flag <= 1 else { throw ProtocolError(.malformed, "create topics is 0 or 1, not \(flag)") }
            createTopics = flag == 1
        } else {
            createTopics = true
        }
    }
    public func encode(into b: inout ByteBuffer) {
        b.writeWire(group)
        b.writeWire(member)
        b.writeWire(UInt32(topics.count))
        for t in topics { b.writeWire(t) }
        if version >= ProtocolVersion.joinWithoutCreating { b.writeWire(UInt8(createTopics ? 1 : 0)) }
    }
}

/// A member of a group (heartbeat, leave).
public struct MemberRef: WireMessage {
    public var group: String
    public var memberID: UInt64
    public init(group: String, memberID: UInt64) {
        self.group = group
        self.memberID = memberID
    }
    public init(from r: inout WireReader) throws {
        group = try r.string("group")
        memberID = try r.u64("member id")
    }
    public func encode(into b: inout ByteBuffer) {
        b.writeWire(group)
        b.writeWire(memberID)
    }
}

public struct WireMembership: WireMessage {
    public var memberID: UInt64
    public var generation: Int64
    public var assignment: [(topic: String, partition: UInt32)]
    public init(memberID: UInt64, generation: Int64, assignment: [(topic: String, partition: UInt32)]) {
        self.memberID = memberID
        self.generation = generation
        self.assignment = assignment
    }
    public static func == (a: Self, b: Self) -> Bool {
        a.memberID == b.memberID && a.generation == b.generation && a.assignment.map(\.topic) == b.assignment.map(\.topic)
            && a.assignment.map(\.partition) == b.assignment.map(\.partition)
    }
    public init(from r: inout WireReader) throws {
        memberID = try r.u64("member id")
        generation = try r.i64("generation")
        assignment = try (0..<r.count("partitions", minimumItemBytes: 6)).map { _ in (try r.string("topic"), try r.u32("partition")) }
    }
    public func encode(into b: inout ByteBuffer) {
        b.writeWire(memberID)
        b.writeWire(generation)
        b.writeWire(UInt32(assignment.count))
        for a in assignment {
            b.writeWire(a.topic)
            b.writeWire(a.partition)
        }
    }
}

public struct Fetch: WireMessage {
    public var group: String
    public var memberID: UInt64
    public var max: UInt32
    /// How long the server may hold the request while nothing is deliverable (ms).
    public var waitMilliseconds: UInt32
    public init(group: String, memberID: UInt64, max: UInt32, waitMilliseconds: UInt32 = 0) {
        self.group = group
        self.memberID = memberID
        self.max = max
        self.waitMilliseconds = waitMilliseconds
    }
    public init(from r: inout WireReader) throws {
        group = try r.string("group")
        memberID = try r.u64("member id")
        max = try r.u32("max")
        waitMilliseconds = try r.u32("wait ms")
    }
    public func encode(into b: inout ByteBuffer) {
        b.writeWire(group)
        b.writeWire(memberID)
        b.writeWire(max)
        b.writeWire(waitMilliseconds)
    }
}

/// Opcode 18 (version 4): messages of a partition's ready log read without leasing them,
/// from `fromOffset` on, or (`fromOffset` -1) from the start of the log — with a `group`,
/// from that group's position, skipping what it acked. At most `max`. Answered with
/// `Deliveries` whose receipts carry lease 0 (no settle accepts them) and attempt 0.
public struct Peek: WireMessage {
    public var topic: String
    public var partition: UInt32
    public var fromOffset: Int64
    /// Empty: no group.
    public var group: String
    public var max: UInt32
    public init(topic: String, partition: UInt32, fromOffset: Int64 = -1, group: String = "", max: UInt32) {
        self.topic = topic
        self.partition = partition
        self.fromOffset = fromOffset
        self.group = group
        self.max = max
    }
    public init(from r: inout WireReader) throws {
        topic = try r.string("topic")
        partition = try r.u32("partition")
        fromOffset = try r.i64("from offset")
        group = try r.string("group")
        max = try r.u32("max")
    }
    public func encode(into b: inout ByteBuffer) {
        b.writeWire(topic)
        b.writeWire(partition)
        b.writeWire(fromOffset)
        b.writeWire(group)
        b.writeWire(max)
    }
}

public struct WireReceipt: WireMessage, Hashable {
    public var topicID: UInt32
    public var partition: UInt32
    public var source: UInt8
    public var offset: Int64
    public var lease: UInt32
    public static let size = 21
    public init(topicID: UInt32, partition: UInt32, source: UInt8, offset: Int64, lease: UInt32) {
        self.topicID = topicID
        self.partition = partition
        self.source = source
        self.offset = offset
        self.lease = lease
    }
    public init(from r: inout WireReader) throws {
        topicID = try r.u32("topic id")
        partition = try r.u32("partition")
        source = try r.u8("source")
        offset = try r.i64("offset")
        lease = try r.u32("lease")
        guard source <= 1 else { throw ProtocolError(.malformed, "unknown delivery source \(source)") }
    }
    public func encode(into b: inout ByteBuffer) {
        b.writeWire(topicID)
        b.writeWire(partition)
        b.writeWire(source)
        b.writeWire(offset)
        b.writeWire(lease)
    }
}

public struct WireDelivery: WireMessage {
    public var topic: String
    public var partition: UInt32
    public var offset: Int64
    public var id: WireMessageID
    public var key: [UInt8]?
    public var headers: [WireHeader]
    public var body: [UInt8]
    public var publishedAt: Int64
    public var dueAt: Int64
    public var deliveredAt: Int64
    public var attempt: UInt32
    public var lastError: String?
    public var receipt: WireReceipt
    public var leaseDeadline: Int64
    public init(
        topic: String, partition: UInt32, offset: Int64, id: WireMessageID, key: [UInt8]?, headers: [WireHeader], body: [UInt8],
        publishedAt: Int64, dueAt: Int64, deliveredAt: Int64, attempt: UInt32, lastError: String?, receipt: WireReceipt, leaseDeadline: Int64
    ) {
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.id = id
        self.key = key
        self.headers = headers
        self.body = body
        self.publishedAt = publishedAt
        self.dueAt = dueAt
        self.deliveredAt = deliveredAt
        self.attempt = attempt
        self.lastError = lastError
        self.receipt = receipt
        self.leaseDeadline = leaseDeadline
    }
    public init(from r: inout WireReader) throws {
        var noTopic: String? = nil
        self = try r.withRawReader { try WireDelivery(raw: &$0, previousTopic: &noTopic) }
    }

    /// About the bytes `encode` writes: to size an answer once.
    public var estimatedSize: Int { rawSize ?? 64 }

    public func encode(into b: inout ByteBuffer) {
        guard let size = rawSize else { return encodeFieldByField(into: &b) }
        b.writeRaw(size: size) { encodeRaw(into: &$0) }
    }

    /// The layout field by field (docs/formats.md); `encode` writes the same bytes through
    /// one raw view when no string is too long for it.
    func encodeFieldByField(into b: inout ByteBuffer) {
        b.writeWire(topic)
        b.writeWire(partition)
        b.writeWire(offset)
        id.encode(into: &b)
        b.writeWire(bytes: key)
        writeHeaders(headers, &b)
        b.writeWire(bytes: body)
        b.writeWire(publishedAt)
        b.writeWire(dueAt)
        b.writeWire(deliveredAt)
        b.writeWire(attempt)
        if let lastError {
            b.writeWire(UInt8(1))
            b.writeWire(lastError)
        } else {
            b.writeWire(UInt8(0))
        }
        receipt.encode(into: &b)
        b.writeWire(leaseDeadline)
    }
}

public struct Deliveries: WireMessage {
    public var deliveries: [WireDelivery]
    public init(deliveries: [WireDelivery]) { self.deliveries = deliveries }
    public init(from r: inout WireReader) throws {
        let n = try r.count("deliveries", minimumItemBytes: 80)
        var deliveries: [WireDelivery] = []
        deliveries.reserveCapacity(n)
        // One raw view for the whole answer; a fetch answer is mostly one topic, whose
        // String is then made once.
        var topic: String? = nil
        try r.withRawReader { raw in
            for _ in 0..<n { deliveries.append(try WireDelivery(raw: &raw, previousTopic: &topic)) }
        }
        self.deliveries = deliveries
    }
    public var estimatedSize: Int { deliveries.reduce(4) { $0 + $1.estimatedSize } }

    /// The payload `Deliveries(deliveries: items.map(make))` encodes to, made without the
    /// array: each delivery is encoded as soon as it is made.
    public static func payload<C: Collection>(
        _ items: C, allocator: ByteBufferAllocator, estimatedSize: Int, _ make: (C.Element) -> WireDelivery
    ) -> ByteBuffer {
        var b = allocator.buffer(capacity: estimatedSize)
        b.writeWire(UInt32(items.count))
        for item in items { make(item).encode(into: &b) }
        return b
    }
    public func encode(into b: inout ByteBuffer) {
        b.writeWire(UInt32(deliveries.count))
        for d in deliveries { d.encode(into: &b) }
    }
}

/// Ack, nack, extend or term a batch of receipts. `milliseconds`: nack delay or extension
/// (0 otherwise); `reason`: nack or term reason.
public struct Settle: WireMessage {
    public static let maxReceipts = 100_000
    public var group: String
    public var memberID: UInt64
    public var receipts: [WireReceipt]
    public var milliseconds: Int64
    public var reason: String?
    /// Version 9: settled only while `fence` names the live grant of its lock.
    public var fence: WireFence?
    /// The protocol version `encode` writes for (9 adds the fence).
    public var version: UInt16
    public init(
        group: String, memberID: UInt64, receipts: [WireReceipt], milliseconds: Int64 = 0, reason: String? = nil, fence: WireFence? = nil,
        version: UInt16 = ProtocolVersion.current
    ) {
        self.group = group
        self.memberID = memberID
        self.receipts = receipts
        self.milliseconds = milliseconds
        self.reason = reason
        self.fence = fence
        self.version = version
    }
    public init(from r: inout WireReader) throws {
        group = try r.string("group")
        memberID = try r.u64("member id")
        let n = try r.count("receipts", minimumItemBytes: WireReceipt.size, limit: Self.maxReceipts)
        var receipts: [WireReceipt] = []
        receipts.reserveCapacity(n)
        try r.withRawReader { raw in
            for _ in 0..<n { receipts.append(try WireReceipt(raw: &raw)) }
        }
        self.receipts = receipts
        milliseconds = try r.i64("milliseconds")
        reason = try r.u8("reason flag") == 1 ? try r.string("reason") : nil
        fence = r.version >= ProtocolVersion.fences ? try WireFence.read(&r) : nil
        version = r.version
    }
    public var estimatedSize: Int { 32 + group.utf8.count + receipts.count * WireReceipt.size + (reason?.utf8.count ?? 0) }
    public func encode(into b: inout ByteBuffer) {
        b.writeWire(group)
        b.writeWire(memberID)
        b.writeWire(UInt32(receipts.count))
        b.writeRaw(size: receipts.count * WireReceipt.size) { w in
            for rc in receipts { rc.encodeRaw(into: &w) }
        }
        b.writeWire(milliseconds)
        if let reason {
            b.writeWire(UInt8(1))
            b.writeWire(reason)
        } else {
            b.writeWire(UInt8(0))
        }
        if version >= ProtocolVersion.fences { WireFence.write(fence, into: &b) }
    }
}

/// One result per receipt: nil when it was settled.
public struct SettleReply: WireMessage {
    public var results: [ErrorReply?]
    public init(results: [ErrorReply?]) { self.results = results }
    public init(from r: inout WireReader) throws {
        results = try (0..<r.count("results", minimumItemBytes: 2)).map { _ in
            let code = try r.u16("result code")
            return code == 0 ? nil : ErrorReply(code: code, message: try r.string("result message"))
        }
    }
    public func encode(into b: inout ByteBuffer) {
        b.writeWire(UInt32(results.count))
        for res in results {
            if let res {
                b.writeWire(res.code)
                b.writeWire(res.message)
            } else {
                b.writeWire(UInt16(0))
            }
        }
    }
}
