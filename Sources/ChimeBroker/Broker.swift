#if canImport(Glibc)
import Glibc
#endif
import ChimeStore
import ChimeWheel
import Foundation
import Logging
import Synchronization

/// A topic as listed.
public struct TopicInfo: Sendable, Equatable {
    public var name: String
    public var id: UInt32
    public var settings: TopicSettings
    public var wheel: String
}

/// One partition's counts.
public struct PartitionStats: Sendable, Equatable {
    public var topic: String
    public var partition: Int
    /// Offsets of the ready log: first kept, and next to be written.
    public var readyStart: Int64
    public var logEnd: Int64
    public var readyBytes: Int64
    /// Scheduled messages (and group retries) pending in the wheel.
    public var scheduled: Int
    /// Start of the next wheel slot due, ms since the epoch; nil when nothing is scheduled.
    public var nextDue: Int64?
    public var timerBytes: Int64
}

/// The engine: topics of partitions, consumer groups, scheduled delivery. No sockets;
/// the server (and tests, and benchmarks) call it directly. Safe to call from any task:
/// each partition and each group is an actor, and work on different partitions runs in
/// parallel.
public final class Broker: GroupHost, @unchecked Sendable {
    public let options: BrokerOptions
    /// Bumped when something may have become deliverable: long-polling fetches wait on it.
    public let changes = ChangeSignal()
    let logger: Logger
    /// Where each schedule lives (`Broker+Schedules.swift`).
    let schedulesDirectory = ScheduleDirectory()
    /// Occurrences out, awaiting their group (overlap policies, fixed delay).
    let occurrenceWatch = OccurrenceWatch()
    /// The partitions of `__locks` (`Broker+Locks.swift`).
    let lockPartitions: [LockPartition]
    private let lockFD: Int32
    private let state: Mutex<State>
    private let maintenance: Mutex<Task<Void, Never>?> = Mutex(nil)

    private struct TopicState {
        var info: TopicInfo
        var slotBits: Int
        var levels: Int
        var partitions: [Partition]
        var roundRobin = 0
    }

    private struct State {
        var topics: [String: TopicState] = [:] { didSet { sortedTopics = nil } }
        /// `listTopics`' answer while `topics` has not changed (a listing of 10,000 topics
        /// sorted them on every page of the dashboard).
        var sortedTopics: [TopicInfo]?
        var topicsByID: [UInt32: String] = [:]
        var groups: [String: (id: UInt32, settings: GroupSettings, actor: ConsumerGroup?)] = [:]
        var nextTopicID: UInt32 = 1
        var nextGroupID: UInt32 = 1
        /// Counts settings changes: a group applies a change only if it is newer than the
        /// last it applied (two configurations race to their group's actor).
        var settingsChanges: UInt64 = 0
        var closed = false
        /// Topics whose deletion is under way: their names stay taken until the old
        /// partitions are closed and their directory removed, or the deletion would remove
        /// the files of a topic created again meanwhile (and the closing partitions would
        /// write their snapshots into its directory).
        var deleting: Set<String> = []
        /// Topics being created, by partition count: their names are taken and their
        /// partitions count against the limits while their files are opened outside the lock.
        var creating: [String: Int] = [:]
    }

    /// `meta.json`: topics and groups (docs/formats.md).
    private struct Metadata: Codable {
        struct Topic: Codable {
            var name: String
            var id: UInt32
            var settings: TopicSettings
            var wheelSlotBits: Int
            var wheelLevels: Int
        }
        struct Group: Codable {
            var name: String
            var id: UInt32
            var settings: GroupSettings
        }
        var version = 1
        var nextTopicID: UInt32
        var nextGroupID: UInt32
        var topics: [Topic]
        var groups: [Group]
    }

    private var metadataPath: String { options.directory + "/meta.json" }

    private init(options: BrokerOptions, logger: Logger, lockFD: Int32, state: State, lockPartitions: [LockPartition]) {
        self.lockPartitions = lockPartitions
        self.options = options
        self.logger = logger
        self.lockFD = lockFD
        self.state = Mutex(state)
    }

    /// Opens (or creates) the broker's data directory: every topic, partition and group
    /// as they were. Partitions catch up on everything that fell due while it was closed.
    public static func open(_ options: BrokerOptions, logger: Logger) async throws -> Broker {
        try Directory.create(options.directory + "/topics")
        let lockPath = options.directory + "/.lock"
        let fd = Glibc.open(lockPath, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw BrokerError(.storage, "cannot open \(lockPath): \(String(cString: strerror(errno)))") }
        // A lock just released can look held for a moment (a process forked elsewhere may
        // not have closed its inherited descriptor yet): ask again for up to a second.
        var locked = flock(fd, LOCK_EX | LOCK_NB) == 0
        for _ in 0..<50 where !locked {
            try? await Task.sleep(for: .milliseconds(20))
            locked = flock(fd, LOCK_EX | LOCK_NB) == 0
        }
        guard locked else {
            Glibc.close(fd)
            throw BrokerError(.storage, "another Chime process is using \(options.directory)")
        }
        var state = State()
        var topics: [Metadata.Topic] = []
        do {
            if let bytes = try FileBytes.read(options.directory + "/meta.json") {
                let meta = try JSONDecoder().decode(Metadata.self, from: Data(bytes))
                state.nextTopicID = meta.nextTopicID
                state.nextGroupID = meta.nextGroupID
                topics = meta.topics
                for g in meta.groups { state.groups[g.name] = (g.id, g.settings, nil) }
            }
        } catch {
            Glibc.close(fd)
            throw BrokerError(.storage, "cannot read \(options.directory)/meta.json: \(error)")
        }
        let leftovers: [String]
        let listed = topics.count
        do {
            (topics, leftovers) = try finishDeletions(topics, directory: options.directory, logger: logger)
        } catch {
            Glibc.close(fd)
            throw BrokerError.wrapping(error, "finishing topic deletions in \(options.directory)/deleting")
        }
        let groupIDs = Set(state.groups.values.map(\.id))
        let lockPartitions: [LockPartition]
        do {
            lockPartitions = try openLockPartitions(options, logger: logger)
        } catch {
            Glibc.close(fd)
            throw BrokerError.wrapping(error, "opening the lock partitions in \(options.directory)/locks")
        }
        let broker = Broker(options: options, logger: logger, lockFD: fd, state: state, lockPartitions: lockPartitions)
        do {
            for t in topics {
                var partitions: [Partition] = []
                do {
                    try broker.openPartitions(
                        name: t.name, id: t.id, settings: t.settings, geometry: WheelGeometry(slotBits: t.wheelSlotBits, levels: t.wheelLevels),
                        groups: groupIDs, into: &partitions)
                } catch {
                    for p in partitions { await p.close() }
                    throw error
                }
                broker.state.withLock {
                    $0.topics[t.name] = TopicState(
                        info: TopicInfo(name: t.name, id: t.id, settings: t.settings, wheel: "\(WheelGeometry(slotBits: t.wheelSlotBits, levels: t.wheelLevels))"),
                        slotBits: t.wheelSlotBits, levels: t.wheelLevels, partitions: partitions)
                    $0.topicsByID[t.id] = t.name
                }
            }
        } catch {
            await broker.close()
            throw error
        }
        // Deletions a crash or a full disk left: meta.json without them, then their remains.
        do {
            if topics.count != listed { try broker.state.withLock { try broker.saveMetadata($0) } }
            for path in leftovers { try Directory.removeTree(path) }
        } catch {
            logger.warning("could not finish deleting topics; the next start tries again", metadata: ["error": "\(error)"])
        }
        await broker.loadScheduleDirectory(broker.allPartitions)
        broker.actOnSettledOccurrences()
        if options.firing == .automatic {
            await broker.start()
        } else {
            // An owner driving time itself fires through `fireDue`; schedules recover now.
            for p in broker.allPartitions { await p.recoverSchedules() }
        }
        logger.info("broker open", metadata: ["directory": "\(options.directory)", "topics": "\(topics.count)"])
        return broker
    }

