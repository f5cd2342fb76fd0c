import ChimeStore

/// Headers the broker writes into records it stores itself (fired, retried, dead-lettered
/// messages). Producers may not use the `chime-` prefix; consumers get these as fields of
/// `Delivery`, not as headers. Values are little-endian integers unless noted
/// (docs/formats.md, "Broker headers").
enum ReservedHeader {
    static let prefixString = "chime-"
    static let prefix: [UInt8] = Array(prefixString.utf8)
    /// kind u8 + value i64: the message's id at publish (kept through fires and retries).
    static let id = "chime-id"
    /// i64 publish time.
    static let publishedAt = "chime-pub"
    /// i64 due time the producer asked for (a retry's record timestamp is its retry time).
    static let dueAt = "chime-due"
    /// u32 deliveries made before this record was written (retries).
    static let attempts = "chime-attempt"
    /// UTF-8 reason of the last nack.
    static let error = "chime-error"
    /// i64 offset of the message in its partition's ready log, on a retry record: where a
    /// dead letter says it came from, however many retries it went through.
    static let readyOffset = "chime-offset"
    /// u64 fire sequence + u16 part + u16 parts: first record of a batch the wheel handed over.
    static let fire = "chime-fire"
    /// The producer's dedup key.
    static let dedup = "chime-dedup"
    /// i64 producer id + i32 first sequence + u32 count: on the last scheduled message of an
    /// idempotent publish that had nothing for the ready log.
    static let producer = "chime-producer"
    /// Dead letters (UTF-8 text): where the message was and why it was given up.
    static let dlqTopic = "chime-dlq-topic"
    static let dlqPartition = "chime-dlq-partition"
    static let dlqOffset = "chime-dlq-offset"
    static let dlqAttempts = "chime-dlq-attempts"
    static let dlqError = "chime-dlq-error"
    /// The message's id in its original topic (text form): a dead letter has an id of its
    /// own in the dead-letter topic; redrive gives the original back.
    static let dlqID = "chime-dlq-id"

    /// The job's name (`ChimeWorker`): set by producers — any producer, in any language, can
    /// enqueue a job — and read by workers. Kept with the message's headers.
    static let job = "chime-job"
    /// On a schedule's occurrence: the schedule's name.
    static let schedule = "chime-schedule"
    /// On a schedule's occurrence: its nominal time (ms since the epoch, in decimal), the
    /// one its dedup key `schedule/<name>/<ms>` names; jitter moves when it fires, not this.
    static let occurrence = "chime-occurrence"
    /// On a schedule's occurrence in the timer log: the revision of the schedule it was
    /// planned under (8 bytes), so that a restart tells a plan made before an update.
    static let scheduleRevision = "chime-schedule-rev"
    /// On a watched schedule's occurrence: u8 overlap policy (0 allow, 1 skip, 2 bufferOne)
    /// and the UTF-8 name of the group whose acks settle it.
    static let scheduleWatch = "chime-schedule-watch"

    /// On a parked job (`Broker.snooze`, `Broker.awaitCallback`): the state it asked to be
    /// delivered again with (its bytes as given). Kept, visible to consumers, until it parks again.
    static let state = "chime-state"
    /// On a job that awaited a callback: `waiting` while parked (and when delivered at its
    /// timeout), `completed` once completed (UTF-8).
    static let callback = "chime-callback"
    /// u64: the secret half of the callback's token.
    static let callbackNonce = "chime-callback-nonce"
    /// The payload its completion gave (bytes as given).
    static let callbackPayload = "chime-callback-payload"

    /// On a flow's child: its place in the flow (`FlowMembership`, 24 bytes); on a
    /// continuation of a flow that is itself a child, that place, passed on.
    static let flow = "chime-flow"
    /// On a flow's continuation: the flow (UTF-8, `<topic id>-<partition>-f<id>`).
    static let flowDone = "chime-flow-done"
    /// On a flow's continuation: children succeeded and failed, two u32.
    static let flowCounts = "chime-flow-counts"

    /// The `chime-` headers a producer may set.
    static let settableByProducers: Set<String> = [job]

    /// Whether a producer is refused this header name.
    static func isForbiddenToProducers(_ name: String) -> Bool { isReserved(name) && !settableByProducers.contains(name) }

    static func isReserved(_ name: String) -> Bool {
        var it = name.utf8.makeIterator()
        for b in prefix {
            guard it.next() == b else { return false }
        }
        return true
    }

