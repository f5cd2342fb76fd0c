import ChimeStore

/// A message id, returned at publish: the topic (by its numeric id), the partition, and
/// either the ready-log offset (a message published for now) or the timer-log position (a
/// scheduled one, which `cancel` and `reschedule` take). Text form: `3-0-s1234` / `3-0-r55`.
public struct MessageID: Hashable, Sendable, CustomStringConvertible, LosslessStringConvertible {
    public enum Kind: UInt8, Sendable {
        case ready = 0
        case scheduled = 1
    }

    public var topicID: UInt32
    public var partition: Int
    public var kind: Kind
    public var value: Int64

    public init(topicID: UInt32, partition: Int, kind: Kind, value: Int64) {
        self.topicID = topicID
        self.partition = partition
        self.kind = kind
        self.value = value
    }

    public var description: String { "\(topicID)-\(partition)-\(kind == .ready ? "r" : "s")\(value)" }

    public init?(_ text: String) {
        let parts = text.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 3, let topic = UInt32(parts[0]), let partition = Int(parts[1]), partition >= 0,
            let tag = parts[2].first, let value = Int64(parts[2].dropFirst()), value >= 0
        else { return nil }
        switch tag {
        case "r": kind = .ready
        case "s": kind = .scheduled
        default: return nil
        }
        self.topicID = topic
        self.partition = partition
        self.value = value
    }
}

/// When a message is due, as a publisher names it (docs/architecture.md, "Time").
public enum Due: Sendable, Equatable {
    /// At this wall-clock time, ms since the Unix epoch: converted to broker time when the
    /// broker receives it, by the difference between its clocks then.
    case at(Int64)
    /// This many ms (0...`Broker.maxDelayMilliseconds`) after the broker receives it.
    case after(Int64)

    /// The due time in broker time, for a message received at broker time `now` while the
    /// wall clock reads `wallNow`. A time at or before `now` means due now.
    func brokerTime(now: Int64, wallNow: Int64) -> Int64 {
        switch self {
        case .at(let time): time.saturatingAdd(now - wallNow)
        case .after(let ms): now.saturatingAdd(ms)
        }
    }
}

/// A message to publish.
public struct OutgoingMessage: Sendable {
    public var key: [UInt8]?
    public var headers: [RecordHeader]
    public var body: [UInt8]
    /// When it should be delivered; nil or a time not after the publish goes straight to
    /// the ready log.
    public var due: Due?
    /// Messages with the same dedup key within the topic's dedup window are stored once.
    public var dedupKey: [UInt8]?

    public init(key: [UInt8]? = nil, headers: [RecordHeader] = [], body: [UInt8], due: Due? = nil, dedupKey: [UInt8]? = nil) {
        self.key = key
        self.headers = headers
        self.body = body
        self.due = due
        self.dedupKey = dedupKey
    }

    var size: Int { (key?.count ?? 0) + body.count + headers.reduce(0) { $0 + $1.name.utf8.count + $1.value.count } }
}

/// An idempotent producer's stamp on a publish: `sequence` is that of its first message;
/// the next publish to the same partition continues at `sequence + count`.
public struct ProducerStamp: Sendable, Equatable {
    public var producerID: Int64
    public var sequence: Int32

    public init(producerID: Int64, sequence: Int32) {
        self.producerID = producerID
        self.sequence = sequence
    }
}

/// The outcome for one published message.
public struct PublishedMessage: Sendable, Equatable {
    /// Its id; for a duplicate, the id of the message stored first when the broker still
    /// knows it (nil otherwise).
    public var id: MessageID?
    public var partition: Int
    /// Not stored again: a retried batch of an idempotent producer, or a dedup-key duplicate.
    public var duplicate: Bool
}

/// Which of a partition's logs a delivery came from.
public enum DeliverySource: UInt8, Sendable, Hashable {
    /// The partition's ready log, shared by every group.
    case ready = 0
    /// The group's own retry log of that partition (nacked messages that fell due again).
    case retry = 1
}

/// What a member acks, nacks, extends or terminates: one lease on one message.
public struct DeliveryReceipt: Hashable, Sendable {
    public var topicID: UInt32
    public var partition: Int
    public var source: DeliverySource
    public var offset: Int64
    /// Which lease of the message this is: a receipt of an expired lease is refused.
    public var lease: UInt32

    /// A receipt as a client sends it back (the server rebuilds it from the wire).
    public init(topicID: UInt32, partition: Int, source: DeliverySource, offset: Int64, lease: UInt32) {
        self.topicID = topicID
        self.partition = partition
        self.source = source
        self.offset = offset
        self.lease = lease
    }
}

extension Delivery {
    /// The delivery of a stored record of `p`: the broker's own headers taken out and read
    /// (id, publish and due times, earlier attempts, last error). `attempt`: this lease's
    /// (0 for a peek, which leases nothing).
    init(
        _ stored: StoredRecord, of p: Partition, source: DeliverySource, deliveredAt: Int64, attempt: Int, lease: UInt32, leaseDeadline: Int64
    ) {
        let r = stored.record
        let (user, meta) = RecordMeta.split(r.headers)
        let id = meta.idKind.map { MessageID(topicID: p.topicID, partition: p.index, kind: $0, value: meta.idValue) }
            ?? MessageID(topicID: p.topicID, partition: p.index, kind: .ready, value: stored.offset)
        self.init(
            topic: p.topic, partition: p.index, source: source, offset: stored.offset, id: id, key: r.key, headers: user, body: r.body,
            publishedAt: meta.publishedAt ?? r.timestamp, dueAt: meta.dueAt ?? r.timestamp, deliveredAt: deliveredAt,
            attempt: meta.attempts + attempt, lastError: meta.error,
            receipt: DeliveryReceipt(topicID: p.topicID, partition: p.index, source: source, offset: stored.offset, lease: lease),
            leaseDeadline: leaseDeadline)
    }
}

/// A message handed to a member under a lease.
public struct Delivery: Sendable {
    public var topic: String
    public var partition: Int
    public var source: DeliverySource
    public var offset: Int64
    public var id: MessageID
    public var key: [UInt8]?
    /// The producer's headers (the broker's own `chime-*` headers are taken out).
    public var headers: [RecordHeader]
    public var body: [UInt8]
    public var publishedAt: Int64
    public var dueAt: Int64
    public var deliveredAt: Int64
    /// 1 for the first delivery.
    public var attempt: Int
    /// Reason given by the last nack, for a retried message.
    public var lastError: String?
    public var receipt: DeliveryReceipt
    /// When the lease runs out unless extended.
    public var leaseDeadline: Int64

    /// At least the bytes a delivery of `record` takes in a fetch answer (docs/formats.md:
    /// about 100 bytes of fixed fields and length prefixes, then the variable parts; the
    /// record's own headers include the broker's, of which the last error is one): what a
    /// fetch's `maxBytes` counts, so that no answer outgrows the frame it goes out in.
    public static func sizeBound(topic: String, record: Record) -> Int {
        fixedSizeBound + topic.utf8.count + (record.key?.count ?? 0) + record.body.count
            + record.headers.reduce(0) { $0 + headerSizeBound + $1.name.utf8.count + $1.value.count }
    }

    /// Every fixed-size field and length prefix of one delivery, rounded up.
    public static let fixedSizeBound = 160
    public static let headerSizeBound = 8
}