    /// Opens a topic's partitions into `opened`: on a failure the ones already open are
    /// there for the caller to close.
    private func openPartitions(
        name: String, id: UInt32, settings: TopicSettings, geometry: WheelGeometry, groups: Set<UInt32>, into opened: inout [Partition]
    ) throws {
        for p in 0..<settings.partitions {
            let partition: Partition
            do {
                partition = try Partition(
                    topic: name, topicID: id, index: p, directory: options.directory + "/topics/\(name)/\(p)", settings: settings,
                    geometry: geometry, groups: groups, options: options, watch: occurrenceWatch, logger: logger)
            } catch let error as StoreError where error.isOutOfDescriptors {
                throw BrokerError(
                    .limitReached, "opening \(name)/\(p): the process is out of file descriptors (raise its limit, ulimit -n, or lower maxPartitions)",
                    underlying: error)
            }
            // Fired messages (and retries) in a log: fetches waiting for them look again.
            partition.sink.delivered.withLock { [changes] in $0 = { changes.bump() } }
            partition.settledCheck.withLock { $0 = { [weak self] id, group in await self?.isSettled(id, in: group) } }
            opened.append(partition)
        }
    }

    /// Starts the firing loops and the periodic checkpoint.
    private func start() async {
        for p in allPartitions { await p.run() }
        await resumeFlows()
        let policy = options.checkpoints
        let clock = options.clock
        let task = Task { [weak self] in
            while !Task.isCancelled {
                await clock.sleep(until: clock.now() + policy.interval)
                guard !Task.isCancelled, let self else { return }
                do { try await self.checkpoint(wheels: false, policy: policy) } catch {
                    self.logger.error("checkpoint failed", metadata: ["error": "\(error)"])
                }
            }
        }
        maintenance.withLock { $0 = task }
    }

    var allPartitions: [Partition] { state.withLock { $0.topics.values.flatMap(\.partitions) } }

    /// Writes `meta.json` from `s`; call under the state lock. Refused once the broker is
    /// closed: the directory lock is released then, and another broker may own the file.
    private func saveMetadata(_ s: State) throws {
        guard !s.closed else {
            throw BrokerError(.closed, "the broker is closed: \(metadataPath) is no longer this process's to write")
        }
        let meta = Metadata(
            nextTopicID: s.nextTopicID, nextGroupID: s.nextGroupID,
            topics: s.topics.values.sorted { $0.info.id < $1.info.id }.map {
                .init(name: $0.info.name, id: $0.info.id, settings: $0.info.settings, wheelSlotBits: $0.slotBits, wheelLevels: $0.levels)
            },
            groups: s.groups.sorted { $0.value.id < $1.value.id }.map { .init(name: $0.key, id: $0.value.id, settings: $0.value.settings) })
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        do {
            try Directory.writeAtomically(Array(try encoder.encode(meta)), to: metadataPath, calls: options.fileSystem)
        } catch {
            throw BrokerError.wrapping(error, "writing \(metadataPath)")
        }
    }

    // MARK: - Topics

    @discardableResult
    public func createTopic(_ name: String, settings: TopicSettings? = nil) throws -> TopicInfo {
        try Names.validate(name, what: "topic")
        let settings = settings ?? options.defaultTopic
        try settings.validate()
        return try create(name, settings)
    }

    /// Creates a topic in three steps, so that its files are made without holding the state
    /// lock every partition lookup takes: under the lock the name and an id are reserved;
    /// outside it the partitions are opened (directories, files, syncs); under the lock
    /// again the topic is recorded in meta.json and becomes visible. Recorded on disk
    /// before it is visible: a topic the metadata does not name would take acknowledged
    /// publishes and be gone after a restart. A failure at any step leaves nothing behind.
    private func create(_ name: String, _ settings: TopicSettings) throws -> TopicInfo {
        let (id, groups): (UInt32, Set<UInt32>) = try state.withLock { s in
            guard !s.closed else { throw BrokerError(.closed, "the broker is closed") }
            guard s.topics[name] == nil, s.creating[name] == nil else { throw BrokerError(.topicExists, "topic \(name) already exists") }
            guard !s.deleting.contains(name) else { throw BrokerError(.topicExists, "topic \(name) is being deleted; create it again once that is done") }
            try checkLimits(adding: settings.partitions, s)
            s.creating[name] = settings.partitions
            defer { s.nextTopicID += 1 }
            return (s.nextTopicID, Set(s.groups.values.map(\.id)))
        }
        let geometry = options.wheelGeometry
        let dir = options.directory + "/topics/\(name)"
        let info = TopicInfo(name: name, id: id, settings: settings, wheel: "\(geometry)")
        var partitions: [Partition] = []
        do {
            try? Directory.removeTree(dir)  // leftovers of a deletion cut short
            try openPartitions(name: name, id: id, settings: settings, geometry: geometry, groups: groups, into: &partitions)
            try state.withLock { s in
                guard !s.closed else { throw BrokerError(.closed, "the broker is closed") }
                var next = s
                next.creating[name] = nil
                next.topics[name] = TopicState(info: info, slotBits: geometry.slotBits, levels: geometry.levels, partitions: partitions)
                next.topicsByID[id] = name
                try saveMetadata(next)
                s = next
            }
        } catch {
            state.withLock { s in discard(name, opened: partitions, directory: dir, &s) }
            throw BrokerError.wrapping(error, "creating topic \(name)")
        }
        if options.firing == .automatic {
            Task { for p in partitions { await p.run() } }
        }
        logger.info("topic created", metadata: ["topic": "\(name)", "partitions": "\(settings.partitions)"])
        return info
    }

