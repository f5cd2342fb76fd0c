import ChimeStore
import ChimeWheel
import CoreMetrics
import Logging

#if canImport(Glibc)
import Glibc
#endif

/// A member's view of the group after join or heartbeat.
public struct Membership: Sendable, Equatable {
    public var memberID: UInt64
    public var generation: Int64
    /// The partitions this member owns, as (topic, partition).
    public var assignment: [TopicPartition]
}

public struct TopicPartition: Hashable, Sendable, CustomStringConvertible {
    public var topic: String
    public var partition: Int
    public init(topic: String, partition: Int) {
        self.topic = topic
        self.partition = partition
    }
    public var description: String { "\(topic)/\(partition)" }
}

/// What the group needs from the broker.
protocol GroupHost: AnyObject, Sendable {
    /// The partitions of a topic (created with the defaults when auto-create is on).
    func partitions(ofTopic name: String, create: Bool) async throws -> [Partition]
    func partition(_ key: PartitionKey) -> Partition?
    /// Every partition of every topic.
    var partitionsWithState: [Partition] { get }
    func topicSettings(_ topicID: UInt32) -> TopicSettings?
    /// Publishes on the broker's behalf (reserved headers allowed), to any partition.
    func publishInternal(topic: String, messages: [OutgoingMessage]) async throws
    /// Schedules' occurrences out, told when this group settles one.
    var occurrenceWatch: OccurrenceWatch { get }
    /// Children of flows ended in the group their flows count (`Broker+Flows.swift`).
    func flowChildrenEnded(_ ends: [(FlowMembership, succeeded: Bool, detail: [UInt8])]) async throws
}

/// One partition as one group consumes it: delivery windows over the ready log and the
/// group's retry log, and the journal that makes acks durable.
/// Only ever touched on its group's actor: not Sendable, so the compiler refuses to let it
/// reach code that runs elsewhere (such as an async closure that is not isolated to the
/// group), and the windows check the executor in debug builds besides.
final class GroupPartition {
    /// The group whose actor alone may use this partition's state.
    unowned let group: ConsumerGroup
    let partition: Partition
    let retryLog: FiredLog
    let journal: AckJournal
    var ready: DeliveryWindow
    var retry: DeliveryWindow
    var readyCursor: RecordCursor
    var retryCursor: RecordCursor
    /// Ready offsets from here on were acked (if at all) since this partition was opened;
    /// below, they may have been acked before the broker started (see `JobState.finished`).
    let ackedSinceOpenFrom: Int64
    /// Retries handed to the wheel (since opening) and not yet read from the retry log;
    /// those already fired but not read are in both counts until then (see `stats`).
    var retriesScheduled = 0
    var deadLettered = 0
    /// Offsets of flows' children delivered and not yet ended here, per log: an ack of one
    /// of them reads it to record its outcome (other acks read nothing, and with none out
    /// an ack's check costs no hashing).
    private var readyFlowChildren: Set<Int64> = []
    private var retryFlowChildren: Set<Int64> = []

    func addFlowChild(_ source: DeliverySource, _ offset: Int64) {
        if source == .ready { readyFlowChildren.insert(offset) } else { retryFlowChildren.insert(offset) }
    }
    func removeFlowChild(_ source: DeliverySource, _ offset: Int64) {
        if source == .ready { readyFlowChildren.remove(offset) } else { retryFlowChildren.remove(offset) }
    }
    func isFlowChild(_ source: DeliverySource, _ offset: Int64) -> Bool {
        source == .ready
            ? !readyFlowChildren.isEmpty && readyFlowChildren.contains(offset) : !retryFlowChildren.isEmpty && retryFlowChildren.contains(offset)
    }
    /// `chime_delivered_messages_total` and `chime_acked_messages_total`, labelled with
    /// topic and group: stepped once per fetch or ack call by what it did here.
    let delivered: Counter
    let acked: Counter
    var key: PartitionKey { PartitionKey(topicID: partition.topicID, partition: partition.index) }

    init(
        partition: Partition, group: ConsumerGroup, configuration: LogConfiguration, calls: FileSystemCalls, keyLimit: Int?, logger: Logger
    ) throws {
        self.group = group
        self.partition = partition
        let labels = [("topic", partition.topic), ("group", group.name)]
        delivered = Counter(label: "chime_delivered_messages_total", dimensions: labels)
        acked = Counter(label: "chime_acked_messages_total", dimensions: labels)
        let dir = Partition.groupDirectory(partition.directory, group: group.id)
        // Only inside the partition's directory as it is: a topic deleted meanwhile (its
        // directory moved aside) must not grow a stray `groups/<id>` back.
        do {
            try Directory.createChild(dir)
        } catch let error as StoreError where error.errno == ENOENT {
            throw BrokerError(.unknownTopic, "topic \(partition.topic) was deleted")
        }
        retryLog = try partition.sink.log(for: group.id)
        journal = try AckJournal(directory: dir, configuration: configuration, calls: calls, logger: logger)
        var position = try journal.restore(readyStart: partition.ready.log.startOffset)
        if position.readyFrontier == 0 && position.readyAcked.isEmpty { position.readyFrontier = partition.ready.log.startOffset }
        ackedSinceOpenFrom = max(position.readyFrontier, (position.readyAcked.max() ?? -1) + 1)
        ready = DeliveryWindow(frontier: position.readyFrontier, acked: position.readyAcked, keyLimit: keyLimit)
        retry = DeliveryWindow(frontier: position.retryFrontier, acked: position.retryAcked, keyLimit: keyLimit)
        ready.skip(to: partition.ready.log.startOffset)
        retry.skip(to: retryLog.log.startOffset)
        readyCursor = RecordCursor(log: partition.ready.log)
        retryCursor = RecordCursor(log: retryLog.log)
    }

    /// Reads a window in place. (Returning the window itself would copy it: a retain and a
    /// release of each of its buffers, for every message a fetch hands out. So would
    /// passing the stored property to the borrowing closure directly: a class's stored
    /// property is read for a borrow as a copy; through the modify access it is not.)
    func withWindow<R>(reading source: DeliverySource, _ body: (borrowing DeliveryWindow) throws -> R) rethrows -> R {
        try withWindow(source) { try body($0) }
    }
    func withWindow<R>(_ source: DeliverySource, _ body: (inout DeliveryWindow) throws -> R) rethrows -> R {
        checkIsolated()
        return source == .ready ? try body(&ready) : try body(&retry)
    }
    /// A window changed from two threads at once (an ack running beside a fetch) breaks its
    /// invariants, e.g. an offset indexed past its slots. Checked in debug builds (every
    /// test run); in release the check was a measurable part of each message handed out.
    @inline(__always)
    private func checkIsolated() {
        #if DEBUG
        group.assertIsolated("a delivery window used off its group's actor")
        #endif
    }
    func record(_ source: DeliverySource, at offset: Int64) throws -> StoredRecord? {
        source == .ready ? try readyCursor.record(at: offset) : try retryCursor.record(at: offset)
    }
    func log(_ source: DeliverySource) -> RecordLog { firedLog(source).log }
    func firedLog(_ source: DeliverySource) -> FiredLog { source == .ready ? partition.ready : retryLog }
}