    static func int64(_ v: Int64) -> [UInt8] { withUnsafeBytes(of: v.littleEndian) { Array($0) } }
    static func readInt64(_ bytes: [UInt8], at i: Int = 0) -> Int64? {
        guard bytes.count >= i + 8 else { return nil }
        var v: Int64 = 0
        for k in (0..<8).reversed() { v = v << 8 | Int64(bytes[i + k]) }
        return v
    }
    static func uint32(_ v: UInt32) -> [UInt8] { withUnsafeBytes(of: v.littleEndian) { Array($0) } }
    static func readUInt32(_ bytes: [UInt8], at i: Int = 0) -> UInt32? {
        guard bytes.count >= i + 4 else { return nil }
        return (0..<4).reversed().reduce(UInt32(0)) { $0 << 8 | UInt32(bytes[i + $1]) }
    }

    static func messageID(_ kind: MessageID.Kind, _ value: Int64) -> [UInt8] { [kind.rawValue] + int64(value) }

    /// `chime-id` in its long form: kind u8 + id i64 + publish time i64, built in one allocation.
    static func messageID(_ kind: MessageID.Kind, _ value: Int64, publishedAt: Int64) -> [UInt8] {
        var v: [UInt8] = []
        v.reserveCapacity(17)
        v.append(kind.rawValue)
        LittleEndian.append(value, to: &v)
        LittleEndian.append(publishedAt, to: &v)
        return v
    }
}

/// The broker's fields of a stored record, parsed out of its headers.
struct RecordMeta {
    var idKind: MessageID.Kind?
    var idValue: Int64 = 0
    var publishedAt: Int64?
    var dueAt: Int64?
    var attempts: Int = 0
    var error: String?
    var readyOffset: Int64?
    var fire: FireTag?
    var dedup: [UInt8]?
    var producer: (id: Int64, sequence: Int32, count: Int)?

    /// Splits `headers` into the producer's (returned) and the broker's (in `meta`).
    static func split(_ headers: [RecordHeader]) -> (user: [RecordHeader], meta: RecordMeta) {
        var meta = RecordMeta()
        guard headers.contains(where: { ReservedHeader.isReserved($0.name) }) else { return (headers, meta) }
        var user: [RecordHeader] = []
        for h in headers {
            guard ReservedHeader.isReserved(h.name) else {
                user.append(h)
                continue
            }
            let v = h.value
            switch h.name {
            case ReservedHeader.id:
                if v.count == 9 || v.count == 17, let kind = MessageID.Kind(rawValue: v[0]), let value = ReservedHeader.readInt64(v, at: 1) {
                    meta.idKind = kind
                    meta.idValue = value
                    // The long form carries the publish time too (fired records: one header, one allocation).
                    if v.count == 17 { meta.publishedAt = ReservedHeader.readInt64(v, at: 9) }
                }
            case ReservedHeader.publishedAt: meta.publishedAt = ReservedHeader.readInt64(v)
            case ReservedHeader.dueAt: meta.dueAt = ReservedHeader.readInt64(v)
            case ReservedHeader.attempts: meta.attempts = Int(ReservedHeader.readUInt32(v) ?? 0)
            case ReservedHeader.error: meta.error = String(decoding: v, as: UTF8.self)
            case ReservedHeader.readyOffset: meta.readyOffset = ReservedHeader.readInt64(v)
            case ReservedHeader.fire: meta.fire = FireTag(v)
            case ReservedHeader.dedup: meta.dedup = v
            case ReservedHeader.producer:
                if v.count == 16, let id = ReservedHeader.readInt64(v), let seq = ReservedHeader.readUInt32(v, at: 8),
                    let count = ReservedHeader.readUInt32(v, at: 12)
                {
                    meta.producer = (id, Int32(bitPattern: seq), Int(count))
                }
            default: user.append(h)  // dead-letter headers stay visible to whoever reads the DLQ
            }
        }
        return (user, meta)
    }
}

/// Marks a batch the wheel handed over: which hand-over, and which of its parts (one per
/// destination log, written in destination order) this batch is.
struct FireTag: Equatable, Sendable {
    var sequence: UInt64
    var part: UInt16
    var parts: UInt16

    var isLastPart: Bool { part + 1 == parts }

    init(sequence: UInt64, part: UInt16, parts: UInt16) {
        self.sequence = sequence
        self.part = part
        self.parts = parts
    }

    init?(_ v: [UInt8]) {
        guard v.count == 12, let s = ReservedHeader.readInt64(v) else { return nil }
        sequence = UInt64(bitPattern: s)
        part = UInt16(v[8]) | UInt16(v[9]) << 8
        parts = UInt16(v[10]) | UInt16(v[11]) << 8
    }

    var bytes: [UInt8] {
        ReservedHeader.int64(Int64(bitPattern: sequence)) + [UInt8(part & 0xFF), UInt8(part >> 8), UInt8(parts & 0xFF), UInt8(parts >> 8)]
    }
}