    /// Under the state lock: refuses a topic (or `adding` partitions) past the broker's limits.
    private func checkLimits(adding partitionCount: Int, _ s: State) throws {
        guard s.topics.count + s.creating.count + s.deleting.count < options.maxTopics else {
            throw BrokerError(.limitReached, "the broker holds \(s.topics.count) topics, its limit (maxTopics \(options.maxTopics))")
        }
        let held = s.topics.values.reduce(0) { $0 + $1.partitions.count } + s.creating.values.reduce(0, +)
        guard held + partitionCount <= options.maxPartitions else {
            throw BrokerError(
                .limitReached,
                "\(partitionCount) more partitions would make \(held + partitionCount), over the broker's limit (maxPartitions \(options.maxPartitions))")
        }
    }

    /// Under the state lock: a create that failed leaves nothing behind. Its partitions are
    /// closed and its directory removed; meanwhile the name counts as being deleted, so a
    /// second create cannot open files that are about to be removed.
    private func discard(_ name: String, opened: [Partition], directory: String, _ s: inout State) {
        s.creating[name] = nil
        s.deleting.insert(name)
        Task {
            for p in opened { await p.close() }
            try? Directory.removeTree(directory)
            _ = self.state.withLock { $0.deleting.remove(name) }
        }
    }

    public func listTopics() -> [TopicInfo] {
        state.withLock { s in
            if let sorted = s.sortedTopics { return sorted }
            let sorted = s.topics.values.map(\.info).sorted { $0.name < $1.name }
            s.sortedTopics = sorted
            return sorted
        }
    }

    /// The name of the topic with this id, nil when there is none (deleted, or never was).
    public func topicName(id: UInt32) -> String? {
        state.withLock { $0.topicsByID[id] }
    }

    /// Deletes a topic with all its messages, scheduled ones and group state — also on a
    /// full disk, where it is the one action that frees space. Its partitions close, then
    /// its directory moves aside to `deleting/<topic id>` (a rename needs no space), which
    /// decides the deletion; the files are removed, freeing their space; then `meta.json`
    /// is rewritten without the topic, and the empty directory goes. A start that finds
    /// `deleting/<id>` finishes what a crash or a failed rewrite left (`finishDeletions`).
    public func deleteTopic(_ name: String) async throws {
        let (removed, groups): (TopicState, [ConsumerGroup]) = try state.withLock { s in
            guard !s.closed else { throw BrokerError(.closed, "the broker is closed") }
            guard let t = s.topics.removeValue(forKey: name) else { throw BrokerError(.unknownTopic, "topic \(name) does not exist") }
            s.topicsByID[t.info.id] = nil
            s.deleting.insert(name)
            return (t, s.groups.values.compactMap(\.actor))
        }
        defer { _ = state.withLock { $0.deleting.remove(name) } }
        let id = removed.info.id
        for g in groups { await g.drop(topicID: id) }
        for p in removed.partitions {
            await p.close()
            p.forgetMetrics()
        }
        let directory = options.directory + "/topics/\(name)"
        let aside = options.directory + "/deleting/\(id)"
        var removing = aside
        do {
            try Directory.rename(directory, to: aside)
        } catch {
            // Not moved aside (the files stay where they were): removed in place, and a
            // crash before meta.json is rewritten brings the topic back, emptied.
            logger.warning("could not move a deleted topic aside; removing it in place", metadata: ["topic": "\(name)", "error": "\(error)"])
            removing = directory
        }
        if removing == aside {
            do {
                try Directory.sync(options.directory + "/topics")
                try Directory.sync(options.directory + "/deleting")
            } catch {
                // Moved; only the rename's durability is in doubt, and the removal below
                // (or the next start) settles it either way.
                logger.warning("syncing the move of a deleted topic failed", metadata: ["topic": "\(name)", "error": "\(error)"])
            }
        }
        do {
            for entry in try Directory.entries(removing) {
                // A broker closed meanwhile has released the data directory: what is left
                // is for the next start (`finishDeletions`), not for this process.
                if state.withLock({ $0.closed }) { throw BrokerError(.closed, "the broker closed during the deletion") }
                try Directory.removeTree(removing + "/" + entry)
            }
            try state.withLock { try saveMetadata($0) }
            try Directory.removeTree(removing)
        } catch {
            logger.warning(
                "topic deleted, but its cleanup is unfinished; the next start finishes it",
                metadata: ["topic": "\(name)", "error": "\(error)"])
            if removing == directory { throw BrokerError.wrapping(error, "deleting topic \(name)") }
        }
        logger.info("topic deleted", metadata: ["topic": "\(name)"])
    }

    /// At opening: the topics whose directory a deletion moved to `deleting/<id>` are
    /// dropped from `topics`. Returns the topics kept and the directories under `deleting/`
    /// to remove once `meta.json` no longer names them (`open` does both).
    private static func finishDeletions(
        _ topics: [Metadata.Topic], directory: String, logger: Logger
    ) throws -> (kept: [Metadata.Topic], leftovers: [String]) {
        let deleting = directory + "/deleting"
        guard (try? Directory.create(deleting)) != nil else {
            // A full disk at the first start of a data directory from before `deleting/`:
            // nothing can be waiting there, and deletions remove in place until it exists.
            logger.warning("cannot create \(deleting); topic deletions remove files in place")
            return (topics, [])
        }
        let names = try Directory.entries(deleting)
        let ids = Set(names.compactMap { UInt32($0) })
        let kept = topics.filter { !ids.contains($0.id) }
        for t in topics where ids.contains(t.id) {
            logger.notice("finishing the deletion of a topic", metadata: ["topic": "\(t.name)", "id": "\(t.id)"])
        }
        return (kept, names.map { deleting + "/" + $0 })
    }

