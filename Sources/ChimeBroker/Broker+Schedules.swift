import ChimeSchedule
import ChimeStore
import ChimeWheel

/// Schedules, broker-wide: their names are unique, each lives in the partition of its
/// target topic that its name hashes to, and writes to one name are made one at a time.
actor ScheduleDirectory {
    /// name → (topic, partition index), filled from every partition's table at opening.
    private var homes: [String: (topic: String, partition: Int)] = [:]
    private var busy: Set<String> = []
    private var waiting: [String: [CheckedContinuation<Void, Never>]] = [:]

    func add(_ name: String, topic: String, partition: Int) { homes[name] = (topic, partition) }
    func remove(_ name: String) { homes[name] = nil }
    func home(_ name: String) -> (topic: String, partition: Int)? { homes[name] }
    var names: [String] { homes.keys.sorted() }
    /// The partitions holding a schedule, each once.
    var partitionsHolding: [(topic: String, partition: Int)] {
        var seen = Set<String>()
        return homes.values.filter { seen.insert("\($0.partition)/\($0.topic)").inserted }
    }

    /// Runs `body` with writes to `name` held back until it ends.
    func exclusively<T: Sendable>(_ name: String, _ body: @Sendable () async throws -> T) async throws -> T {
        while busy.contains(name) { await withCheckedContinuation { waiting[name, default: []].append($0) } }
        busy.insert(name)
        defer {
            busy.remove(name)
            if let next = waiting[name]?.first {
                waiting[name]!.removeFirst()
                if waiting[name]!.isEmpty { waiting[name] = nil }
                next.resume()
            }
        }
        return try await body()
    }
}

extension Broker {
    /// The partition of `topic` a schedule named `name` lives in: the name's key hash.
    static func schedulePartition(_ name: String, of count: Int) -> Int {
        Int(KeyHash.of(Array(name.utf8)) % UInt64(count))
    }

    /// Reads every partition's schedule names into the directory (at opening).
    func loadScheduleDirectory(_ partitions: [Partition]) async {
        for p in partitions {
            for name in await p.scheduleNames {
                if let other = await schedulesDirectory.home(name) {
                    logger.error("a schedule name is in two partitions; the second is ignored", metadata: ["schedule": "\(name)", "first": "\(other.topic)/\(other.partition)", "second": "\(p.topic)/\(p.index)"])
                    continue
                }
                await schedulesDirectory.add(name, topic: p.topic, partition: p.index)
            }
        }
    }

    /// Has the watch hand settled occurrences to `occurrencesSettled`, off the group's actor.
    func actOnSettledOccurrences() {
        occurrenceWatch.onSettled.withLock { slot in
            slot = { [weak self] freed in
                guard let broker = self else { return }
                Task { await broker.occurrencesSettled(freed) }
            }
        }
    }

    /// Occurrences their groups settled: each schedule's partition acts on it (fixed delay
    /// plans the next, `bufferOne` publishes the one it held).
    func occurrencesSettled(_ freed: [(schedule: String, buffered: FiredMessage?)]) async {
        for f in freed {
            await scheduleHome(f.schedule)?.occurrenceSettled(f.schedule, buffered: f.buffered)
        }
    }

    /// Whether `group` has settled message `id` (acked it, or dead-lettered it); false for a
    /// group that does not exist yet (nobody took it), nil when the broker cannot say.
    func isSettled(_ id: MessageID, in group: String) async -> Bool? {
        do {
            guard let status = try await jobStatus(id, group: group).first else { return nil }
            switch status.state {
            case .succeeded, .finished, .dead, .cancelled, .aborted: return true
            case .scheduled, .ready, .running, .retrying, .waiting: return false
            }
        } catch let error as BrokerError where error.code == .unknownGroup {
            return false
        } catch {
            return nil
        }
    }

