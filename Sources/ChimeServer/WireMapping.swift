import ChimeBroker
import ChimeProtocol
import ChimeStore

/// Engine errors on the wire: each `BrokerError.Code` to its `WireErrorCode` (the numbers
/// are named in ChimeProtocol, shared with the client; docs/formats.md lists them).
enum ErrorCodes {
    static let table: [(BrokerError.Code, WireErrorCode)] = [
        (.unknownTopic, .unknownTopic), (.topicExists, .topicExists), (.invalidName, .invalidName), (.badPartition, .badPartition),
        (.messageTooLarge, .messageTooLarge), (.malformedBatch, .malformedBatch), (.corruptBatch, .corruptBatch),
        (.sequenceGap, .sequenceGap), (.unknownMessage, .unknownMessage), (.unknownGroup, .unknownGroup),
        (.unknownMember, .unknownMember), (.fenced, .fenced), (.unknownDelivery, .unknownDelivery), (.alreadyAcked, .alreadyAcked),
        (.leaseExpired, .leaseExpired), (.invalidArgument, .invalidArgument), (.storage, .storage), (.closed, .closed), (.limitReached, .limitReached),
        (.groupExists, .groupExists), (.groupInUse, .groupInUse), (.unknownSchedule, .unknownSchedule), (.scheduleExists, .scheduleExists),
        (.badSchedule, .badSchedule), (.unknownTimeZone, .unknownTimeZone),
        (.lockHeld, .lockHeld), (.lockLost, .lockLost), (.staleToken, .staleToken), (.callbackClosed, .callbackClosed),
    ]

    static func reply(_ error: any Error) -> ErrorReply {
        if let e = error as? BrokerError {
            return ErrorReply(table.first { $0.0 == e.code }?.1 ?? .internalError, message: e.message)
        }
        if let e = error as? ProtocolError { return ErrorReply(e) }
        if let e = error as? ErrorReply { return e }
        if let e = error as? StoreError { return ErrorReply(.storage, message: "\(e)") }
        return ErrorReply(.internalError, message: "\(error)")
    }

    /// Whether a refusal is the server's trouble (storage, internal) rather than the
    /// client's request: those are logged, with their cause.
    static func isServerTrouble(_ reply: ErrorReply) -> Bool {
        reply.code == WireErrorCode.storage.rawValue || reply.code == WireErrorCode.internalError.rawValue
    }
}

extension WireTopicSettings {
    init(_ s: TopicSettings) {
        self.init(
            partitions: UInt32(s.partitions), retentionMilliseconds: s.retentionMilliseconds, retentionBytes: s.retentionBytes,
            maxMessageBytes: UInt32(s.maxMessageBytes), maxAttempts: UInt16(clamping: s.maxAttempts), dedupWindowMilliseconds: s.dedupWindowMilliseconds)
    }

    var settings: TopicSettings {
        TopicSettings(
            partitions: Int(partitions), retentionMilliseconds: retentionMilliseconds, retentionBytes: retentionBytes,
            maxMessageBytes: Int(maxMessageBytes), maxAttempts: Int(maxAttempts), dedupWindowMilliseconds: dedupWindowMilliseconds)
    }
}

extension WireMessageID {
    init(_ id: MessageID) {
        self.init(topicID: id.topicID, partition: UInt32(id.partition), kind: id.kind.rawValue, value: id.value)
    }

    var messageID: MessageID {
        MessageID(topicID: topicID, partition: Int(partition), kind: kind == 1 ? .scheduled : .ready, value: value)
    }
}

extension WireReceipt {
    init(_ r: DeliveryReceipt) {
        self.init(topicID: r.topicID, partition: UInt32(r.partition), source: r.source.rawValue, offset: r.offset, lease: r.lease)
    }

    var receipt: DeliveryReceipt {
        DeliveryReceipt(topicID: topicID, partition: Int(partition), source: source == 1 ? .retry : .ready, offset: offset, lease: lease)
    }
}

extension WireDelivery {
    init(_ d: Delivery) {
        self.init(
            topic: d.topic, partition: UInt32(d.partition), offset: d.offset, id: WireMessageID(d.id), key: d.key,
            headers: d.headers.map { WireHeader(name: $0.name, value: $0.value) }, body: d.body, publishedAt: d.publishedAt, dueAt: d.dueAt,
            deliveredAt: d.deliveredAt, attempt: UInt32(clamping: d.attempt), lastError: d.lastError, receipt: WireReceipt(d.receipt),
            leaseDeadline: d.leaseDeadline)
    }
}