    /// A topic's partitions; with `create`, a topic that does not exist is created with the
    /// defaults (when auto-create is on) — after `check` has accepted the request against
    /// those defaults, so that a refused request creates nothing.
    func partitions(ofTopic name: String, create: Bool) async throws -> [Partition] {
        try await partitions(ofTopic: name, create: create) { _, _ in }
    }

    func partitions(
        ofTopic name: String, create: Bool, check: (TopicSettings, WheelGeometry) throws -> Void
    ) async throws -> [Partition] {
        try Names.validate(name, what: "topic")
        while true {
            enum Next { case found([Partition]), wait, create }
            let next: Next = try state.withLock { s in
                if let t = s.topics[name] { return .found(t.partitions) }
                guard !s.closed else { throw BrokerError(.closed, "the broker is closed") }
                guard !s.deleting.contains(name) else { throw BrokerError(.unknownTopic, "topic \(name) is being deleted") }
                if s.creating[name] != nil { return .wait }
                // A group's dead-letter topic exists on demand even with auto-create off.
                let deadLetters = name.hasSuffix(".dlq") && s.groups[String(name.dropLast(4))] != nil
                guard create, options.autoCreateTopics || deadLetters else {
                    throw BrokerError(.unknownTopic, "topic \(name) does not exist (auto-create is off)")
                }
                return .create
            }
            switch next {
            case .found(let partitions):
                return partitions
            case .wait:
                // Another request is creating it: its files take milliseconds.
                try await Task.sleep(for: .milliseconds(1))
            case .create:
                try check(options.defaultTopic, options.wheelGeometry)
                do {
                    _ = try self.create(name, options.defaultTopic)
                } catch let error as BrokerError where error.code == .topicExists {
                    continue  // created by another request meanwhile
                }
            }
        }
    }

    var partitionsWithState: [Partition] { allPartitions }

    func partition(_ key: PartitionKey) -> Partition? {
        state.withLock { s in
            guard let name = s.topicsByID[key.topicID], let t = s.topics[name], key.partition >= 0, key.partition < t.partitions.count else { return nil }
            return t.partitions[key.partition]
        }
    }

    func topicSettings(_ topicID: UInt32) -> TopicSettings? {
        state.withLock { s in s.topicsByID[topicID].flatMap { s.topics[$0]?.info.settings } }
    }

    /// The partition a key goes to: FNV-1a 64 of the key bytes, modulo the partition count.
    public static func partition(forKey key: [UInt8], partitions: Int) -> Int {
        Int(KeyHash.of(key) % UInt64(partitions))
    }

    public func partitionStats(topic: String) async throws -> [PartitionStats] {
        guard let partitions = state.withLock({ $0.topics[topic]?.partitions }) else {
            throw BrokerError(.unknownTopic, "topic \(topic) does not exist")
        }
        var out: [PartitionStats] = []
        for p in partitions {
            let s = await p.stats()
            out.append(
                PartitionStats(
                    topic: topic, partition: p.index, readyStart: s.readyStart, logEnd: s.readyEnd, readyBytes: s.readyBytes,
                    scheduled: s.scheduled, nextDue: s.nextDue, timerBytes: s.timerBytes))
        }
        return out
    }

    // MARK: - Publish

    /// Publishes messages to a topic (created with the defaults if unknown and auto-create
    /// is on). Each message goes to `partition` if given, else by key hash, else by dedup
    /// key hash; keyless messages of one call go together to the next partition in turn.
    /// Returns one outcome per message, in order, once stored as durably as the policy says.
    /// `producer` makes the publish idempotent; it needs an explicit `partition`.
    public func publish(
        topic: String, _ messages: [OutgoingMessage], partition: Int? = nil, producer: ProducerStamp? = nil
    ) async throws -> [PublishedMessage] {
        defer { changes.bump() }
        return try await publish(topic: topic, messages, partition: partition, producer: producer, asBroker: false)
    }

    /// Publishes to one partition as `publish` does, and calls `stored` once the messages
    /// are appended — after every publish to the partition that was appended before them,
    /// before they are synced — so that a writer may append its next batch while this one
    /// syncs and keep its order. `stored` is not called if the publish fails before the
    /// append; the call still returns only once the messages are as durable as the policy says.
    public func publish(
        topic: String, _ messages: [OutgoingMessage], partition: Int, stored: @escaping @Sendable () -> Void
    ) async throws -> [PublishedMessage] {
        defer { changes.bump() }
        guard !messages.isEmpty else { return [] }
        guard messages.count <= Self.maxRecordsPerPublish else {
            throw BrokerError(.invalidArgument, "a publish of \(messages.count) messages is over the limit of \(Self.maxRecordsPerPublish)")
        }
        let partitions = try await partitions(ofTopic: topic, create: true) { settings, geometry in
            try Self.checkPartition(partition, of: topic, count: settings.partitions)
            try Partition.check(messages, maxMessageBytes: settings.maxMessageBytes, dueLimit: geometry.limit, asBroker: false)
        }
        try Self.checkPartition(partition, of: topic, count: partitions.count)
        return try await partitions[partition].publish(messages, producer: nil, asBroker: false, stored: stored)
    }

    /// Stores a record batch a client encoded in the store's format (messages due now,
    /// without dedup keys) in `partition`, as it came; its producer id and base sequence
    /// make it idempotent. One outcome per record, in order.
    public func publishRecords(topic: String, partition: Int, batch: [UInt8]) async throws -> [PublishedMessage] {
        defer { changes.bump() }
        let partitions = try await partitions(ofTopic: topic, create: true) { settings, _ in
            try Self.checkPartition(partition, of: topic, count: settings.partitions)
            _ = try Partition.checkClientBatch(
                batch, limits: Partition.readyConfiguration(settings, options).limits, maxMessageBytes: settings.maxMessageBytes,
                receivedAt: options.clock.wallNow())
        }
        try Self.checkPartition(partition, of: topic, count: partitions.count)
        return try await partitions[partition].publishRecords(batch)
    }