/// A consumer group: its members, the assignment of partitions to them, and per partition
/// the delivery state. Every call is serialised through this actor; lease expiry and
/// member timeouts are checked at each call against the injected clock, so an idle group
/// costs nothing and tests need no real time.
actor ConsumerGroup {
    let name: String
    let id: UInt32
    private(set) var settings: GroupSettings
    private var membership = GroupMembership()
    var parts: [PartitionKey: GroupPartition] = [:]
    /// Bumped whenever `parts` changes — a partition opened, dropped with its topic, or all
    /// of them closed — so that `settle` looks a partition up again (see there).
    private var layout = 0
    private var topicNames: [UInt32: String] = [:]
    private var bucket: TokenBucket?
    private var keyRates: KeyRateLimiter?
    private var random: any RandomNumberGenerator
    let clock: any WheelClock
    private let logConfiguration: LogConfiguration
    private let fileSystem: FileSystemCalls
    let logger: Logger
    private(set) weak var host: (any GroupHost)?
    private var rotation = 0
    /// Retries and dead letters, for job status queries (see `JobOutcomes`).
    var outcomes = JobOutcomes()
    /// Leases aborted while their members ran them, to tell each member once (`abortNotices`).
    var abortNotices: [UInt64: [DeliveryReceipt]] = [:]

    var dlqTopic: String { Self.deadLetterTopic(of: name) }
    static func deadLetterTopic(of group: String) -> String { group + ".dlq" }

    init(name: String, id: UInt32, settings: GroupSettings, options: BrokerOptions, host: any GroupHost, logger: Logger) {
        self.name = name
        self.id = id
        self.settings = settings
        self.clock = options.clock
        membership = GroupMembership(generation: max(0, options.clock.now()), mode: settings.mode)
        self.host = host
        var logger = logger
        logger[metadataKey: "group"] = "\(name)"
        self.logger = logger
        random = options.randomSeed.map { SplitMix64(seed: $0 ^ UInt64(id)) as any RandomNumberGenerator } ?? SystemRandomNumberGenerator()
        logConfiguration = LogConfiguration(segmentBytes: options.groupSegmentBytes, durability: options.durability, validateRecordsOnAppend: false)
        fileSystem = options.fileSystem
        if let rate = settings.rateLimit { bucket = TokenBucket(rate: rate, burst: settings.rateBurst, now: options.clock.now()) }
        keyRates = settings.keyRateLimit.map { KeyRateLimiter(rate: $0, burst: settings.keyRateBurst) }
    }

    private func hostOrThrow() throws -> any GroupHost {
        guard let host else { throw BrokerError(.closed, "the broker is closed") }
        return host
    }

    /// Set while the group is being deleted, and for good once it is: every call is refused.
    private var retired = false

    func checkNotRetired() throws {
        guard !retired else { throw BrokerError(.unknownGroup, "group \(name) was deleted") }
    }

    /// Takes the group out of service for its deletion; `groupInUse` while a member is live
    /// (members past their session timeout leave first).
    func retire() async throws {
        try checkNotRetired()
        try await catchUp()
        guard membership.members.isEmpty else {
            throw BrokerError(
                .groupInUse,
                "group \(name) has \(membership.members.count) live member(s): stop them, or wait for their session timeout (\(settings.sessionTimeoutMilliseconds) ms)")
        }
        retired = true
    }

    /// The deletion did not go through: the group serves again.
    func unretire() { retired = false }

    // MARK: - Membership

    /// Member ids are random below 2^53 (the integers a double holds exactly).
    static let memberIDMask: UInt64 = (1 << 53) - 1

    func join(memberName: String, topics: [String]) async throws -> Membership {
        try checkNotRetired()
        guard !topics.isEmpty else { throw BrokerError(.invalidArgument, "a member must subscribe to at least one topic") }
        let host = try hostOrThrow()
        for t in topics {
            try Names.validate(t, what: "topic")
            // The broker's join made them (or found them) already: one deleted since is unknown.
            for p in try await host.partitions(ofTopic: t, create: false) { topicNames[p.topicID] = p.topic }
        }
        let now = clock.now()
        var memberID: UInt64 = 0
        // Below 2^53: exact as a JSON number in JavaScript and jq too.
        while memberID == 0 || membership.members[memberID] != nil { memberID = random.next() & Self.memberIDMask }
        membership.join(.init(id: memberID, name: memberName, topics: Set(topics), lastSeen: now))
        try await rebalance()
        logger.info("member joined", metadata: ["member": "\(memberName)", "id": "\(memberID)", "generation": "\(membership.generation)"])
        return view(memberID)
    }

    func heartbeat(member: UInt64) async throws -> Membership {
        try await live(member)
        try await expireLeases(now: clock.now())
        return view(member)
    }

    func leave(member: UInt64) async throws {
        guard membership.leave(member) else { throw unknownMember(member) }
        abortNotices[member] = nil
        // What it still holds is delivered again at once, and not as another attempt.
        var handedBack = 0
        for gp in parts.values { handedBack += gp.ready.handBack(member: member) + gp.retry.handBack(member: member) }
        if handedBack > 0 { logger.info("member left; its leases handed back", metadata: ["member": "\(member)", "messages": "\(handedBack)"]) }
        try await rebalance()
    }

    private func view(_ member: UInt64) -> Membership {
        Membership(
            memberID: member, generation: membership.generation,
            assignment: membership.partitions(of: member).map { TopicPartition(topic: topicNames[$0.topicID] ?? "?", partition: $0.partition) })
    }

    private func unknownMember(_ member: UInt64) -> BrokerError {
        BrokerError(.unknownMember, "member \(member) is not in group \(name) (it left or missed heartbeats for \(settings.sessionTimeoutMilliseconds) ms): join again")
    }

    /// Drops silent members, records `member`'s sign of life, rebalances if needed.
    private func live(_ member: UInt64) async throws {
        guard try await expireMembers(touching: member) else { throw unknownMember(member) }
    }

    /// Drops members silent past the session timeout — `member` included: its call comes
    /// too late to keep partitions another member may already have been given — then
    /// records `member`'s sign of life. False when `member` is not (or no longer) in the group.
    func expireMembers(touching member: UInt64) async throws -> Bool {
        try checkNotRetired()
        let now = clock.now()
        try await expireMembers(now: now)
        return membership.touch(member, now: now)
    }

    /// Members silent past the session timeout leave; what they held is delivered again at
    /// once (as an attempt: the member may have died of the message), not when each lease
    /// runs out.
    private func expireMembers(now: Int64) async throws {
        let gone = membership.expire(now: now, timeout: settings.sessionTimeoutMilliseconds)
        guard !gone.isEmpty else { return }
        let dead = Set(gone)
        for m in gone { abortNotices[m] = nil }
        var released = 0
        try await endLeases { w in
            let ended = w.release(members: dead)
            released += ended.count
            return ended
        }
        logger.info("members timed out; their leases released", metadata: ["members": "\(gone)", "messages": "\(released)"])
        try await rebalance()
    }

    /// Reassigns the partitions of the members' topics. Reading them waits for the broker,
    /// and the actor takes other calls meanwhile: when a join or leave changed the topics
    /// by then, they are read again. A result applied for the members as they were would,
    /// applied after a newer rebalance, leave the newer member's topics unserved until the
    /// group changes again.
    private func rebalance() async throws {
        var topics = membership.topics
        var all = try await partitions(of: topics)
        while membership.topics != topics {
            topics = membership.topics
            all = try await partitions(of: topics)
        }
        for change in membership.rebalance(all) where change.previous != nil && membership.mode == .partitioned {
            // The old owner's leases end: its acks are refused from now on (fenced).
            if let gp = parts[change.key] {
                let revoked = gp.ready.revokeAll() + gp.retry.revokeAll()
                if revoked > 0 { logger.info("partition moved; leases revoked", metadata: ["partition": "\(change.key)", "leases": "\(revoked)"]) }
            }
        }
    }

    /// Every partition of `topics` that still exist, with its topic, the group's state in
    /// each opened.
    private func partitions(of topics: Set<String>) async throws -> [(key: PartitionKey, topic: String)] {
        let host = try hostOrThrow()
        var all: [(key: PartitionKey, topic: String)] = []
        for t in topics.sorted() {
            let partitions: [Partition]
            do {
                partitions = try await host.partitions(ofTopic: t, create: false)
            } catch let error as BrokerError where error.code == .unknownTopic {
                continue  // deleted since the member subscribed
            }
            do {
                for p in partitions where parts[PartitionKey(topicID: p.topicID, partition: p.index)] == nil { _ = try open(p) }
            } catch let error as BrokerError where error.code == .unknownTopic {
                continue  // deleted while its partitions were being opened
            }
            for p in partitions {
                topicNames[p.topicID] = p.topic
                all.append((PartitionKey(topicID: p.topicID, partition: p.index), t))
            }
        }
        return all
    }

    /// Opens the group's state in `p` (its directory, journal and retry log) if it is not
    /// open yet; a partition of a topic deleted meanwhile is `unknownTopic`.
    func prepare(_ p: Partition) throws {
        _ = try open(p)
    }

    private func open(_ p: Partition) throws -> GroupPartition {
        let key = PartitionKey(topicID: p.topicID, partition: p.index)
        if let gp = parts[key] { return gp }
        let gp = try GroupPartition(
            partition: p, group: self, configuration: logConfiguration, calls: fileSystem, keyLimit: settings.keyLimit, logger: logger)
        parts[key] = gp
        layout += 1
        return gp
    }

    // MARK: - Fetch

    /// Up to `max` deliveries from the member's partitions: redeliveries first, then the
    /// retry log, then the ready log; each partition up to `maxInFlight` leased at once.
    /// Over several topics, the topics take turns in an order shuffled per fetch, each turn
    /// an even share of what is still wanted, until the fetch is full or every topic is
    /// empty: one busy topic does not starve the others, and none is always drained first.
    func fetch(member: UInt64, max wanted: Int, maxBytes: Int = .max) async throws -> [Delivery] {
        try await live(member)
        let now = clock.now()
        try await expireLeases(now: now)
        let owned = membership.partitions(of: member)
        // No more than maxInFlight per owned partition can be handed out; `wanted` comes
        // from the client, and Int.max overflowed the share arithmetic below (a trap) and
        // reserved room for that many deliveries.
        let cap = settings.maxInFlight.multipliedReportingOverflow(by: max(1, owned.count))
        var budget = min(wanted, cap.overflow ? Int.max / 2 : cap.partialValue)
        if bucket != nil { budget = bucket!.take(budget, now: now) }
        var out: [Delivery] = []
        out.reserveCapacity(min(budget, 1_024))
        guard !owned.isEmpty, budget > 0 else {
            if bucket != nil { bucket!.giveBack(budget) }
            return out
        }
        rotation &+= 1
        let deadline = now + settings.leaseMilliseconds
        var size = FetchSize(limit: maxBytes)
        var topics = Self.byTopic(owned)
        // Fisher–Yates on the group's generator (seeded in tests).
        for i in stride(from: topics.count - 1, to: 0, by: -1) { topics.swapAt(i, Int(random.next() % UInt64(i + 1))) }
        // Rounds until the fetch is full or every topic fell short: in each round every
        // topic still in it takes a turn of the same size, an even share of what is still
        // wanted. A topic that gave its whole turn may have more; one that fell short is
        // empty (or at its limits) and leaves. (Turns sized anew for each topic would let
        // the topics after a short one take its share, and split unevenly.)
        while out.count < budget && !size.isFull && !topics.isEmpty {
            let turn = (budget - out.count + topics.count - 1) / topics.count
            var more: [[PartitionKey]] = []
            for partitions in topics where out.count < budget && !size.isFull {
                let before = out.count
                fill(partitions, member: member, now: now, deadline: deadline, limit: min(budget, before + turn), size: &size, into: &out)
                if out.count - before == turn { more.append(partitions) }
            }
            topics = more
        }
        if bucket != nil { bucket!.giveBack(budget - out.count) }
        // Handed over now: the firing loop may have appended (and this call read) messages
        // that fell due after the call began.
        let handedOver = clock.now()
        for k in out.indices { out[k].deliveredAt = handedOver }
        return out
    }

    /// The partitions grouped by topic, each group in key order.
    private static func byTopic(_ partitions: [PartitionKey]) -> [[PartitionKey]] {
        var groups: [[PartitionKey]] = []
        for key in partitions {
            if let last = groups.last?.last, last.topicID == key.topicID {
                groups[groups.count - 1].append(key)
            } else {
                groups.append([key])
            }
        }
        return groups
    }

    /// Fills `out` up to `limit` from one topic's partitions, starting at a partition that
    /// rotates from fetch to fetch, each an even share of what is left.
    private func fill(
        _ partitions: [PartitionKey], member: UInt64, now: Int64, deadline: Int64, limit: Int, size: inout FetchSize,
        into out: inout [Delivery]
    ) {
        for k in 0..<partitions.count where out.count < limit && !size.isFull {
            guard let gp = parts[partitions[(k + rotation) % partitions.count]] else { continue }
            let share = (limit - out.count + (partitions.count - k) - 1) / (partitions.count - k)
            let before = out.count
            for source in [DeliverySource.retry, .ready] {
                fill(gp, source, member: member, now: now, deadline: deadline, limit: before + share, size: &size, into: &out)
            }
            if out.count > before { gp.delivered.increment(by: out.count - before) }
        }
    }

    private func fill(
        _ gp: GroupPartition, _ source: DeliverySource, member: UInt64, now: Int64, deadline: Int64, limit: Int, size: inout FetchSize,
        into out: inout [Delivery]
    ) {
        let maxInFlight = settings.maxInFlight
        let log = gp.log(source)
        // Messages fired ahead and held back by this fill count against its limit, so that
        // one fetch during the fire lead does not read a whole large fire ahead at once.
        var heldAhead = 0
        func room() -> Bool { out.count + heldAhead < limit && !size.isFull && gp.ready.inFlight + gp.retry.inFlight < maxInFlight }
        let topic = gp.partition.topic
        /// Delivers `record` if it fits the fetch's byte limit; false when it does not. One
        /// fired ahead of its due time (its timestamp) waits, unread, until then.
        func deliverIfItFits(_ record: StoredRecord) -> Bool {
            if ahead.holds(record.offset, timestamp: record.record.timestamp, now: now) {
                gp.withWindow(source) { $0.hold(record.offset, until: record.record.timestamp) }
                heldAhead += 1
                return true
            }
            let bound = Delivery.sizeBound(topic: topic, record: record.record)
            guard out.isEmpty || size.fits(bound) else { return false }
            let before = out.count
            deliver(gp, source, record, member: member, now: now, deadline: deadline, into: &out)
            if out.count > before { size.add(bound) }
            return true
        }
        gp.withWindow(source) { $0.releaseHeld(now: now) }
        // Held back by a key in flight from the other log; waiting again after this fill.
        var deferred: [Int64] = []
        defer { gp.withWindow(source) { w in for offset in deferred.reversed() { w.putBack(offset) } } }
        // The log's bounds are read once per fill (each read takes the log's lock): what is
        // appended meanwhile waits for the next fetch; a start moved meanwhile by retention
        // is met by `read`, which lets the window pass what is gone. Messages fired ahead
        // of their due time wait in the window until then (`FiredLog.readable`).
        let (end, ahead) = gp.firedLog(source).readable(now: now)
        let start = log.startOffset
        // Messages waiting for redelivery (or taken into the window early, as an abort of a
        // later one does: those beyond the readable end wait for it too).
        while room(), let offset = gp.withWindow(source, { $0.nextWaiting() }) {
            if offset >= end {
                deferred.append(offset)
                continue
            }
            guard let record = read(gp, source, offset) else { continue }
            if heldByOtherLog(gp, source, record) {
                deferred.append(offset)
                continue
            }
            guard deliverIfItFits(record) else {
                deferred.append(offset)
                break
            }
        }
        // New messages, within the window's bound.
        while room() {
            let (span, offset) = gp.withWindow(reading: source) { ($0.span, $0.readEnd) }
            guard span < settings.maxWindow, offset < end else { break }
            if offset < start {
                gp.withWindow(source) { $0.skip(to: start) }
                continue
            }
            guard let record = read(gp, source, offset) else { break }
            // Not admitted unless it fits: the next fetch reads it again.
            guard out.isEmpty || size.fits(Delivery.sizeBound(topic: topic, record: record.record)) else { break }
            _ = gp.withWindow(source) { $0.admitNext() }
            // A retry read from the retry log has left the wheel (see `stats`).
            if source == .retry { gp.retriesScheduled = max(0, gp.retriesScheduled - 1) }
            if heldByOtherLog(gp, source, record) {
                deferred.append(offset)
                continue
            }
            _ = deliverIfItFits(record)
        }
    }

    /// With a key limit, a message whose key is in flight from the partition's other log
    /// (a retry while a newer message is out, or the reverse) waits when the two logs
    /// together are at the limit: each window only counts the keys it leased itself.
    private func heldByOtherLog(_ gp: GroupPartition, _ source: DeliverySource, _ stored: StoredRecord) -> Bool {
        guard let limit = gp.ready.keyLimit, let key = stored.record.key else { return false }
        let hash = KeyHash.of(key)
        let other = gp.withWindow(reading: source == .ready ? .retry : .ready) { $0.keyCount(hash) }
        guard other > 0 else { return false }
        return other + gp.withWindow(reading: source) { $0.keyCount(hash) } >= limit
    }

    /// The record at `offset`, or nil when damage or retention took it (it then counts as
    /// acked, loudly, so delivery goes on).
    private func read(_ gp: GroupPartition, _ source: DeliverySource, _ offset: Int64) -> StoredRecord? {
        do {
            if let r = try gp.record(source, at: offset), r.offset == offset { return r }
        } catch {
            logger.error("unreadable message skipped", metadata: ["partition": "\(gp.key)", "offset": "\(offset)", "error": "\(error)"])
        }
        guard offset < gp.log(source).endOffset else { return nil }
        // The offset is gone: let the window pass it.
        gp.withWindow(source) { w in
            if w.readEnd == offset { _ = w.admitNext() }
            w.markAcked(offset)
        }
        return nil
    }

    private func deliver(
        _ gp: GroupPartition, _ source: DeliverySource, _ stored: StoredRecord, member: UInt64, now: Int64, deadline: Int64,
        into out: inout [Delivery]
    ) {
        let keyHash = stored.record.key.map(KeyHash.of)
        // The key's rate first: a message without a token waits, unread, until one is there.
        if keyRates != nil, let keyHash, let until = keyRates!.take(keyHash, now: now) {
            gp.withWindow(source) { $0.hold(stored.offset, until: until) }
            return
        }
        guard let lease = gp.withWindow(source, { $0.lease(stored.offset, keyHash: keyHash, member: member, deadline: deadline) }) else {
            if keyRates != nil, let keyHash { keyRates!.giveBack(keyHash) }
            return  // held back behind another message with its key
        }
        if stored.record.headers.contains(where: { $0.name == ReservedHeader.flow }) { gp.addFlowChild(source, stored.offset) }
        out.append(Delivery(stored, of: gp.partition, source: source, deliveredAt: now, attempt: lease.attempt, lease: lease.lease, leaseDeadline: deadline))
    }

    /// Where this group stands in `p`'s ready log: its committed offset and the offsets it
    /// acked above it; nil when it never consumed there.
    func position(in p: Partition) throws -> (committed: Int64, ackedAbove: Set<Int64>)? {
        let key = PartitionKey(topicID: p.topicID, partition: p.index)
        if parts[key] == nil {
            guard Directory.isDirectory(Partition.groupDirectory(p.directory, group: id)) else { return nil }
            topicNames[p.topicID] = p.topic
            _ = try open(p)
        }
        let window = parts[key]!.ready
        return (window.frontier, Set(window.ackedOffsets))
    }

    private func maxAttempts(_ gp: GroupPartition) -> Int {
        settings.maxAttempts ?? host?.topicSettings(gp.partition.topicID)?.maxAttempts ?? 5
    }

    /// Ends expired leases; messages past their attempts go to the dead-letter topic.
    func expireLeases(now: Int64) async throws {
        try await endLeases { $0.expire(now: now) }
    }

    /// Ends the leases `end` picks in each window (each returned with the deliveries it
    /// had): the messages wait again, and those past their attempts go to the dead-letter
    /// topic.
    private func endLeases(_ end: (inout DeliveryWindow) -> [(offset: Int64, attempt: Int)]) async throws {
        var dead: [(GroupPartition, DeliverySource, Int64)] = []
        for gp in parts.values {
            let limit = maxAttempts(gp)
            for source in [DeliverySource.ready, .retry] {
                let expired = gp.withWindow(source) { end(&$0) }
                for e in expired {
                    let prior = source == .retry ? priorAttempts(gp, source, e.offset) : 0
                    if prior + e.attempt >= limit {
                        gp.withWindow(source) { $0.parkWaiting(e.offset) }
                        dead.append((gp, source, e.offset))
                    }
                }
            }
        }
        for (gp, source, offset) in dead {
            try? await deadLetter(gp, source, offset, reason: "lease ended unsettled \(maxAttempts(gp)) times (expired, or its member timed out)")
        }
    }

    func priorAttempts(_ gp: GroupPartition, _ source: DeliverySource, _ offset: Int64) -> Int {
        guard let r = try? gp.record(source, at: offset), r.offset == offset else { return 0 }
        return RecordMeta.split(r.record.headers).meta.attempts
    }

    // MARK: - Acks

    /// An ack checked against its window, waiting for its journal append.
    private struct PendingAck {
        var source: DeliverySource
        var offset: Int64
        var lease: UInt32
        /// Its index in the call's receipts.
        var receipt: Int
    }

    /// Applies `body` to each receipt; per-receipt refusals are returned, not thrown.
    ///
    /// `body` is isolated to the group through its first parameter. An async closure that
    /// is not isolated runs on the global executor: one that happened not to capture `self`
    /// (ack's, extend's) changed the windows there, beside a fetch running on the actor,
    /// and the window broke (a trap indexing its slots in `lease`). Isolated, it runs on the
    /// actor, whatever it captures.
    func settle(
        member: UInt64, _ receipts: [DeliveryReceipt],
        _ body: (isolated ConsumerGroup, GroupPartition, DeliveryReceipt) async throws -> Int64?
    ) async throws -> [BrokerError?] {
        let now = clock.now()
        guard try await expireMembers(touching: member) else {
            throw BrokerError(.fenced, "member \(member) is no longer in group \(name) (it left or missed heartbeats): its leases were revoked")
        }
        // Leases past their deadline end before the receipts are judged: a receipt of an
        // expired lease is refused even when no fetch has noticed the expiry yet.
        try await expireLeases(now: now)
        var results = [BrokerError?](repeating: nil, count: receipts.count)
        var touched: [PartitionKey: GroupPartition] = [:]
        /// Acks validated by `body`, applied to the windows once journaled.
        var acked: [PartitionKey: [PendingAck]] = [:]
        // Receipts come in runs of one partition: its lookups are made once per run, and
        // again only when the partitions or the assignment changed meanwhile (a body that
        // suspends lets other calls run on the actor).
        var run: (key: PartitionKey, layout: Int, generation: Int64, gp: GroupPartition, settled: Bool)? = nil
        var runAcked: (key: PartitionKey, entries: [PendingAck]) = (PartitionKey(topicID: 0, partition: 0), [])
        for (i, r) in receipts.enumerated() {
            let key = PartitionKey(topicID: r.topicID, partition: r.partition)
            let gp: GroupPartition
            if let run, run.key == key, run.layout == layout, run.generation == membership.generation {
                gp = run.gp
            } else {
                run = nil
                guard let found = parts[key] else {
                    results[i] = BrokerError(.unknownDelivery, "group \(name) never delivered from partition \(key)")
                    continue
                }
                guard membership.mayFetch(member, from: key) else {
                    results[i] = BrokerError(.fenced, "partition \(topicNames[key.topicID] ?? "?")/\(key.partition) is no longer assigned to member \(member) (generation \(membership.generation))")
                    continue
                }
                gp = found
                run = (key, layout, membership.generation, found, false)
            }
            // In a shared group the lease says whose a message is: another member's receipt
            // is refused as if the lease had ended.
            if membership.mode == .shared, let s = gp.withWindow(reading: r.source, { $0.slot(r.offset) }), s.state == .leased,
                s.lease == r.lease, s.member != member
            {
                results[i] = BrokerError(.unknownDelivery, "lease \(r.lease) on offset \(r.offset) of partition \(topicNames[key.topicID] ?? "?")/\(key.partition) is held by another member")
                continue
            }
            do {
                let settledOffset = try await body(self, gp, r)
                // Journaled and synced below: only partitions where something was settled.
                if run?.settled == false {
                    touched[key] = gp
                    run?.settled = true
                }
                if let offset = settledOffset {
                    if runAcked.key != key {
                        if !runAcked.entries.isEmpty { acked[runAcked.key, default: []].append(contentsOf: runAcked.entries) }
                        runAcked = (key, [])
                    }
                    runAcked.entries.append(PendingAck(source: r.source, offset: offset, lease: r.lease, receipt: i))
                }
            } catch let refusal as DeliveryWindow.Refusal {
                results[i] = error(refusal, r)
            } catch let error as BrokerError {
                results[i] = error
            } catch {
                results[i] = BrokerError(.storage, "settling \(r.offset) of partition \(key): \(error)", underlying: error as? StoreError)
            }
        }
        if !runAcked.entries.isEmpty { acked[runAcked.key, default: []].append(contentsOf: runAcked.entries) }
        // One journal append and one sync per partition per call. An ack changes its window
        // only once its journal append went through, with no suspension in between: an ack
        // the journal refused (a full disk) must not move the committed offset, or the next
        // snapshot would record it.
        var applied: [PartitionKey: Int] = [:]
        do {
            // Under `interval` a message can be acked before its ready log's interval sync:
            // the ack must not reach the disk before the message, or after a power loss the
            // group's position would lie past the log's end and hide the messages published
            // next. The wait shares the log's syncs (group commit); under `always` the message
            // was on disk before its publish returned, under `never` nothing is promised.
            let waits: [(log: RecordLog, end: Int64)] = acked.compactMap { key, entries in
                guard let log = touched[key]?.partition.ready.log, log.configuration.durability != .always,
                    let top = entries.lazy.filter({ $0.source == .ready }).map(\.offset).max()
                else { return nil }
                return (log, top + 1)
            }
            for (log, end) in waits { try await log.waitUntilDurableShared(end) }
            for (key, entries) in acked {
                // The partition this call settled on (the map may have lost it meanwhile: a
                // topic deleted while a refusal was being dead-lettered).
                guard let gp = touched[key] else { continue }
                // Checked again after the wait above: only acks that still hold are journaled.
                var holding: [PendingAck] = []
                for a in entries {
                    do {
                        _ = try gp.withWindow(reading: a.source) { w in try w.check(a.offset, lease: a.lease) }
                        holding.append(a)
                    } catch let refusal as DeliveryWindow.Refusal {
                        results[a.receipt] = error(refusal, receipts[a.receipt])
                    }
                }
                let entries = holding
                guard !entries.isEmpty else { continue }
                _ = try gp.journal.append(entries.map { ($0.source, $0.offset) }, now: now)
                for a in entries {
                    do {
                        try gp.withWindow(a.source) { w in _ = try w.ack(a.offset, lease: a.lease) }
                        applied[key, default: 0] += 1
                    } catch let refusal as DeliveryWindow.Refusal {
                        // The same receipt twice in one call: the second finds it acked.
                        results[a.receipt] = error(refusal, receipts[a.receipt])
                    }
                }
            }
            for gp in touched.values {
                try await gp.journal.log.waitForAcknowledgement(gp.journal.log.endOffset)
            }
        } catch {
            throw BrokerError(.storage, "journaling acks of group \(name): \(error)", underlying: error as? StoreError)
        }
        // Counted once durable. Only acks return an offset here; nack, extend and term
        // settle through other paths.
        for (key, count) in applied { touched[key]?.acked.increment(by: count) }
        if let watch = host?.occurrenceWatch, watch.watches(group: name) {
            for (key, entries) in acked {
                guard let gp = touched[key] else { continue }
                // A retry names the ready-log offset it came from.
                let offsets = entries.compactMap { a -> Int64? in
                    a.source == .ready ? a.offset : (try? gp.record(.retry, at: a.offset)).flatMap { RecordMeta.split($0.record.headers).meta.readyOffset }
                }
                watch.settled(group: name, partition: key, offsets: offsets)
            }
        }
        return results
    }

    func error(_ refusal: DeliveryWindow.Refusal, _ r: DeliveryReceipt) -> BrokerError {
        let what = "\(r.source == .ready ? "message" : "retry") at offset \(r.offset) of partition \(topicNames[r.topicID] ?? "?")/\(r.partition)"
        switch refusal {
        case .alreadyAcked: return BrokerError(.alreadyAcked, "\(what) is already acked")
        case .unknown: return BrokerError(.unknownDelivery, "no delivery \(r.lease) of \(what)")
        case .expired: return BrokerError(.leaseExpired, "lease \(r.lease) on \(what) expired or was revoked; the message is delivered again")
        }
    }

    /// Acks: checked here, applied by `settle` once journaled. A flow's child has its
    /// outcome recorded (with `result`) before its ack is journaled.
    func ack(member: UInt64, _ receipts: [DeliveryReceipt], result: [UInt8]? = nil) async throws -> [BrokerError?] {
        try await flowChildrenAcked(receipts, result: result)
        return try await settle(member: member, receipts) { _, gp, r in
            _ = try gp.withWindow(reading: r.source) { w in try w.check(r.offset, lease: r.lease) }
            return r.offset
        }
    }

    /// Nack: without delay the message is delivered again at once; with a delay it goes
    /// through the timing wheel into this group's retry log. Past the max attempts it goes
    /// to the dead-letter topic instead.
    func nack(member: UInt64, _ receipts: [DeliveryReceipt], delay: Int64, reason: String?) async throws -> [BrokerError?] {
        try await settle(member: member, receipts) { group, gp, r in
            let slot = try gp.withWindow(reading: r.source) { try $0.check(r.offset, lease: r.lease) }
            let prior = r.source == .retry ? group.priorAttempts(gp, r.source, r.offset) : 0
            if prior + Int(slot.attempt) >= group.maxAttempts(gp) {
                _ = try gp.withWindow(r.source) { w in try w.park(r.offset, lease: r.lease) }
                try await group.deadLetter(gp, r.source, r.offset, reason: reason ?? "nacked \(prior + Int(slot.attempt)) times")
            } else if delay <= 0 {
                try gp.withWindow(r.source) { w in try w.release(r.offset, lease: r.lease) }
            } else {
                _ = try gp.withWindow(r.source) { w in try w.park(r.offset, lease: r.lease) }
                try await group.retry(
                    gp, r.source, r.offset, attempts: prior + Int(slot.attempt), at: group.clock.now() + delay, reason: reason)
            }
            return nil
        }
    }

    /// Gives messages back unprocessed (a worker shutting down with messages it had not
    /// started): delivered again at once, the delivery not counted as an attempt.
    func release(member: UInt64, _ receipts: [DeliveryReceipt]) async throws -> [BrokerError?] {
        try await settle(member: member, receipts) { _, gp, r in
            try gp.withWindow(r.source) { w in try w.handBack(r.offset, lease: r.lease) }
            return nil
        }
    }

    func extend(member: UInt64, _ receipts: [DeliveryReceipt], by milliseconds: Int64) async throws -> [BrokerError?] {
        let deadline = clock.now() + max(1, milliseconds)
        return try await settle(member: member, receipts) { _, gp, r in
            try gp.withWindow(r.source) { w in try w.extend(r.offset, lease: r.lease, to: deadline) }
            return nil
        }
    }

    /// Gives up on messages: straight to the dead-letter topic with `reason`.
    func term(member: UInt64, _ receipts: [DeliveryReceipt], reason: String) async throws -> [BrokerError?] {
        try await settle(member: member, receipts) { group, gp, r in
            _ = try gp.withWindow(r.source) { w in try w.park(r.offset, lease: r.lease) }
            try await group.deadLetter(gp, r.source, r.offset, reason: reason)
            return nil
        }
    }

    // MARK: - Moving messages out (retry, dead letter)

    /// Moves a parked message into the wheel, bound for this group's retry log; acks it
    /// here once the wheel has it. On failure it waits for delivery again.
    /// `parked`: a snooze (`snooze`) rather than a retry — its headers edited by `edit`, its
    /// outcome recorded as waiting. Returns the message's timer position.
    @discardableResult
    func retry(
        _ gp: GroupPartition, _ source: DeliverySource, _ offset: Int64, attempts: Int, at due: Int64, reason: String?,
        parked: (callback: Bool, edit: ([RecordHeader]) -> [RecordHeader])? = nil
    ) async throws -> Int64 {
        do {
            guard let stored = try gp.record(source, at: offset), stored.offset == offset else {
                throw BrokerError(.storage, "message at offset \(offset) can no longer be read")
            }
            let r = stored.record
            var (headers, meta) = RecordMeta.split(r.headers)
            let p = gp.partition
            headers.append(RecordHeader(name: ReservedHeader.id, value: ReservedHeader.messageID(meta.idKind ?? .ready, meta.idKind == nil ? offset : meta.idValue)))
            headers.append(RecordHeader(name: ReservedHeader.publishedAt, value: ReservedHeader.int64(meta.publishedAt ?? r.timestamp)))
            headers.append(RecordHeader(name: ReservedHeader.dueAt, value: ReservedHeader.int64(meta.dueAt ?? r.timestamp)))
            headers.append(RecordHeader(name: ReservedHeader.attempts, value: ReservedHeader.uint32(UInt32(clamping: attempts))))
            if let origin = source == .ready ? offset : meta.readyOffset {
                headers.append(RecordHeader(name: ReservedHeader.readyOffset, value: ReservedHeader.int64(origin)))
            }
            if let reason { headers.append(RecordHeader(name: ReservedHeader.error, value: Array(reason.utf8))) }
            if let parked { headers = parked.edit(headers) }
            let timerIDs = try await p.scheduleRetry([
                ScheduledMessage(dueAt: due, publishedAt: meta.publishedAt ?? r.timestamp, destination: id, key: r.key, headers: headers, body: r.body)
            ])
            gp.retriesScheduled += 1
            outcomes.record(
                parked.map { .waiting(timerID: timerIDs[0], until: due, callback: $0.callback) }
                    ?? .retrying(timerID: timerIDs[0], nextAttemptAt: due, attempts: attempts, lastError: reason),
                for: .init(partition: gp.key, readyOffset: source == .ready ? offset : meta.readyOffset ?? offset))
            try finish(gp, source, offset)
            return timerIDs[0]
        } catch {
            gp.withWindow(source) { $0.unpark(offset) }
            throw error
        }
    }

    /// Moves a parked message to the group's dead-letter topic, then acks it here.
    func deadLetter(_ gp: GroupPartition, _ source: DeliverySource, _ offset: Int64, reason: String) async throws {
        do {
            guard let host else { throw BrokerError(.closed, "the broker is closed") }
            guard let stored = try gp.record(source, at: offset), stored.offset == offset else {
                throw BrokerError(.storage, "message at offset \(offset) can no longer be read")
            }
            let r = stored.record
            let (user, meta) = RecordMeta.split(r.headers)
            let attempts = meta.attempts + Int(gp.withWindow(reading: source) { $0.slot(offset)?.attempt } ?? 0)
            let p = gp.partition
            var headers = user.filter { !$0.name.hasPrefix("chime-dlq-") }
            func text(_ name: String, _ value: String) { headers.append(RecordHeader(name: name, value: Array(value.utf8))) }
            text(ReservedHeader.dlqTopic, p.topic)
            text(ReservedHeader.dlqPartition, "\(p.index)")
            // The ready-log offset, also for a message that failed in the retry log.
            text(ReservedHeader.dlqOffset, "\(source == .ready ? offset : meta.readyOffset ?? offset)")
            text(ReservedHeader.dlqAttempts, "\(attempts)")
            text(ReservedHeader.dlqError, reason)
            // Not as `chime-id`: that would be read as the dead letter's own id, a value of
            // another topic's partition, and two letters could share it.
            let original = MessageID(topicID: p.topicID, partition: p.index, kind: meta.idKind ?? .ready, value: meta.idKind == nil ? offset : meta.idValue)
            text(ReservedHeader.dlqID, original.description)
            headers.append(RecordHeader(name: ReservedHeader.publishedAt, value: ReservedHeader.int64(meta.publishedAt ?? r.timestamp)))
            try await host.publishInternal(topic: dlqTopic, messages: [OutgoingMessage(key: r.key, headers: headers, body: r.body)])
            try await flowChildEnded(gp, source, offset, succeeded: false, detail: Array(reason.utf8), record: r)
            gp.deadLettered += 1
            outcomes.record(.dead(reason: reason, attempts: attempts), for: .init(partition: gp.key, readyOffset: source == .ready ? offset : meta.readyOffset ?? offset))
            logger.info("message dead-lettered", metadata: ["partition": "\(p.topic)/\(p.index)", "offset": "\(offset)", "reason": "\(reason)"])
            try finish(gp, source, offset)
            if let origin = source == .ready ? offset : meta.readyOffset, host.occurrenceWatch.watches(group: name) {
                host.occurrenceWatch.settled(group: name, partition: gp.key, offsets: [origin])
            }
        } catch {
            gp.withWindow(source) { $0.unpark(offset) }
            throw error
        }
    }

    /// Acks a message moved elsewhere, durably in the journal.
    func finish(_ gp: GroupPartition, _ source: DeliverySource, _ offset: Int64) throws {
        _ = gp.withWindow(source) { $0.markAcked(offset) }
        _ = try gp.journal.append([(source, offset)], now: clock.now())
    }

    // MARK: - Re-drive

    /// Puts a dead letter of this group back in front of the group: into the original
    /// partition's retry path with its attempts reset, so only this group sees it again.
    func redrive(_ letter: Delivery) async throws {
        guard let host else { throw BrokerError(.closed, "the broker is closed") }
        func header(_ name: String) -> String? {
            letter.headers.first { $0.name == name }.map { String(decoding: $0.value, as: UTF8.self) }
        }
        guard let topic = header(ReservedHeader.dlqTopic), let partition = header(ReservedHeader.dlqPartition).flatMap(Int.init) else {
            throw BrokerError(.invalidArgument, "dead letter \(letter.id) has no original topic/partition headers")
        }
        let partitions = try await host.partitions(ofTopic: topic, create: false)
        guard partition < partitions.count else { throw BrokerError(.badPartition, "\(topic) has no partition \(partition)") }
        let p = partitions[partition]
        var headers = letter.headers.filter { !$0.name.hasPrefix("chime-dlq-") }
        let original = header(ReservedHeader.dlqID).flatMap(MessageID.init) ?? letter.id
        headers.append(RecordHeader(name: ReservedHeader.id, value: ReservedHeader.messageID(original.kind, original.value)))
        headers.append(RecordHeader(name: ReservedHeader.publishedAt, value: ReservedHeader.int64(letter.publishedAt)))
        headers.append(RecordHeader(name: ReservedHeader.attempts, value: ReservedHeader.uint32(0)))
        if let origin = header(ReservedHeader.dlqOffset).flatMap(Int64.init) {
            headers.append(RecordHeader(name: ReservedHeader.readyOffset, value: ReservedHeader.int64(origin)))
        }
        if parts[PartitionKey(topicID: p.topicID, partition: p.index)] == nil { _ = try open(p) }
        try await p.scheduleRetry([
            ScheduledMessage(dueAt: clock.now(), publishedAt: letter.publishedAt, destination: id, key: letter.key, headers: headers, body: letter.body)
        ])
        parts[PartitionKey(topicID: p.topicID, partition: p.index)]?.retriesScheduled += 1
    }

    // MARK: - Job status

    /// The state in this group of the message first stored at `readyOffset` of partition
    /// `key` (its id `id`): nil when the group has never consumed that partition.
    func jobState(_ key: PartitionKey, readyOffset: Int64, id: MessageID) async throws -> JobState? {
        try checkNotRetired()
        guard let gp = try parts[key] ?? openIfStored(key) else { return nil }
        try await expireLeases(now: clock.now())
        if let slot = gp.ready.slot(readyOffset) {
            switch slot.state {
            case .leased: return .running(member: slot.member, attempt: Int(slot.attempt), leaseDeadline: slot.deadline)
            case .waiting, .parked: return .ready
            case .acked: break
            }
        } else if readyOffset >= gp.ready.readEnd {
            return .ready
        }
        // Acked here: a success, or moved out — to the wheel for a retry, or to the dead letters.
        switch outcomes[.init(partition: key, readyOffset: readyOffset)] {
        case .dead(let reason, let attempts):
            return .dead(reason: reason, attempts: attempts)
        case .aborted(let whileRunning, let reason):
            return .aborted(whileRunning: whileRunning, reason: reason)
        case .waiting(let timerID, let until, let callback):
            switch try await gp.partition.scheduledState(timerID) {
            case .pending: return .waiting(until: until, callback: callback)
            // Being handed to the retry log: the copy there now is an earlier parking's,
            // acked when this one was parked — not this job's end.
            case .beingFired: return .ready
            case .cancelled, .gone: break
            }
            // Fired: waiting in the retry log, running, or done. (A completed callback's move
            // to now is followed by `callbackCompleted`.)
            guard let copy = try MessageSearch.find(in: gp.retryLog.log, from: gp.retry.frontier, last: true, { RecordMeta.split($0.headers).meta.readyOffset == readyOffset }) else {
                return .succeeded
            }
            guard let slot = gp.retry.slot(copy.offset) else { return copy.offset >= gp.retry.readEnd ? .ready : .succeeded }
            switch slot.state {
            case .leased: return .running(member: slot.member, attempt: RecordMeta.split(copy.record.headers).meta.attempts + Int(slot.attempt), leaseDeadline: slot.deadline)
            case .waiting, .parked: return .ready
            case .acked: return .succeeded
            }
        case .retrying(let timerID, let nextAttemptAt, let attempts, let lastError):
            switch try await gp.partition.scheduledState(timerID) {
            case .pending, .cancelled:
                return .retrying(nextAttemptAt: nextAttemptAt, attempts: attempts, lastError: lastError)
            case .beingFired:
                return .retrying(nextAttemptAt: nil, attempts: attempts, lastError: lastError)
            case .gone:
                break
            }
            // Fired into the retry log: waiting there, running, or done (a further retry or
            // dead letter would have replaced this outcome). Not in the log from its
            // frontier on: acked.
            guard let copy = try MessageSearch.find(in: gp.retryLog.log, from: gp.retry.frontier, last: true, { RecordMeta.split($0.headers).meta.readyOffset == readyOffset }) else {
                return .succeeded
            }
            guard let slot = gp.retry.slot(copy.offset) else {
                return copy.offset >= gp.retry.readEnd ? .retrying(nextAttemptAt: nil, attempts: attempts, lastError: lastError) : .succeeded
            }
            switch slot.state {
            case .leased: return .running(member: slot.member, attempt: attempts + Int(slot.attempt), leaseDeadline: slot.deadline)
            case .waiting, .parked: return .retrying(nextAttemptAt: nil, attempts: attempts, lastError: lastError)
            case .acked: return .succeeded
            }
        case nil:
            if let letter = try await deadLetter(of: id) { return letter }
            return readyOffset >= gp.ackedSinceOpenFrom && !outcomes.forgotSome ? .succeeded : .finished
        }
    }

    /// The group's state in partition `key` as stored, when it has consumed it before (after
    /// a restart, nothing is open until a member joins).
    func openIfStored(_ key: PartitionKey) throws -> GroupPartition? {
        guard let p = host?.partition(key), Directory.isDirectory(Partition.groupDirectory(p.directory, group: id)) else { return nil }
        return try open(p)
    }

    /// The dead letter of message `id` in this group's dead-letter topic, if there is one
    /// (found by its `chime-dlq-id` header).
    private func deadLetter(of id: MessageID) async throws -> JobState? {
        guard let host else { throw BrokerError(.closed, "the broker is closed") }
        let partitions: [Partition]
        do {
            partitions = try await host.partitions(ofTopic: dlqTopic, create: false)
        } catch let error as BrokerError where error.code == .unknownTopic {
            return nil
        }
        let wanted = Array(id.description.utf8)
        for p in partitions {
            guard let letter = try MessageSearch.find(in: p.ready.log, from: p.ready.log.startOffset, { $0.headers.contains { $0.name == ReservedHeader.dlqID && $0.value == wanted } }) else { continue }
            func text(_ name: String) -> String? {
                letter.record.headers.first { $0.name == name }.map { String(decoding: $0.value, as: UTF8.self) }
            }
            return .dead(reason: text(ReservedHeader.dlqError) ?? "", attempts: text(ReservedHeader.dlqAttempts).flatMap(Int.init) ?? 0)
        }
        return nil
    }

    // MARK: - Upkeep and stats

    /// Snapshots every partition's committed position and trims its journal and retry log.
    func checkpoint() throws {
        for gp in parts.values {
            try gp.journal.snapshot(ready: gp.ready, retry: gp.retry, journalEnd: gp.journal.log.endOffset)
            try gp.retryLog.log.removeSegments(endingAtOrBefore: gp.retry.frontier)
        }
    }

    /// Writes every partition's last snapshot and closes its journal; returns what failed.
    func close() -> [String] {
        var problems: [String] = []
        for gp in parts.values {
            do {
                try gp.journal.snapshot(ready: gp.ready, retry: gp.retry, journalEnd: gp.journal.log.endOffset)
                try gp.journal.log.close()
            } catch {
                logger.error("closing group state failed", metadata: ["partition": "\(gp.key)", "error": "\(error)"])
                problems.append("group \(name), partition \(gp.key): \(error)")
            }
        }
        parts = [:]
        layout += 1
        return problems
    }

    /// Forgets a deleted topic's partitions.
    func drop(topicID: UInt32) {
        outcomes.drop(topicID: topicID)
        for key in parts.keys where key.topicID == topicID {
            guard let gp = parts.removeValue(forKey: key) else { continue }
            try? gp.journal.log.close()
            // Its series go with the topic.
            gp.delivered.destroy()
            gp.acked.destroy()
        }
        layout += 1
    }

    /// The broker's count of the settings change applied last.
    private var appliedChange: UInt64 = 0

    /// Applies settings change number `change` (numbered by the broker), unless a later
    /// one was applied already.
    func update(settings: GroupSettings, change: UInt64) async throws {
        guard change > appliedChange else { return }
        appliedChange = change
        // The bucket is built from the settings: a new rate or burst (or none) must replace
        // it, else the old limit would hold until the broker restarts.
        if settings.rateLimit != self.settings.rateLimit || settings.rateBurst != self.settings.rateBurst {
            bucket = settings.rateLimit.map { TokenBucket(rate: $0, burst: settings.rateBurst, now: clock.now()) }
        }
        if settings.keyRateLimit != self.settings.keyRateLimit || settings.keyRateBurst != self.settings.keyRateBurst {
            keyRates = settings.keyRateLimit.map { KeyRateLimiter(rate: $0, burst: settings.keyRateBurst) }
        }
        if settings.keyLimit != self.settings.keyLimit {
            for gp in parts.values {
                gp.withWindow(.ready) { $0.setKeyLimit(settings.keyLimit) }
                gp.withWindow(.retry) { $0.setKeyLimit(settings.keyLimit) }
            }
        }
        let modeChanged = settings.mode != self.settings.mode
        self.settings = settings
        if modeChanged {
            // Who may settle what changes with the mode: every lease ends and its message is
            // delivered again (the delivery counted as an attempt), as when partitions move.
            var revoked = 0
            for gp in parts.values {
                revoked += gp.withWindow(.ready) { $0.revokeAll() } + gp.withWindow(.retry) { $0.revokeAll() }
            }
            membership.setMode(settings.mode)
            try await rebalance()
            logger.info("group mode changed; leases revoked", metadata: ["mode": "\(settings.mode)", "leases": "\(revoked)"])
        }
    }

    /// What the clock says happened since the last call, for the read-only calls: silent
    /// members leave, expired leases end (as any other call would have done first).
    private func catchUp() async throws {
        let now = clock.now()
        try await expireMembers(now: now)
        try await expireLeases(now: now)
    }

    func members() async throws -> [GroupMemberInfo] {
        try await catchUp()
        return membership.members.values.sorted { $0.id < $1.id }.map { m in
            GroupMemberInfo(
                id: m.id, name: m.name, topics: m.topics.sorted(), lastSeen: m.lastSeen,
                assignment: membership.partitions(of: m.id).map { TopicPartition(topic: topicNames[$0.topicID] ?? "?", partition: $0.partition) })
        }
    }

    func stats() async throws -> GroupStats {
        try await catchUp()
        // After a restart no member may have joined yet: the positions on disk still count.
        for p in host?.partitionsWithState ?? [] where parts[PartitionKey(topicID: p.topicID, partition: p.index)] == nil {
            if Directory.isDirectory(Partition.groupDirectory(p.directory, group: id)) {
                topicNames[p.topicID] = p.topic
                _ = try open(p)
            }
        }
        let partitions = parts.values.sorted { $0.key < $1.key }.map { gp in
            let readyEnd = gp.partition.ready.log.endOffset
            let retryEnd = gp.retryLog.log.endOffset
            return GroupPartitionStats(
                topic: gp.partition.topic, partition: gp.partition.index, committed: gp.ready.frontier,
                ackedAboveCommitted: gp.ready.ackedAbove, lag: max(0, readyEnd - gp.ready.frontier - Int64(gp.ready.ackedAbove)),
                inFlight: gp.ready.inFlight + gp.retry.inFlight,
                // In the wheel, plus in the retry log and not acked. A retry fired into the
                // log but not read yet is still in `retriesScheduled`: count it once.
                retriesPending: max(0, gp.retriesScheduled - Int(max(0, retryEnd - gp.retry.readEnd)))
                    + Int(max(0, retryEnd - gp.retry.frontier - Int64(gp.retry.ackedAbove))),
                deadLettered: gp.deadLettered,
                owner: membership.assignment[gp.key],
                trackedBytes: (gp.ready.span + gp.retry.span) * DeliveryWindow.bytesPerSlot
                    + (gp.ready.inFlight + gp.retry.inFlight) * DeliveryWindow.bytesPerTimer)
        }
        return GroupStats(name: name, generation: membership.generation, members: membership.members.count, partitions: partitions)
    }
}