extension WireMembership {
    init(_ m: Membership) {
        self.init(memberID: m.memberID, generation: m.generation, assignment: m.assignment.map { ($0.topic, UInt32($0.partition)) })
    }
}

extension OutgoingRecord {
    var message: OutgoingMessage {
        OutgoingMessage(key: key, headers: headers.map { RecordHeader(name: $0.name, value: $0.value) }, body: body, due: due.map(Due.init), dedupKey: dedupKey)
    }
}

extension Due {
    init(_ due: WireDue) {
        switch due {
        case .at(let time): self = .at(time)
        case .after(let ms): self = .after(ms)
        }
    }
}

extension WireGroupSettings {
    /// All of `s`.
    init(_ s: GroupSettings) {
        func millis(_ v: Double?) -> Int64 { v.map { Int64(($0 * 1000).rounded()) } ?? -1 }
        self.init(
            mode: s.mode == .shared ? .shared : .partitioned, maxInFlight: UInt32(clamping: s.maxInFlight), leaseMilliseconds: s.leaseMilliseconds,
            sessionTimeoutMilliseconds: s.sessionTimeoutMilliseconds, maxAttempts: s.maxAttempts.map(Int64.init) ?? -1, keyOrdering: s.keyOrdering,
            keyConcurrency: s.keyConcurrency.map(Int64.init) ?? -1, rateLimitMillis: millis(s.rateLimit), rateBurstMillis: millis(s.rateBurst),
            keyRateLimitMillis: millis(s.keyRateLimit), keyRateBurstMillis: millis(s.keyRateBurst), maxWindow: UInt32(clamping: s.maxWindow))
    }

    /// `base` with the fields present here: -1 for none where a setting may be none. A value
    /// no setting can take is `invalidArgument`; the result is checked as a whole by the
    /// engine (`GroupSettings.validate`).
    func applied(to base: GroupSettings) throws -> GroupSettings {
        var s = base
        func count(_ v: Int64, _ what: String) throws -> Int? {
            guard v == -1 || (v >= 1 && v <= Int64(Int32.max)) else {
                throw BrokerError(.invalidArgument, "\(what) is -1 (none) or 1...\(Int32.max), not \(v)")
            }
            return v == -1 ? nil : Int(v)
        }
        func rate(_ v: Int64, _ what: String) throws -> Double? {
            guard v == -1 || (v >= 1 && v <= 1_000_000_000_000) else {
                throw BrokerError(.invalidArgument, "\(what) is -1 (none) or 1...10^12 thousandths, not \(v)")
            }
            return v == -1 ? nil : Double(v) / 1000
        }
        if let mode { s.mode = mode == .shared ? .shared : .partitioned }
        if let maxInFlight { s.maxInFlight = Int(maxInFlight) }
        if let leaseMilliseconds { s.leaseMilliseconds = leaseMilliseconds }
        if let sessionTimeoutMilliseconds { s.sessionTimeoutMilliseconds = sessionTimeoutMilliseconds }
        if let maxAttempts { s.maxAttempts = try count(maxAttempts, "max attempts") }
        if let keyOrdering { s.keyOrdering = keyOrdering }
        if let keyConcurrency { s.keyConcurrency = try count(keyConcurrency, "key concurrency") }
        if let rateLimitMillis { s.rateLimit = try rate(rateLimitMillis, "rate limit") }
        if let rateBurstMillis { s.rateBurst = try rate(rateBurstMillis, "rate burst") }
        if let keyRateLimitMillis { s.keyRateLimit = try rate(keyRateLimitMillis, "key rate limit") }
        if let keyRateBurstMillis { s.keyRateBurst = try rate(keyRateBurstMillis, "key rate burst") }
        if let maxWindow { s.maxWindow = Int(maxWindow) }
        return s
    }
}

extension WireJobStatus {
    init(_ status: JobStatus) {
        let state: WireJobState =
            switch status.state {
            case .scheduled(let dueAt): .scheduled(dueAt: dueAt)
            case .ready: .ready
            case .running(let member, let attempt, let deadline): .running(member: member, attempt: attempt, leaseDeadline: deadline)
            case .retrying(let next, let attempts, let error): .retrying(nextAttemptAt: next, attempts: attempts, lastError: error)
            case .succeeded: .succeeded
            case .finished: .finished
            case .dead(let reason, let attempts): .dead(reason: reason, attempts: attempts)
            case .cancelled: .cancelled
            case .aborted(let whileRunning, let reason): .aborted(whileRunning: whileRunning, reason: reason)
            case .waiting(let until, let callback): .waiting(until: until, callback: callback)
            }
        self.init(group: status.group, state: state)
    }
}