    private static func checkPartition(_ partition: Int, of topic: String, count: Int) throws {
        guard partition >= 0, partition < count else {
            throw BrokerError(.badPartition, "topic \(topic) has partitions 0...\(count - 1), not \(partition)")
        }
    }

    func publishInternal(topic: String, messages: [OutgoingMessage]) async throws {
        defer { changes.bump() }
        _ = try await publish(topic: topic, messages, partition: nil, producer: nil, asBroker: true)
    }

    func publish(
        topic: String, _ messages: [OutgoingMessage], partition: Int?, producer: ProducerStamp?, asBroker: Bool
    ) async throws -> [PublishedMessage] {
        guard !messages.isEmpty else { return [] }
        guard messages.count <= Self.maxRecordsPerPublish else {
            throw BrokerError(.invalidArgument, "a publish of \(messages.count) messages is over the limit of \(Self.maxRecordsPerPublish)")
        }
        if producer != nil && partition == nil {
            throw BrokerError(.invalidArgument, "an idempotent publish names its partition (sequences are per partition)")
        }
        let partitions = try await partitions(ofTopic: topic, create: true) { settings, geometry in
            if let partition { try Self.checkPartition(partition, of: topic, count: settings.partitions) }
            try Partition.check(messages, maxMessageBytes: settings.maxMessageBytes, dueLimit: geometry.limit, asBroker: asBroker)
        }
        if let partition {
            try Self.checkPartition(partition, of: topic, count: partitions.count)
            return try await partitions[partition].publish(messages, producer: producer, asBroker: asBroker)
        }
        let turn = state.withLock { s -> Int in
            s.topics[topic]?.roundRobin &+= 1
            return s.topics[topic]?.roundRobin ?? 0
        }
        // Keyless messages skip a partition whose logs failed (a sync error): it refuses
        // every append, and round robin would send every such publish's turn to it.
        let start = Int(UInt(bitPattern: turn) % UInt(partitions.count))
        let keyless = (0..<partitions.count).lazy.map { (start + $0) % partitions.count }.first { partitions[$0].acceptsAppends } ?? start
        var groups: [Int: [Int]] = [:]
        for (i, m) in messages.enumerated() {
            let p = (m.key ?? m.dedupKey).map { Self.partition(forKey: $0, partitions: partitions.count) } ?? keyless
            groups[p, default: []].append(i)
        }
        if groups.count == 1, let (p, _) = groups.first {
            return try await partitions[p].publish(messages, producer: nil, asBroker: asBroker)
        }
        // Checked before any partition stores its part: a call refused for one bad message
        // must store none of the others (each partition only sees its own part).
        if let settings = state.withLock({ $0.topics[topic]?.info.settings }) {
            try Partition.check(messages, maxMessageBytes: settings.maxMessageBytes, dueLimit: partitions[0].dueLimit, asBroker: asBroker)
        }
        var out = [PublishedMessage](repeating: PublishedMessage(id: nil, partition: 0, duplicate: false), count: messages.count)
        try await withThrowingTaskGroup(of: (Int, [PublishedMessage]).self) { tasks in
            for (p, indices) in groups {
                let part = indices.map { messages[$0] }
                tasks.addTask { (p, try await partitions[p].publish(part, producer: nil, asBroker: asBroker)) }
            }
            for try await (p, results) in tasks {
                for (k, i) in groups[p]!.enumerated() { out[i] = results[k] }
            }
        }
        return out
    }

    func partition(of id: MessageID) throws -> Partition {
        guard let p = partition(PartitionKey(topicID: id.topicID, partition: id.partition)) else {
            throw BrokerError(.unknownMessage, "message \(id): no such topic or partition")
        }
        return p
    }

    /// Cancels a scheduled message by the id its publish returned, until it fires.
    public func cancel(_ id: MessageID) async throws {
        try await partition(of: id).cancel(id)
    }

    /// Where the message `id` stands — a job's status: scheduled, cancelled, or per group
    /// (`group`, or every group that consumes its partition) ready, running, retrying,
    /// succeeded or dead. Not a hot path: it may read the partition's logs (a scheduled
    /// message that fired is looked up in the ready log by its due time, a retry in the
    /// group's retry log, a dead letter in the dead-letter topic), at most
    /// `MessageSearch.maxBytes` each. `unknownMessage` when the id names nothing, or
    /// nothing any more (removed by retention).
    public func jobStatus(_ id: MessageID, group: String? = nil) async throws -> [JobStatus] {
        let p = try partition(of: id)
        let groups = try group.map { [try self.group($0)] } ?? allGroups()
        let readyOffset: Int64
        switch try await locate(id, in: p) {
        case .inWheel(let state): return [JobStatus(group: state == .ready ? group : nil, state: state)]
        case .ready(let offset): readyOffset = offset
        }
        var out: [JobStatus] = []
        for g in groups {
            if let state = try await g.jobState(PartitionKey(topicID: id.topicID, partition: id.partition), readyOffset: readyOffset, id: id) {
                out.append(JobStatus(group: g.name, state: state))
            }
        }
        // Consumed by no group (yet): ready.
        return out.isEmpty ? [JobStatus(group: group, state: .ready)] : out
    }

    /// Every group, by name.
    func allGroups() -> [ConsumerGroup] {
        state.withLock { s in s.groups.keys.sorted() }.compactMap { try? group($0) }
    }

    /// Where a message is, by its id: in the ready log at an offset, or still in the wheel
    /// (or cancelled there) with the state that says so.
    enum Located: Equatable {
        case ready(Int64)
        case inWheel(JobState)
    }

    func locate(_ id: MessageID, in p: Partition) async throws -> Located {
        switch id.kind {
        case .ready:
            guard id.value >= 0, id.value < p.ready.log.endOffset else { throw BrokerError(.unknownMessage, "message \(id): no such offset") }
            guard id.value >= p.ready.log.startOffset else { throw BrokerError(.unknownMessage, "message \(id) was removed by the topic's retention") }
            return .ready(id.value)
        case .scheduled:
            let dueAt: Int64?
            switch try await p.scheduledState(id.value) {
            case .pending(let due): return .inWheel(.scheduled(dueAt: due))
            case .cancelled: return .inWheel(.cancelled)
            case .beingFired: return .inWheel(.ready)
            case .gone(let due): dueAt = due
            }
            // Fired (stamped with its due time in the ready log), or cancelled and past due.
            if let fired = try MessageSearch.find(in: p.ready.log, from: p.ready.log.startOffset, timestamp: dueAt, { MessageSearch.carries(id, $0) }) {
                return .ready(fired.offset)
            } else if let dueAt, p.ready.log.startOffset == 0 || (try? p.ready.log.read(from: p.ready.log.startOffset, maxBytes: 1))?.first.map({ $0.header.firstTimestamp <= dueAt }) == true {
                return .inWheel(.cancelled)
            } else {
                throw BrokerError(.unknownMessage, "message \(id) is no longer in the wheel or the ready log (removed by retention)")
            }
        }
    }