public struct GroupMemberInfo: Sendable, Equatable {
    public var id: UInt64
    public var name: String
    public var topics: [String]
    public var lastSeen: Int64
    public var assignment: [TopicPartition]
}

public struct GroupPartitionStats: Sendable, Equatable {
    public var topic: String
    public var partition: Int
    /// Every ready-log offset below this is acked by the group.
    public var committed: Int64
    public var ackedAboveCommitted: Int
    /// Messages in the ready log the group has not acked.
    public var lag: Int64
    public var inFlight: Int
    /// Nacked messages waiting in the wheel or in the retry log (wheel part: since the broker started).
    public var retriesPending: Int
    /// Messages this group moved to its dead-letter topic since the broker started.
    public var deadLettered: Int
    public var owner: UInt64?
    /// Memory the group's delivery tracking uses for this partition.
    public var trackedBytes: Int
}

public struct GroupStats: Sendable, Equatable {
    public var name: String
    public var generation: Int64
    public var members: Int
    public var partitions: [GroupPartitionStats]
}

/// The bytes a fetch has handed out so far against its limit (each delivery counted by
/// `Delivery.sizeBound`): a delivery is made only if it fits, except the first.
struct FetchSize {
    let limit: Int
    private(set) var bytes = 0

    init(limit: Int) {
        precondition(limit > 0, "a fetch's byte limit is positive")
        self.limit = limit
    }

    var isFull: Bool { bytes >= limit }

    func fits(_ size: Int) -> Bool { size <= limit - bytes }

    mutating func add(_ size: Int) {
        assert(size > 0)
        bytes += size
    }
}