    /// The partition holding `name`'s schedule, or nil (also when its topic was deleted).
    private func scheduleHome(_ name: String) async -> Partition? {
        guard let home = await schedulesDirectory.home(name) else { return nil }
        guard let partitions = try? await partitions(ofTopic: home.topic, create: false), home.partition < partitions.count,
            await partitions[home.partition].scheduleInfo(name, upcoming: 0) != nil
        else {
            await schedulesDirectory.remove(name)  // its topic was deleted, or deleted and made again
            return nil
        }
        return partitions[home.partition]
    }

    /// Checks a schedule as a client sent it; errors say what is wrong and where.
    static func check(_ schedule: Schedule, maxMessageBytes: Int) throws {
        try Names.validate(schedule.name, what: "schedule")
        do {
            _ = try schedule.spec.timetable()
        } catch let error where error.code == .unknownTimeZone {
            throw BrokerError(.unknownTimeZone, error.description)
        } catch {
            throw BrokerError(.badSchedule, error.description)
        }
        let o = schedule.options
        let window = 0...ScheduleOptions.maximumWindowMilliseconds
        guard window.contains(o.jitterMilliseconds) else { throw BrokerError(.badSchedule, "jitter must be within 0 ms to 366 days") }
        guard window.contains(o.catchUpWindowMilliseconds) else { throw BrokerError(.badSchedule, "the catch-up window must be within 0 ms to 366 days") }
        if let start = o.startAt, let end = o.endAt, end < start { throw BrokerError(.badSchedule, "the end (\(end) ms) is before the start (\(start) ms)") }
        if o.overlap != .allow {
            guard let group = o.group else {
                throw BrokerError(.badSchedule, "overlap \(o.overlap.rawValue) needs the group whose acks settle an occurrence")
            }
            try Names.validate(group, what: "group")
        }
        if case .fixedDelay(_, let group) = schedule.spec { try Names.validate(group, what: "group") }
        let t = schedule.target
        let size = t.body.count + (t.key?.count ?? 0) + t.headers.reduce(0) { $0 + $1.name.utf8.count + $1.value.count }
        guard size <= maxMessageBytes else {
            throw BrokerError(.messageTooLarge, "the schedule's message is \(size) bytes; its topic takes at most \(maxMessageBytes)")
        }
        for h in t.headers where ReservedHeader.isForbiddenToProducers(h.name) {
            throw BrokerError(.invalidArgument, "header \(h.name) is reserved to the broker (chime-*)")
        }
    }

    /// Creates or updates a schedule (see `ScheduleWrite`); returns it as stored. An update
    /// takes effect from the next occurrence: the one planned under the old definition is
    /// replaced by the new one's first occurrence after now (unless it is firing already).
    /// A schedule cannot move to another topic: delete it and create it again.
    public func writeSchedule(_ schedule: Schedule, _ write: ScheduleWrite) async throws -> ScheduleInfo {
        try Names.validate(schedule.name, what: "schedule")
        return try await schedulesDirectory.exclusively(schedule.name) {
            let existing = await self.scheduleHome(schedule.name)
            let current = await existing?.scheduleInfo(schedule.name, upcoming: 0)
            var stored = schedule
            if let current {
                if write == .create && !current.schedule.sameDefinition(as: schedule) {
                    throw BrokerError(.scheduleExists, "schedule \(schedule.name) exists with another definition (update it instead)")
                }
                if current.schedule.sameDefinition(as: schedule) { return current }
                guard current.schedule.target.topic == schedule.target.topic else {
                    throw BrokerError(.badSchedule, "schedule \(schedule.name) publishes to \(current.schedule.target.topic); a schedule cannot change its topic (delete it and create it again)")
                }
                stored.revision = current.schedule.revision + 1
                stored.createdAt = current.schedule.createdAt
            } else {
                guard write != .update else { throw BrokerError(.unknownSchedule, "no schedule is named \(schedule.name)") }
                stored.revision = 1
                stored.createdAt = self.options.clock.wallNow()
            }
            let partitions = try await self.partitions(ofTopic: schedule.target.topic, create: true)
            let settings = self.topicSettings(partitions[0].topicID)
            try Self.check(stored, maxMessageBytes: settings?.maxMessageBytes ?? Int.max)
            let home = existing ?? partitions[Self.schedulePartition(schedule.name, of: partitions.count)]
            let info = try await home.defineSchedule(stored)
            await self.schedulesDirectory.add(schedule.name, topic: home.topic, partition: home.index)
            return info
        }
    }