    /// Moves a scheduled message to another due time; returns its new id.
    public func reschedule(_ id: MessageID, to due: Due) async throws -> MessageID {
        try await partition(of: id).reschedule(id, to: due)
    }

    // MARK: - Groups

    /// Longest nack delay, lease or lease extension: a century. Relative times are added to
    /// the clock, and a larger one would overflow (a trap, not an error) or leave the wheel's range.
    public static let maxDelayMilliseconds: Int64 = 100 * 366 * 86_400_000

    /// Most messages one publish may carry, in a list or in a client-encoded batch (the
    /// protocol's `Publish.maxRecords` is the same number). Checked before anything is
    /// decompressed or allocated for them.
    public static let maxRecordsPerPublish = 100_000

    /// The group `name`; created with `settings` if there is none and `settings` are given.
    /// `exclusive`: one that exists already is `groupExists` (checked under the same lock
    /// as the creation, so two creates of one name cannot both succeed).
    func group(_ name: String, create settings: GroupSettings? = nil, exclusive: Bool = false) throws -> ConsumerGroup {
        try Names.validate(name, what: "group")
        return try state.withLock { s in
            guard !s.closed else { throw BrokerError(.closed, "the broker is closed") }
            if let g = s.groups[name] {
                if exclusive { throw BrokerError(.groupExists, "group \(name) exists already") }
                if let actor = g.actor { return actor }
                let actor = ConsumerGroup(name: name, id: g.id, settings: g.settings, options: options, host: self, logger: logger)
                s.groups[name]!.actor = actor
                return actor
            }
            guard let settings else { throw BrokerError(.unknownGroup, "group \(name) does not exist") }
            try settings.validate()
            guard s.groups.count < options.maxGroups else {
                throw BrokerError(.limitReached, "the broker holds \(s.groups.count) groups, its limit (maxGroups \(options.maxGroups))")
            }
            let id = s.nextGroupID
            // On disk first: a group the metadata does not vouch for must not exist in memory.
            var next = s
            next.nextGroupID += 1
            next.groups[name] = (id, settings, nil)
            try saveMetadata(next)
            let actor = ConsumerGroup(name: name, id: id, settings: settings, options: options, host: self, logger: logger)
            next.groups[name]!.actor = actor
            s = next
            return actor
        }
    }

    /// Joins `member` to a group (created with `settings`, or the defaults, if new),
    /// subscribed to `topics`. Returns its id, the generation, and its partitions.
    /// `createTopics`: topics that do not exist are created (with the defaults, where the
    /// broker auto-creates); false: they are `unknownTopic`, and nothing is joined.
    public func join(
        group: String, member: String, topics: [String], settings: GroupSettings? = nil, createTopics: Bool = true
    ) async throws -> Membership {
        // The subscription is checked before the group is created: a refused join must not
        // leave a group behind in the metadata.
        try Names.validate(group, what: "group")
        guard !topics.isEmpty else { throw BrokerError(.invalidArgument, "a member must subscribe to at least one topic") }
        for t in topics { _ = try await partitions(ofTopic: t, create: createTopics) }
        return try await self.group(group, create: settings ?? options.defaultGroup).join(memberName: member, topics: topics)
    }

    /// Creates group `name` with `settings` (the broker's defaults for groups when nil) and
    /// returns them. A group of that name already there is `groupExists`, unless
    /// `ifAbsent`: then its settings are returned unchanged.
    @discardableResult
    public func createGroup(_ name: String, settings: GroupSettings? = nil, ifAbsent: Bool = false) throws -> GroupSettings {
        try Names.validate(name, what: "group")
        let settings = settings ?? options.defaultGroup
        try settings.validate()
        do {
            _ = try group(name, create: settings, exclusive: true)
            return settings
        } catch let error as BrokerError where error.code == .groupExists && ifAbsent {
            return try groupSettings(name)
        }
    }

    /// A group's settings as they are now.
    public func groupSettings(_ name: String) throws -> GroupSettings {
        try Names.validate(name, what: "group")
        guard let settings = state.withLock({ $0.groups[name]?.settings }) else {
            throw BrokerError(.unknownGroup, "group \(name) does not exist")
        }
        return settings
    }

    /// Changes a group's settings (persisted; leases already granted keep their deadline,
    /// except when the mode changes: every lease then ends and its message is delivered
    /// again).
    public func configure(group name: String, _ settings: GroupSettings) async throws {
        try await configure(group: name) { $0 = settings }
    }

    /// Changes some of a group's settings: `change` edits them as they are at that moment
    /// (two configurations at once each keep the other's fields). Returns the new settings.
    @discardableResult
    public func configure(group name: String, _ change: (inout GroupSettings) throws -> Void) async throws -> GroupSettings {
        let g = try group(name)
        let (settings, number) = try state.withLock { s in
            guard let current = s.groups[name], current.id == g.id else { throw BrokerError(.unknownGroup, "group \(name) does not exist") }
            var settings = current.settings
            try change(&settings)
            try settings.validate()
            var next = s
            next.groups[name]!.settings = settings
            next.settingsChanges += 1
            try saveMetadata(next)
            s = next
            return (settings, s.settingsChanges)
        }
        try await g.update(settings: settings, change: number)
        return settings
    }

