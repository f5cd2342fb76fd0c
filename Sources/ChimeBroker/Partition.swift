import ChimeStore
import ChimeWheel
import CoreMetrics
import DequeModule
import Logging
import Synchronization

/// One partition of a topic: its ready log, its timer log and wheel, its producer state.
/// Publishes are serialised through this actor (one writer); the firing loop, its own
/// actor, appends fired messages to the ready log and to groups' retry logs.
///
/// Directory: `ready/` (segments), `ready.mark`, `timer/`, `wheel.checkpoint`,
/// `producers.snapshot`, and per group `groups/g<id>/` (`acks/`, `acks.snapshot`,
/// `retry/`, `retry.mark`).
actor Partition {
    nonisolated let topic: String
    nonisolated let topicID: UInt32
    nonisolated let index: Int
    nonisolated let directory: String
    nonisolated let ready: FiredLog
    nonisolated let timerLog: TimerLog
    nonisolated let sink: PartitionFireSink
    /// Due times must be below this (the wheel's range).
    nonisolated let dueLimit: Int64
    /// `chime_published_messages_total{topic}`: stepped once per publish call, by the
    /// messages it stored (duplicates not counted), once they are durable.
    private let published: Counter
    /// The firing loop's series, labelled with this topic.
    private let firingMetrics: FiringMetrics
    let loop: FiringLoop
    /// This partition's schedules (`Partition+Schedules.swift`).
    let schedules: ScheduleTable
    /// The flows spawned by jobs of this partition (`Partition+Flows.swift`): opened when the
    /// partition has any, created by its first spawn.
    var flowTable: FlowTable?
    /// Flows whose continuation is being published (not twice at once).
    var flowsClosing: Set<Int64> = []
    let flowConfiguration: LogConfiguration
    let fileCalls: FileSystemCalls
    let plannerCache = SchedulePlannerCache()
    /// The broker's record of occurrences out (overlap policies, fixed delay).
    let watch: OccurrenceWatch
    /// Whether a group has settled a message (acked or dead-lettered): asked at recovery
    /// about watched schedules' last occurrences; nil when it cannot say.
    nonisolated let settledCheck = Mutex<(@Sendable (MessageID, String) async -> Bool?)?>(nil)
    let scheduleMetrics: ScheduleMetrics
    /// Occurrences the sink handed over, in order, waiting for their next ones to be
    /// planned, and the signal that wakes the planning task for them.
    private let firedOccurrences = FiredOccurrences()
    private let occurrences: AsyncStream<Void>
    private let occurrencesContinuation: AsyncStream<Void>.Continuation
    private var planning: Task<Void, Never>?
    private var settings: TopicSettings
    private var producers: ProducerState
    private let producerExpiry: Int64
    let clock: any WheelClock
    let logger: Logger
    private var running: Task<Void, Never>?
    var closed = false
    /// Checkpoints in progress, and `close()` waiting for them: a checkpoint suspends
    /// between its writes, and one still writing after a close would put files back into
    /// the directory a topic deletion is removing.
    private var checkpointsRunning = 0
    /// What the last checkpoint wrote covered: the ready and timer log ends and the fired
    /// logs' durable offsets. A checkpoint that finds the same writes nothing: at 10,000
    /// partitions, rewriting every snapshot and mark each second would be 30,000 atomic file
    /// writes a second for partitions where nothing happened.
    private var checkpointed: [Int64] = []
    /// When the last checkpoint that wrote was taken (the clock's time at opening before any).
    private var lastCheckpoint: Int64
    /// When a checkpoint first found the logs moved past `checkpointed` (nil: not since).
    private var changedSince: Int64?
    private var checkpointsDone: [CheckedContinuation<Void, Never>] = []
    /// Publishes take turns from their dedup and producer checks until their ids are
    /// remembered: scheduling into the wheel suspends this actor, and a publish running in
    /// that gap would not see the keys and sequences of the one suspended.
    private var publishing = false
    private var publishQueue: Deque<CheckedContinuation<Void, Never>> = []

    struct Stats: Sendable, Equatable {
        var readyStart: Int64
        var readyEnd: Int64
        var readyBytes: Int64
        var scheduled: Int
        var nextDue: Int64?
        var timerBytes: Int64
    }

    static func groupDirectory(_ partitionDirectory: String, group: UInt32) -> String { partitionDirectory + "/groups/g\(group)" }

    /// False once a write or sync of its ready or timer log failed: it refuses appends
    /// until the broker restarts (health reports it degraded).
    nonisolated var acceptsAppends: Bool { !ready.log.isFailed && !timerLog.isFailed }

    /// `groups`: the ids of the groups `meta.json` names. A group directory of another id
    /// (a group whose creation never reached `meta.json`) is removed, never adopted: a
    /// later group given that id would start from its acks and skip messages.
    init(
        topic: String, topicID: UInt32, index: Int, directory: String, settings: TopicSettings, geometry: WheelGeometry,
        groups: Set<UInt32>, options: BrokerOptions, watch: OccurrenceWatch, logger: Logger
    ) throws {
        self.topic = topic
        self.topicID = topicID
        self.index = index
        self.directory = directory
        self.settings = settings
        self.dueLimit = geometry.limit
        self.clock = options.clock
        published = Counter(label: "chime_published_messages_total", dimensions: [("topic", topic)])
        firingMetrics = FiringMetrics(topic: topic)
        var logger = logger
        logger[metadataKey: "partition"] = "\(topic)/\(index)"
        self.logger = logger
        try Directory.create(directory + "/groups")
        let calls = options.fileSystem
        let readyLog = try RecordLog.open(
            directory: directory + "/ready", configuration: Self.readyConfiguration(settings, options), calls: calls, logger: logger)
        ready = try FiredLog(log: readyLog, markPath: directory + "/ready.mark", logger: logger)
        let groupLogConfiguration = LogConfiguration(
            segmentBytes: options.groupSegmentBytes, durability: options.durability, validateRecordsOnAppend: false)
        let openRetryLog: @Sendable (UInt32) throws -> FiredLog = { [directory, logger] group in
            let dir = Partition.groupDirectory(directory, group: group)
            try Directory.createChild(dir)  // not in a partition deleted meanwhile (see GroupPartition)
            let log = try RecordLog.open(directory: dir + "/retry", configuration: groupLogConfiguration, calls: calls, logger: logger)
            return try FiredLog(log: log, markPath: dir + "/retry.mark", logger: logger)
        }
        sink = PartitionFireSink(
            ready: ready, partition: PartitionKey(topicID: topicID, partition: index), watch: watch, openRetryLog: openRetryLog, clock: options.clock,
            logger: logger)
        self.watch = watch
        // Every group's retry log takes part in deciding which hand-over was applied last.
        for name in try Directory.entries(directory + "/groups") where name.hasPrefix("g") {
            guard let id = UInt32(name.dropFirst()) else { continue }
            if groups.contains(id) {
                sink.register(id, try openRetryLog(id))
            } else {
                logger.warning("removing the state of a group meta.json does not name", metadata: ["directory": "\(name)"])
                try Directory.removeTree(directory + "/groups/" + name)
            }
        }
        timerLog = try TimerLog.open(
            directory: directory + "/timer",
            configuration: LogConfiguration(segmentBytes: options.timerSegmentBytes, durability: options.durability), calls: calls, logger: logger)
        let wheel = try TimingWheel(
            log: timerLog, geometry: geometry, checkpointPath: directory + "/wheel.checkpoint", destination: sink, logger: logger)
        // Broker time never starts behind what a wheel had reached: a wall clock stepped back
        // while the broker was down would make every delay given from now on fire early.
        let held = options.clock.holdAtLeast(wheel.time)
        if held > 1_000 {
            logger.warning(
                "the wall clock is behind the time this partition's wheel had reached; broker time holds at the wheel's (absolute due times are converted by the difference)",
                metadata: ["movedForwardMs": "\(held)"])
        }
        loop = FiringLoop(
            wheel: wheel, clock: options.clock,
            checkpointPolicy: options.firing == .automatic ? options.checkpoints : nil,
            fireLead: options.firing == .automatic ? options.fireLead : 0, metrics: firingMetrics, logger: logger)
        producerExpiry = options.producerExpiryMilliseconds
        lastCheckpoint = options.clock.now()
        let clock = options.clock
        schedules = try ScheduleTable(
            directory: directory + "/schedules",
            configuration: LogConfiguration(segmentBytes: options.groupSegmentBytes, durability: options.durability, validateRecordsOnAppend: false),
            calls: calls, clock: { clock.now() }, logger: logger)
        flowConfiguration = LogConfiguration(segmentBytes: options.groupSegmentBytes, durability: options.durability, validateRecordsOnAppend: false)
        fileCalls = calls
        if Directory.isDirectory(directory + "/flows") {
            flowTable = try FlowTable(directory: directory + "/flows", configuration: flowConfiguration, calls: calls, clock: { clock.now() }, logger: logger)
        }
        scheduleMetrics = ScheduleMetrics(topic: topic)
        (occurrences, occurrencesContinuation) = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
        sink.occurrencesFired.withLock { [occurrencesContinuation, firedOccurrences] in
            $0 = { fired in
                firedOccurrences.add(fired)
                occurrencesContinuation.yield()
            }
        }
        producers = try Self.restoreProducers(
            directory: directory, ready: readyLog, timer: timerLog, topicID: topicID, partition: index,
            window: settings.dedupWindowMilliseconds, now: options.clock.now(), logger: logger)
    }

    static func readyConfiguration(_ settings: TopicSettings, _ options: BrokerOptions) -> LogConfiguration {
        LogConfiguration(
            segmentBytes: options.readySegmentBytes, durability: options.durability,
            retention: RetentionPolicy(maxAgeMilliseconds: settings.retentionMilliseconds, maxBytes: settings.retentionBytes),
            validateRecordsOnAppend: false)
    }

    /// The snapshot, then every publish after it: ready batches (producer stamps in their
    /// headers, dedup keys in their records) and scheduled messages in the timer log.
    private static func restoreProducers(
        directory: String, ready: RecordLog, timer: TimerLog, topicID: UInt32, partition: Int, window: Int64, now: Int64, logger: Logger
    ) throws -> ProducerState {
        let snapshot = ProducerState.read(from: directory + "/producers.snapshot", topicID: topicID, partition: partition, now: now)
        var state = snapshot?.state ?? ProducerState()
        func id(_ kind: MessageID.Kind, _ value: Int64) -> MessageID {
            MessageID(topicID: topicID, partition: partition, kind: kind, value: value)
        }
        try ready.scan(from: max(ready.startOffset, snapshot?.readyOffset ?? 0)) { batches, from in
            for b in batches where b.nextOffset > from {
                if b.header.producerId >= 0 {
                    state.restore(producer: b.header.producerId, lastSequence: b.header.baseSequence &+ Int32(b.recordCount - 1), seenAt: b.header.maxTimestamp)
                }
                for r in try b.records() where r.record.headers.contains(where: { $0.name == ReservedHeader.dedup }) {
                    let meta = RecordMeta.split(r.record.headers).meta
                    guard let key = meta.dedup else { continue }
                    // Windows are counted from the publish; a fired record carries its publish time.
                    let published = meta.publishedAt ?? r.record.timestamp
                    let recordID = meta.idKind.map { id($0, meta.idValue) } ?? id(.ready, r.offset)
                    // An expired key would only be pruned again (every schedule occurrence
                    // carries one: millions after a long run).
                    guard published.saturatingAdd(window) > now else { continue }
                    state.remember(KeyHash.of(key), expiry: published.saturatingAdd(window), id: recordID)
                }
            }
        }
        try timer.scan(from: max(timer.startOffset, snapshot?.timerPosition ?? 0)) { entries, from in
            for e in entries where e.kind == .message && e.position >= from {
                guard let m = try? e.message(), m.destination == 0 else { continue }
                let meta = RecordMeta.split(m.headers).meta
                if let p = meta.producer { state.restore(producer: p.id, lastSequence: p.sequence &+ Int32(p.count - 1), seenAt: m.publishedAt) }
                if let key = meta.dedup {
                    state.remember(KeyHash.of(key), expiry: m.publishedAt.saturatingAdd(window), id: id(.scheduled, e.position))
                }
            }
        }
        logger.debug("producer state restored", metadata: ["producers": "\(state.producers.count)", "dedupKeys": "\(state.dedup.count)"])
        return state
    }

    /// Recovers the schedules, then starts the firing loop and the planning of occurrences.
    func run() async {
        guard running == nil, planning == nil, !closed else { return }
        await recoverSchedules()
        guard running == nil, !closed else { return }
        let stream = occurrences
        planning = Task { [weak self] in
            for await _ in stream { await self?.planAfterFiredOccurrences() }
        }
        let loop = self.loop
        running = Task { [logger] in
            do { try await loop.run() } catch { logger.error("firing loop ended", metadata: ["error": "\(error)"]) }
        }
    }

    // MARK: - Publish

    /// Stores messages: due now (or no due time) into one ready batch, later ones into the
    /// wheel. Returns one outcome per message, in order. Durable (as the policy says) on return.
    func publish(
        _ messages: [OutgoingMessage], producer: ProducerStamp?, asBroker: Bool = false, stored: (@Sendable () -> Void)? = nil
    ) async throws -> [PublishedMessage] {
        guard !closed else { throw BrokerError(.closed, "partition \(topic)/\(index) is closed") }
        try Self.check(messages, maxMessageBytes: settings.maxMessageBytes, dueLimit: dueLimit, asBroker: asBroker)
        return try await publishInTurn(producer: producer, count: messages.count, asBroker: asBroker, stored: stored) { now in
            let dues = try Self.brokerDueTimes(messages, now: now, wallNow: clock.wallNow(), dueLimit: dueLimit)
            var out = [PublishedMessage](repeating: PublishedMessage(id: nil, partition: index, duplicate: true), count: messages.count)
            producers.prune(now: now)
            // Dedup within the window, and within this batch.
            var stored: [Int] = []
            stored.reserveCapacity(messages.count)
            var firstInBatch: [UInt64: Int] = [:]
            var sameBatch: [(duplicate: Int, first: Int)] = []
            for (k, m) in messages.enumerated() {
                if let key = m.dedupKey {
                    let h = KeyHash.of(key)
                    if let id = producers.duplicate(of: h, now: now) {
                        out[k].id = id
                        continue
                    }
                    if let first = firstInBatch[h] {
                        sameBatch.append((k, first))
                        continue
                    }
                    firstInBatch[h] = k
                }
                stored.append(k)
            }
            let immediate = stored.filter { (dues[$0] ?? now) <= now }
            let scheduled = stored.filter { (dues[$0] ?? now) > now }
            // The ready batch first: no suspension between the checks above and its append.
            var readyEnd: Int64? = nil
            if !immediate.isEmpty {
                var builder = RecordBatchBuilder(
                    producerId: scheduled.isEmpty ? (producer?.producerID ?? -1) : -1,
                    baseSequence: scheduled.isEmpty ? (producer.map { $0.sequence &+ Int32(messages.count - immediate.count) } ?? -1) : -1,
                    capacity: immediate.reduce(64) { $0 + messages[$1].size + 32 })
                for k in immediate {
                    let m = messages[k]
                    var headers = m.headers
                    if let key = m.dedupKey { headers.append(RecordHeader(name: ReservedHeader.dedup, value: key)) }
                    builder.append(Record(timestamp: now, key: m.key, headers: headers, body: m.body))
                }
                // A producer's batch keeps its own sequence range: baseSequence is chosen so
                // that the last record's sequence is the publish's last.
                let result: AppendResult
                do {
                    result = try ready.log.append(try builder.build())
                } catch {
                    throw BrokerError.wrapping(error, "appending to \(topic)/\(index)")
                }
                for (n, k) in immediate.enumerated() {
                    let id = MessageID(topicID: topicID, partition: index, kind: .ready, value: result.baseOffset + Int64(n))
                    out[k] = PublishedMessage(id: id, partition: index, duplicate: false)
                    if let key = messages[k].dedupKey {
                        producers.remember(KeyHash.of(key), expiry: now.saturatingAdd(settings.dedupWindowMilliseconds), id: id)
                    }
                }
                readyEnd = result.nextOffset
            }
            if !scheduled.isEmpty {
                var batch: [ScheduledMessage] = []
                batch.reserveCapacity(scheduled.count)
                for (n, k) in scheduled.enumerated() {
                    let m = messages[k]
                    var headers = m.headers
                    if let key = m.dedupKey { headers.append(RecordHeader(name: ReservedHeader.dedup, value: key)) }
                    if let producer, n == scheduled.count - 1 {
                        headers.append(RecordHeader(name: ReservedHeader.producer, value: ReservedHeader.int64(producer.producerID)
                            + ReservedHeader.uint32(UInt32(bitPattern: producer.sequence)) + ReservedHeader.uint32(UInt32(messages.count))))
                    }
                    batch.append(ScheduledMessage(dueAt: dues[k]!, publishedAt: now, destination: 0, key: m.key, headers: headers, body: m.body))
                }
                let ids: [Int64]
                do {
                    ids = try await loop.schedule(batch)
                } catch {
                    throw BrokerError.wrapping(error, "scheduling into \(topic)/\(index)")
                }
                for (n, k) in scheduled.enumerated() {
                    let id = MessageID(topicID: topicID, partition: index, kind: .scheduled, value: ids[n])
                    out[k] = PublishedMessage(id: id, partition: index, duplicate: false)
                    if let key = messages[k].dedupKey {
                        producers.remember(KeyHash.of(key), expiry: now.saturatingAdd(settings.dedupWindowMilliseconds), id: id)
                    }
                }
            }
            // In-batch dedup duplicates point at the message stored first.
            for (d, first) in sameBatch { out[d].id = out[first].id }
            return Stored(outcomes: out, readyEnd: readyEnd, timerEnd: scheduled.isEmpty ? nil : timerLog.endOffset, count: stored.count)
        }
    }

    enum SequenceClaim {
        /// A repeat of one of the producer's last publishes: its answer, nothing to store.
        case repeated([PublishedMessage])
        /// Fresh (or unstamped): the producer's sequence before it, to roll back to if the
        /// publish fails.
        case claimed(previous: Int32?)
    }

    /// The idempotence check, made holding the publish turn: a repeat is answered from
    /// memory with the first ids, a gap is refused, a fresh stamp is recorded at once so
    /// that the publish behind it in the turn queue sees it.
    private func claimSequence(_ producer: ProducerStamp?, count: Int, now: Int64) throws -> SequenceClaim {
        guard let producer else { return .claimed(previous: nil) }
        switch producers.check(producer, count: count) {
        case .fresh: break
        case .duplicate(let ids):
            var out = [PublishedMessage](repeating: PublishedMessage(id: nil, partition: index, duplicate: true), count: count)
            if let ids { for (k, id) in ids.enumerated() where k < out.count { out[k].id = id } }
            return .repeated(out)
        case .gap(let expected):
            throw BrokerError(
                .sequenceGap, "producer \(producer.producerID) sent sequence \(producer.sequence) to \(topic)/\(index), expected \(expected)")
        }
        let previous = producers.producers[producer.producerID]?.lastSequence
        producers.record(producer, count: count, ids: nil, now: now)
        return .claimed(previous: previous)
    }

    /// How far a client-encoded record's timestamp (the client's wall clock) may be from the
    /// broker's wall clock.
    static let maxTimestampSkewMilliseconds: Int64 = 3_600_000

    /// Stores a record batch a client encoded (protocol version 2, `publishRecords`):
    /// messages due now, without dedup keys. The batch is checked — CRC, structure, every
    /// record decoded for its size and headers — and appended as it came; its producer id
    /// and base sequence are the idempotence stamp. One outcome per record, in order.
    func publishRecords(_ bytes: [UInt8]) async throws -> [PublishedMessage] {
        guard !closed else { throw BrokerError(.closed, "partition \(topic)/\(index) is closed") }
        let (batch, records) = try Self.checkClientBatch(
            bytes, limits: ready.log.configuration.limits, maxMessageBytes: settings.maxMessageBytes, receivedAt: clock.wallNow())
        let count = records.count
        let producer = batch.header.producerId >= 0 ? ProducerStamp(producerID: batch.header.producerId, sequence: batch.header.baseSequence) : nil
        return try await publishInTurn(producer: producer, count: count, asBroker: false) { _ in
            let result: AppendResult
            do {
                result = try ready.log.append(bytes)
            } catch {
                throw BrokerError.wrapping(error, "appending to \(topic)/\(index)")
            }
            let out = (0..<count).map {
                PublishedMessage(id: MessageID(topicID: topicID, partition: index, kind: .ready, value: result.baseOffset + Int64($0)), partition: index, duplicate: false)
            }
            return Stored(outcomes: out, readyEnd: result.nextOffset, timerEnd: nil, count: count)
        }
    }

    /// What a publish stored while it held the turn: one outcome per message, the ends of
    /// the logs it appended to (nil: untouched), and how many messages are new.
    private struct Stored {
        var outcomes: [PublishedMessage]
        var readyEnd: Int64?
        var timerEnd: Int64?
        var count: Int
    }

    /// The one path of every publish. `stored`, if given, is called once the messages are
    /// appended, in order after every publish before them, and before they are synced.
    /// Takes the partition's publish turn; claims the
    /// producer's sequence (a repeat gets the answer its first copy got); lets `store`
    /// append, at broker time `now`, while no other publish can; records the producer; ends
    /// the turn so that publishes behind it share the sync; then waits until what was
    /// appended is as durable as an acknowledgement needs. The broker's own publishes (dead
    /// letters, re-drives) are moves: the group acks the original once this returns, so the
    /// copy is on disk first whatever the policy lets a client's publish skip. When anything
    /// throws nothing is acknowledged, and the producer's sequence is rolled back so a
    /// retry is not taken for a duplicate.
    private func publishInTurn(
        producer: ProducerStamp?, count: Int, asBroker: Bool, stored onStored: (@Sendable () -> Void)? = nil,
        store: (_ now: Int64) async throws -> Stored
    ) async throws -> [PublishedMessage] {
        await takePublishTurn()
        var holdingTurn = true
        defer { if holdingTurn { endPublishTurn() } }
        guard !closed else { throw BrokerError(.closed, "partition \(topic)/\(index) is closed") }
        let now = clock.now()
        let previousSequence: Int32?
        switch try claimSequence(producer, count: count, now: now) {
        case .repeated(let answer): return answer
        case .claimed(let previous): previousSequence = previous
        }
        do {
            let stored = try await store(now)
            if let producer { producers.record(producer, count: count, ids: stored.outcomes.map(\.id), now: now) }
            holdingTurn = false
            endPublishTurn()
            onStored?()
            do {
                if let end = stored.readyEnd {
                    if asBroker { try await ready.log.waitUntilDurable(end) } else { try await ready.log.waitForAcknowledgement(end) }
                }
                if let end = stored.timerEnd {
                    if asBroker { try await timerLog.waitUntilDurable(end) } else { try await timerLog.waitForAcknowledgement(end) }
                }
            } catch {
                throw BrokerError.wrapping(error, "syncing \(topic)/\(index)")
            }
            published.increment(by: stored.count)
            return stored.outcomes
        } catch {
            if let producer { producers.rollBack(producer.producerID, to: previousSequence) }
            throw error
        }
    }

    /// Checks a record batch a client encoded against `ClientBatchRules`: CRC, structure,
    /// at most `Broker.maxRecordsPerPublish` records, timestamps within
    /// `maxTimestampSkewMilliseconds` of `receivedAt`, sizes, and no header in the broker's
    /// namespace. Returns the batch and its records.
    static func checkClientBatch(
        _ bytes: [UInt8], limits: BatchLimits, maxMessageBytes: Int, receivedAt: Int64
    ) throws -> (batch: RecordBatch, records: [StoredRecord]) {
        let rules = ClientBatchRules(
            limits: limits, maxRecords: Broker.maxRecordsPerPublish, maxTimestampSkewMilliseconds: maxTimestampSkewMilliseconds,
            maxMessageBytes: maxMessageBytes, reservedHeaderPrefix: ReservedHeader.prefixString,
            headersAllowedWithThePrefix: ReservedHeader.settableByProducers)
        do {
            return try rules.check(bytes, receivedAt: receivedAt)
        } catch {
            throw BrokerError(error)
        }
    }

    /// Refuses a publish with a message over the size limit, a due time past the wheel's
    /// range (found here, not by the wheel after the ready part is stored), or a producer
    /// header in the broker's `chime-` namespace.
    static func check(_ messages: [OutgoingMessage], maxMessageBytes: Int, dueLimit: Int64, asBroker: Bool) throws {
        for m in messages {
            try check(m.due, dueLimit: dueLimit)
            guard m.size <= maxMessageBytes else {
                throw BrokerError(.messageTooLarge, "a message of \(m.size) bytes is over the topic's limit of \(maxMessageBytes)")
            }
            for h in m.headers where !asBroker && ReservedHeader.isForbiddenToProducers(h.name) {
                throw BrokerError(.invalidArgument, "header \"\(h.name)\": the chime- prefix is reserved for the broker")
            }
        }
    }

    /// Refuses a delay outside 0...`Broker.maxDelayMilliseconds` and a time past the
    /// wheel's range.
    static func check(_ due: Due?, dueLimit: Int64) throws {
        switch due {
        case .at(let time) where time >= dueLimit:
            throw BrokerError(.invalidArgument, "due time \(time) ms is past the wheel's range (below \(dueLimit))")
        case .after(let ms) where ms < 0 || ms > Broker.maxDelayMilliseconds:
            throw BrokerError(.invalidArgument, "a delay is 0...\(Broker.maxDelayMilliseconds) ms, not \(ms)")
        default:
            break
        }
    }

    /// Each message's due time in broker time (nil: due now), received at `now` while the
    /// wall clock reads `wallNow`; refused, before anything is stored, if one lands past
    /// the wheel's range.
    static func brokerDueTimes(_ messages: [OutgoingMessage], now: Int64, wallNow: Int64, dueLimit: Int64) throws -> [Int64?] {
        try messages.map { m in
            guard let due = m.due?.brokerTime(now: now, wallNow: wallNow) else { return nil }
            guard due < dueLimit else {
                throw BrokerError(.invalidArgument, "due time \(due) ms (broker time) is past the wheel's range (below \(dueLimit))")
            }
            return due
        }
    }

    private func takePublishTurn() async {
        guard publishing else {
            publishing = true
            return
        }
        await withCheckedContinuation { publishQueue.append($0) }
    }

    /// Hands the turn to the next waiting publish (which then holds it), or frees it.
    private func endPublishTurn() {
        if let next = publishQueue.popFirst() { next.resume() } else { publishing = false }
    }

    // MARK: - Scheduled messages

    /// `dueAt`: its due time, when known — needed once the entry's own segment was reclaimed
    /// by compaction (the wheel finds it by its slot then).
    func cancel(_ id: MessageID, dueAt: Int64? = nil) async throws {
        try checkScheduled(id)
        do {
            try await loop.cancel(id.value, dueAt: dueAt)
        } catch {
            throw BrokerError.wrapping(error, "cancelling \(id)")
        }
        try await timerLog.waitForAcknowledgement(timerLog.endOffset)
    }

    func reschedule(_ id: MessageID, to due: Due) async throws -> MessageID {
        try checkScheduled(id)
        // Checked here: the wheel's refusal of a bad time would read as an unknown id.
        try Self.check(due, dueLimit: dueLimit)
        let dueAt = due.brokerTime(now: clock.now(), wallNow: clock.wallNow())
        guard dueAt >= 0, dueAt < dueLimit else {
            throw BrokerError(.invalidArgument, "due time \(dueAt) ms (broker time) is outside 0..<\(dueLimit)")
        }
        let moved: Int64
        do {
            moved = try await loop.reschedule(id.value, to: dueAt)
        } catch {
            throw BrokerError.wrapping(error, "rescheduling \(id)")
        }
        try await timerLog.waitForAcknowledgement(timerLog.endOffset)
        return MessageID(topicID: topicID, partition: index, kind: .scheduled, value: moved)
    }

    /// Where the message at timer position `position` stands in the wheel (a scheduled
    /// message's id, or a retry's position).
    func scheduledState(_ position: Int64) async throws -> TimingWheel.MessageState {
        do {
            return try await loop.state(of: position)
        } catch {
            throw BrokerError.wrapping(error, "looking up \(topic)/\(index) timer position \(position)")
        }
    }

    /// Scheduled messages due before each of `bounds` (broker time), and the earliest ones.
    func upcoming(before bounds: [Int64], earliest: Int, maxEntries: Int) async -> TimingWheel.Upcoming {
        await loop.upcoming(before: bounds, earliest: earliest, maxEntries: maxEntries)
    }

    private func checkScheduled(_ id: MessageID) throws {
        guard id.kind == .scheduled else {
            throw BrokerError(.unknownMessage, "message \(id) was published for immediate delivery; only scheduled messages can be cancelled or rescheduled")
        }
    }

    /// A group's retry: into the wheel, destined for that group's retry log. Synced under
    /// every policy: the group acks the original once this returns (a move, not a publish).
    /// Returns their timer positions.
    @discardableResult
    func scheduleRetry(_ messages: [ScheduledMessage]) async throws -> [Int64] {
        do {
            let ids = try await loop.schedule(messages)
            try await timerLog.waitUntilDurable(timerLog.endOffset)
            return ids
        } catch {
            throw BrokerError.wrapping(error, "scheduling retries into \(topic)/\(index)")
        }
    }

    // MARK: - Upkeep

    /// Fires what is due now (manual firing).
    func fireDue() async throws -> Int {
        let fired = try await loop.fireDue()
        await planAfterFiredOccurrences()
        return fired
    }

    /// Plans the next occurrences of those fired so far (the planning task's work; a
    /// manual `fireDue` does it before returning).
    func planAfterFiredOccurrences() async {
        let fired = firedOccurrences.take()
        if !fired.isEmpty { await occurrencesFired(fired) }
    }

    /// Producer snapshot, wheel checkpoint (unless the running loop takes its own), fire
    /// marks, ready-log retention. The snapshot and marks are written when anything changed
    /// since the last ones — under `policy` (the broker's periodic pass) only once the
    /// change is worth a checkpoint (`CheckpointPolicy`).
    func checkpoint(wheel: Bool = true, policy: CheckpointPolicy? = nil) async throws {
        // A closed partition wrote its last state when it closed (its topic may be going).
        guard !closed else { return }
        if let flows = flowTable, flows.worthCompacting, flowsClosing.isEmpty {
            // Outcome records pile up, one per child; finished flows go after a week.
            do { try flows.compact() } catch { logger.error("compacting the flow table failed", metadata: ["error": "\(error)"]) }
        }
        if schedules.worthCompacting {
            // The table grows by a planned record per occurrence; rewritten as its rows.
            do { try schedules.compact() } catch { logger.error("compacting the schedule table failed", metadata: ["error": "\(error)"]) }
        }
        checkpointsRunning += 1
        defer {
            checkpointsRunning -= 1
            if checkpointsRunning == 0 {
                let waiting = checkpointsDone
                checkpointsDone = []
                for c in waiting { c.resume() }
            }
        }
        let now = clock.now()
        // Taken between publishes: one suspended in the wheel has recorded its sequence
        // before its messages reach the timer log, and a snapshot claiming it would make
        // the producer's retry after a crash a "duplicate" of a publish never stored.
        await takePublishTurn()
        producers.prune(now: now)
        let forgotten = producers.forgetProducers(silentSince: now - producerExpiry)
        if forgotten > 0 { logger.debug("forgot silent producers", metadata: ["count": "\(forgotten)"]) }
        let state = producers
        let (readyEnd, timerEnd) = (ready.log.endOffset, timerLog.endOffset)
        endPublishTurn()
        let (firedLogs, covered) = coverage(readyEnd: readyEnd, timerEnd: timerEnd)
        let changed: Bool
        if forgotten > 0 {
            changed = true
        } else if let policy {
            let growth = Self.growth(from: checkpointed, to: covered)
            if growth > 0 && changedSince == nil { changedSince = now }
            changed = policy.isDue(now: now, last: lastCheckpoint, appended: growth, changedSince: changedSince ?? now)
        } else {
            changed = covered != checkpointed
        }
        // Atomic file writes with their fsyncs run on a background thread, not on a
        // cooperative one that requests need.
        if changed {
            if ready.log.configuration.durability == .always {
                try await ready.log.waitUntilDurable(readyEnd)
                try await timerLog.waitUntilDurable(timerEnd)
            } else {
                // Forced syncs (the policy did not make them): on a background thread.
                let (readyLog, timerLog) = (ready.log, timerLog)
                try await ExecutorPool.background.perform {
                    try readyLog.flush()
                    try timerLog.flush()
                }
            }
            let (path, topicID, index) = (directory + "/producers.snapshot", topicID, index)
            try await ExecutorPool.background.perform {
                try state.write(to: path, readyOffset: readyEnd, timerPosition: timerEnd, topicID: topicID, partition: index)
            }
        }
        if wheel || running == nil { try await loop.checkpoint() }
        if changed {
            try await ExecutorPool.background.perform { for log in firedLogs { try log.saveMark() } }
            checkpointed = covered
            lastCheckpoint = now
            changedSince = nil
        }
        _ = try ready.log.enforceRetention(nowMilliseconds: now)
    }

    /// Bytes the logs grew by between two coverages (`coverage`); a log that appeared
    /// since (a group's retry log) counts whole.
    static func growth(from old: [Int64], to new: [Int64]) -> Int64 {
        var total: Int64 = 0
        for (i, end) in new.enumerated() {
            // Logs only grow (a cut after damage happens at opening, before any checkpoint).
            total = total.saturatingAdd(i < old.count ? max(0, end - old[i]) : max(0, end))
        }
        return total
    }

    /// The fired logs, in a fixed order, and what a checkpoint taken now covers (compared
    /// with `checkpointed`).
    private func coverage(readyEnd: Int64, timerEnd: Int64) -> (firedLogs: [FiredLog], covered: [Int64]) {
        let firedLogs = sink.allLogs.sorted { $0.key < $1.key }.map(\.value)
        return (firedLogs, [readyEnd, timerEnd] + firedLogs.map(\.log.durableOffset))
    }

    func update(settings: TopicSettings) { self.settings = settings }

    func stats() -> Stats {
        let wheel = loop.gauges
        return Stats(
            readyStart: ready.log.startOffset, readyEnd: ready.log.endOffset, readyBytes: ready.log.totalBytes,
            // The wheel's next slot can hold only cancels: nothing is due then.
            scheduled: wheel.pending, nextDue: wheel.pending > 0 ? wheel.nextDue : nil, timerBytes: timerLog.totalBytes)
    }

    /// Removes this topic's metric series from the backend: after a deletion `/metrics`
    /// no longer lists the topic (a topic made again under the name starts new series).
    nonisolated func forgetMetrics() {
        published.destroy()
        firingMetrics.destroy()
        scheduleMetrics.destroy()
    }

    /// Stops the firing loop (it writes a last checkpoint), then closes every log. Returns
    /// what could not be written or closed (a stop that could not save its state says so).
    @discardableResult
    func close() async -> [String] {
        guard !closed else { return [] }
        var problems: [String] = []
        func failed(_ what: String, _ error: any Error) {
            logger.error("\(what) failed at close", metadata: ["error": "\(error)"])
            problems.append("\(topic)/\(index): \(what): \(error)")
        }
        closed = true
        // Planning in progress ends before the logs close; later occurrences plan nothing.
        occurrencesContinuation.finish()
        if let planning { await planning.value }
        if checkpointsRunning > 0 { await withCheckedContinuation { checkpointsDone.append($0) } }
        // Let a publish holding the turn finish its appends before the producer snapshot
        // below (see `checkpoint`); those waiting for it see `closed` and stop.
        await takePublishTurn()
        endPublishTurn()
        if let running {
            running.cancel()
            await running.value
            if let error = await loop.finalCheckpointError { problems.append("\(topic)/\(index): wheel checkpoint: \(error)") }
        } else {
            do { _ = try await loop.checkpoint() } catch { failed("wheel checkpoint", error) }
        }
        // What the last checkpoint wrote still holds for an idle partition: its snapshot and
        // marks are not written again (a broker of 10,000 partitions stops in seconds).
        let (firedLogs, covered) = coverage(readyEnd: ready.log.endOffset, timerEnd: timerLog.endOffset)
        // A log that failed holds what may never have reached the disk: no mark or snapshot
        // may claim it, and the stop is not clean.
        let failedLogs = !acceptsAppends
        if failedLogs { problems.append("\(topic)/\(index): its log failed earlier; its state is left for the next start to recover") }
        let unchanged = covered == checkpointed || failedLogs
        for log in firedLogs {
            if !unchanged {
                do { try log.saveMark() } catch { failed("fire mark", error) }
            }
            do { try log.log.close() } catch { failed("closing a log", error) }
        }
        if !unchanged {
            do {
                try producers.write(
                    to: directory + "/producers.snapshot", readyOffset: ready.log.endOffset, timerPosition: timerLog.endOffset, topicID: topicID,
                    partition: index)
            } catch {
                failed("producer snapshot", error)
            }
        }
        do { try timerLog.close() } catch { failed("closing the timer log", error) }
        do { try schedules.close() } catch { failed("closing the schedule table", error) }
        do { try flowTable?.close() } catch { failed("closing the flow table", error) }
        return problems
    }
}