    /// Pauses, resumes or deletes a schedule. Pausing cancels the planned occurrence;
    /// resuming plans the first occurrence after now (the paused ones are not caught up).
    public func controlSchedule(_ name: String, _ action: ScheduleAction) async throws {
        try await schedulesDirectory.exclusively(name) {
            guard let home = await self.scheduleHome(name), let current = await home.scheduleInfo(name, upcoming: 0) else {
                throw BrokerError(.unknownSchedule, "no schedule is named \(name)")
            }
            switch action {
            case .delete:
                try await home.deleteSchedule(name)
                await self.schedulesDirectory.remove(name)
            case .pause, .resume:
                let paused = action == .pause
                guard current.schedule.options.paused != paused else { return }
                var changed = current.schedule
                changed.options.paused = paused
                changed.revision += 1
                _ = try await home.defineSchedule(changed)
            }
        }
    }

    /// Publishes one occurrence now, for the current time, beside the planned ones. Its
    /// dedup key names the millisecond: asked twice in one, it is published once.
    public func triggerSchedule(_ name: String) async throws -> PublishedMessage {
        guard let home = await scheduleHome(name) else { throw BrokerError(.unknownSchedule, "no schedule is named \(name)") }
        return try await home.publishOccurrences(name, [options.clock.wallNow()])[0]
    }

    /// The most occurrences one backfill publishes.
    public static let maximumBackfill = 10_000

    /// Publishes now every occurrence of `from...to` (ms; not in the future), at most
    /// `maximumBackfill`: each with its dedup key, so within the topic's dedup window a range
    /// backfilled twice is published once. Returns the occurrences and what became of each.
    public func backfillSchedule(_ name: String, from: Int64, to: Int64) async throws -> [(occurrence: Int64, published: PublishedMessage)] {
        guard let home = await scheduleHome(name) else { throw BrokerError(.unknownSchedule, "no schedule is named \(name)") }
        let now = options.clock.wallNow()
        guard from <= to else { throw BrokerError(.invalidArgument, "the backfill range ends (\(to)) before it starts (\(from))") }
        guard to <= now else { throw BrokerError(.invalidArgument, "a backfill range is in the past; it ends at \(to) ms, after now (\(now) ms)") }
        let occurrences = try await home.scheduleOccurrences(name, from: from, to: to, limit: Self.maximumBackfill + 1)
        guard occurrences.count <= Self.maximumBackfill else {
            throw BrokerError(.limitReached, "the range holds more than \(Self.maximumBackfill) occurrences; backfill it in parts")
        }
        guard !occurrences.isEmpty else { return [] }
        return Array(zip(occurrences, try await home.publishOccurrences(name, occurrences)))
    }

    /// One schedule, with its next `upcoming` occurrences after the planned one.
    public func schedule(_ name: String, upcoming: Int = 5) async throws -> ScheduleInfo {
        guard let home = await scheduleHome(name), let info = await home.scheduleInfo(name, upcoming: max(0, min(upcoming, 1_000))) else {
            throw BrokerError(.unknownSchedule, "no schedule is named \(name)")
        }
        return info
    }

    /// Every schedule, by name.
    /// Every schedule, by name: from the partitions the directory says hold one (a broker
    /// with 10,000 topics and a few schedules asks a few partitions, not all).
    public func schedules(upcoming: Int = 0) async -> [ScheduleInfo] {
        var out: [ScheduleInfo] = []
        for home in await schedulesDirectory.partitionsHolding {
            guard let parts = try? await partitions(ofTopic: home.topic, create: false), home.partition < parts.count else { continue }
            out += await parts[home.partition].scheduleInfos(upcoming: max(0, min(upcoming, 1_000)))
        }
        return out.sorted { $0.schedule.name < $1.schedule.name }
    }
}