    /// Deletes a group that has no live member and no position in a topic that still exists
    /// (its positions go with their topics: delete those first). Its name is free at once;
    /// a group created with it again starts from nothing.
    public func deleteGroup(_ name: String) async throws {
        let g = try group(name)
        try await g.retire()
        let holding: [String] = state.withLock { s in
            s.topics.values.filter { t in
                t.partitions.contains { Directory.isDirectory(Partition.groupDirectory($0.directory, group: g.id)) }
            }.map(\.info.name).sorted()
        }
        do {
            guard holding.isEmpty else {
                throw BrokerError(
                    .groupInUse,
                    "group \(name) has positions in \(holding.joined(separator: ", ")): a group's positions go with their topics; delete those first")
            }
            try state.withLock { s in
                guard s.groups[name]?.id == g.id else { return }  // deleted meanwhile by another call
                var next = s
                next.groups[name] = nil
                try saveMetadata(next)
                s = next
            }
        } catch {
            await g.unretire()
            throw error
        }
        _ = await g.close()
        logger.info("group deleted", metadata: ["group": "\(name)"])
    }

    public func heartbeat(group: String, member: UInt64) async throws -> Membership {
        try await self.group(group).heartbeat(member: member)
    }

    public func leave(group: String, member: UInt64) async throws {
        defer { changes.bump() }  // its partitions go to the others
        try await self.group(group).leave(member: member)
    }

    /// Up to `max` messages for `member`, each under a lease.
    /// Up to `max` deliveries whose `sizeBound`s add up to at most `maxBytes` (the first one
    /// is always taken, whatever its size), leased to `member`.
    public func fetch(group: String, member: UInt64, max: Int, maxBytes: Int = .max) async throws -> [Delivery] {
        guard max > 0 else { return [] }
        return try await self.group(group).fetch(member: member, max: max, maxBytes: maxBytes)
    }

    /// Messages of partition `partition` of `topic` read without leasing them (a browse;
    /// nothing changes): from `offset` on, or without one from the start of the log — with
    /// `group`, from that group's committed offset (or `offset`, if later: the next page),
    /// skipping what it acked above it (its backlog, in flight included). Up to `max`
    /// messages whose `sizeBound`s add up to at most `maxBytes` (the first is always taken). Receipts carry lease 0, which no settle
    /// accepts; `attempt` counts only earlier, finished attempts. Does not create the topic.
    public func peek(
        topic: String, partition: Int, from offset: Int64? = nil, group: String? = nil, max: Int, maxBytes: Int = .max
    ) async throws -> [Delivery] {
        guard max > 0 else { return [] }
        let partitions = try await partitions(ofTopic: topic, create: false)
        guard partition >= 0, partition < partitions.count else {
            throw BrokerError(.badPartition, "topic \(topic) has \(partitions.count) partitions; there is no partition \(partition)")
        }
        let p = partitions[partition]
        let log = p.ready.log
        var start = offset ?? log.startOffset
        var acked = Set<Int64>()
        if let group, let position = try await self.group(group).position(in: p) {
            start = Swift.max(offset ?? position.committed, position.committed)
            acked = position.ackedAbove
        }
        start = Swift.max(start, log.startOffset)
        let now = options.clock.now()
        var out: [Delivery] = []
        var bytes = 0
        var full = false
        try log.scan(from: start, chunkBytes: 1 << 20, while: { !full }) { batches, from in
            for b in batches where b.nextOffset > from {
                for r in try b.records() where r.offset >= from && !acked.contains(r.offset) {
                    let size = Delivery.sizeBound(topic: topic, record: r.record)
                    guard out.count < max, out.isEmpty || bytes + size <= maxBytes else {
                        full = true
                        return
                    }
                    bytes += size
                    out.append(Delivery(r, of: p, source: .ready, deliveredAt: now, attempt: 0, lease: 0, leaseDeadline: 0))
                }
            }
        }
        return out
    }

    /// Acks deliveries; one result per receipt (nil = acked), the refused ones with why.
    @discardableResult
    /// `result`: what a flow's child gives its flow (at most `FlowTable.maxResultBytes`;
    /// ignored for other messages).
    public func ack(group: String, member: UInt64, _ receipts: [DeliveryReceipt], result: [UInt8]? = nil) async throws -> [BrokerError?] {
        if let result, result.count > FlowTable.maxResultBytes {
            throw BrokerError(.messageTooLarge, "a job's result is at most \(FlowTable.maxResultBytes) bytes, not \(result.count)")
        }
        defer { changes.bump() }  // room in the in-flight window
        return try await self.group(group).ack(member: member, receipts, result: result)
    }

    /// Nacks deliveries: delivered again at once (`delay` 0) or after `delay` ms through the
    /// group's retry path; past the max attempts, dead-lettered.
    @discardableResult
    public func nack(group: String, member: UInt64, _ receipts: [DeliveryReceipt], delay: Int64 = 0, reason: String? = nil) async throws -> [BrokerError?] {
        guard delay >= 0, delay <= Self.maxDelayMilliseconds else {
            throw BrokerError(.invalidArgument, "nack delay must be 0...\(Self.maxDelayMilliseconds) ms, not \(delay)")
        }
        defer { changes.bump() }
        return try await self.group(group).nack(member: member, receipts, delay: delay, reason: reason)
    }

    /// Gives leased messages back unprocessed: delivered again at once, the delivery not
    /// counted as an attempt (a worker shutting down with messages it had not started).
    @discardableResult
    public func release(group: String, member: UInt64, _ receipts: [DeliveryReceipt]) async throws -> [BrokerError?] {
        defer { changes.bump() }
        return try await self.group(group).release(member: member, receipts)
    }

    /// Extends leases to `milliseconds` from now.
    @discardableResult
    public func extend(group: String, member: UInt64, _ receipts: [DeliveryReceipt], by milliseconds: Int64) async throws -> [BrokerError?] {
        guard milliseconds <= Self.maxDelayMilliseconds else {
            throw BrokerError(.invalidArgument, "a lease extends by at most \(Self.maxDelayMilliseconds) ms, not \(milliseconds)")
        }
        return try await self.group(group).extend(member: member, receipts, by: milliseconds)
    }

    /// Gives up on deliveries: they go to the group's dead-letter topic (`<group>.dlq`).
    @discardableResult
    public func term(group: String, member: UInt64, _ receipts: [DeliveryReceipt], reason: String) async throws -> [BrokerError?] {
        defer { changes.bump() }
        return try await self.group(group).term(member: member, receipts, reason: reason)
    }

    /// Re-drives up to `max` dead letters of `group` back to it (through its retry path, so
    /// other groups of the topic do not see them twice). Returns how many.
    public func redrive(group name: String, max: Int = .max) async throws -> Int {
        let g = try group(name)
        let dlq = ConsumerGroup.deadLetterTopic(of: name)
        guard state.withLock({ $0.topics[dlq] != nil }) else { return 0 }
        let reader = "__redrive." + name
        let membership = try await join(group: reader, member: "redrive", topics: [dlq])
        var moved = 0
        do {
            while moved < max {
                let letters = try await fetch(group: reader, member: membership.memberID, max: Swift.min(1_000, max - moved))
                guard !letters.isEmpty else { break }
                for letter in letters { try await g.redrive(letter) }
                try await ack(group: reader, member: membership.memberID, letters.map(\.receipt))
                moved += letters.count
            }
        } catch {
            try? await leave(group: reader, member: membership.memberID)
            throw error
        }
        // Leave before returning (not in a detached task): a reader still in the group would
        // keep half of the dead-letter partitions from the next redrive's reader.
        try await leave(group: reader, member: membership.memberID)
        return moved
    }

    public func listGroups() -> [String] {
        state.withLock { $0.groups.keys.filter { !$0.hasPrefix("__") }.sorted() }
    }

    public func groupStats(_ name: String) async throws -> GroupStats {
        try await group(name).stats()
    }

    public func groupMembers(_ name: String) async throws -> [GroupMemberInfo] {
        try await group(name).members()
    }

    // MARK: - Upkeep

    /// Fires everything due by the clock now, in every partition (manual firing).
    @discardableResult
    public func fireDue() async throws -> Int {
        var fired = 0
        for p in allPartitions { fired += try await p.fireDue() }
        return fired
    }

    /// Checkpoints every partition (wheel, producer state, fire marks, retention) and every
    /// group (committed positions).
    public func checkpoint() async throws {
        try await checkpoint(wheels: true, policy: nil)
    }

    /// `policy`: the periodic pass, which writes a partition's state only once its change
    /// is worth it; nil: everything that changed.
    private func checkpoint(wheels: Bool, policy: CheckpointPolicy?) async throws {
        for p in allPartitions { try await p.checkpoint(wheel: wheels, policy: policy) }
        for g in state.withLock({ $0.groups.values.compactMap(\.actor) }) { try await g.checkpoint() }
    }

    /// Stops firing, writes every checkpoint, closes every log, releases the directory.
    /// Returns what could not be written or closed (empty: a clean stop); a second call
    /// returns nothing.
    @discardableResult
    public func close() async -> [String] {
        let (first, partitions, groups): (Bool, [Partition], [ConsumerGroup]) = state.withLock { s in
            guard !s.closed else { return (false, [], []) }
            s.closed = true
            return (true, s.topics.values.flatMap(\.partitions), s.groups.values.compactMap(\.actor))
        }
        guard first else { return [] }
        if let task = maintenance.withLock({ $0 }) {
            task.cancel()
            await task.value
        }
        var problems: [String] = []
        for g in groups { problems += await g.close() }
        for p in lockPartitions {
            do { try await p.close() } catch { problems.append("lock partition \(p.index): \(error)") }
        }
        // Partitions close side by side, a few at a time: each waits for its last syncs.
        problems += await withTaskGroup(of: [String].self) { closing in
            var found: [String] = []
            for (n, p) in partitions.enumerated() {
                if n >= 16, let more = await closing.next() { found += more }
                closing.addTask { await p.close() }
            }
            for await more in closing { found += more }
            return found
        }
        Glibc.close(lockFD)
        if problems.isEmpty {
            logger.info("broker closed", metadata: ["directory": "\(options.directory)"])
        } else {
            logger.error("broker closed without saving all its state", metadata: ["directory": "\(options.directory)", "problems": "\(problems.count)"])
        }
        return problems
    }

    /// Partitions whose ready or timer log failed (a write or sync error): they refuse
    /// appends until the broker restarts. `topic/partition`, sorted.
    public var failedPartitions: [String] {
        // The common case, answered without asking each partition's logs (a broker with
        // 10,000 topics asked 20,000 locks per health check).
        guard LogFailures.any else { return [] }
        return state.withLock { s in
            s.topics.values.flatMap { t in t.partitions.filter { !$0.acceptsAppends }.map { "\(t.info.name)/\($0.index)" } }
        }.sorted()
    }

    /// Runs until the task is cancelled, then closes.
    public func run() async {
        while !Task.isCancelled { try? await Task.sleep(for: .seconds(3600)) }
        await close()
    }
}

/// A topic's scheduled messages due soon (`Broker.upcoming`).
public struct UpcomingScheduled: Sendable, Equatable {
    /// The earliest pending ones, by due time (broker time, ms).
    public var earliest: [(id: MessageID, dueAt: Int64)]
    /// How many are due before each bound asked for.
    public var countsBefore: [Int]
    /// A partition's walk stopped at its budget: the counts are lower bounds.
    public var truncated: Bool

    public static func == (a: UpcomingScheduled, b: UpcomingScheduled) -> Bool {
        a.earliest.elementsEqual(b.earliest) { $0.id == $1.id && $0.dueAt == $1.dueAt } && a.countsBefore == b.countsBefore && a.truncated == b.truncated
    }
}

extension Broker {
    /// A topic's scheduled messages due before each of `bounds` (broker time), and its
    /// `earliest` first ones — read from the timer logs, at most `maxEntriesPerPartition`
    /// list entries a partition: for operators (the dashboard), not for hot paths.
    public func upcoming(topic: String, before bounds: [Int64], earliest: Int, maxEntriesPerPartition: Int = 50_000) async throws -> UpcomingScheduled {
        let parts = try await partitions(ofTopic: topic, create: false)
        var out = UpcomingScheduled(earliest: [], countsBefore: bounds.map { _ in 0 }, truncated: false)
        for p in parts {
            let u = await p.upcoming(before: bounds, earliest: earliest, maxEntries: maxEntriesPerPartition)
            out.earliest += u.earliest.map { (MessageID(topicID: p.topicID, partition: p.index, kind: .scheduled, value: $0.id), $0.dueAt) }
            for i in bounds.indices { out.countsBefore[i] += u.countsBefore[i] }
            out.truncated = out.truncated || u.truncated
        }
        out.earliest.sort { ($0.dueAt, $0.id.partition, $0.id.value) < ($1.dueAt, $1.id.partition, $1.id.value) }
        out.earliest = Array(out.earliest.prefix(earliest))
        return out
    }
}
