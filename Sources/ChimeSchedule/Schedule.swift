/// What happens to occurrences that fell due while the broker was down (or so far behind
/// that they are more than `Schedule.misfireThresholdMilliseconds` late).
public enum MisfirePolicy: String, Sendable, Codable, CaseIterable {
    /// Every missed occurrence within the catch-up window fires, in order, at once.
    case all
    /// One occurrence, the latest missed, fires at once; the others are skipped. The default.
    case latest
    /// Missed occurrences are skipped; the schedule goes on with the next one to come.
    case none
}

/// What happens when an occurrence comes while the previous one's message is still
/// unsettled (not acked, not dead-lettered) in the schedule's group.
public enum OverlapPolicy: String, Sendable, Codable, CaseIterable {
    /// Published all the same. The default.
    case allow
    /// Not published (counted as skipped); the schedule goes on with the next occurrence.
    case skip
    /// Held back and published once the previous one is settled; one at most is held,
    /// further ones are skipped.
    case bufferOne
}

/// A recurring (or one-off) message the broker publishes itself (design.md §9): a name,
/// when (`spec`), what (`target`), and options. Stored in its partition's schedule table;
/// `revision` grows with every change.
public struct Schedule: Sendable, Equatable, Codable {
    /// Occurrences later than this when they come to be planned or fired are "missed", and
    /// the misfire policy decides about them.
    public static let misfireThresholdMilliseconds: Int64 = 1_000

    public var name: String
    public var spec: ScheduleSpec
    public var target: ScheduleTarget
    public var options: ScheduleOptions
    /// 1 when created; every update adds one.
    public var revision: Int64
    public var createdAt: Int64

    public init(name: String, spec: ScheduleSpec, target: ScheduleTarget, options: ScheduleOptions = ScheduleOptions(), revision: Int64 = 1, createdAt: Int64 = 0) {
        self.name = name
        self.spec = spec
        self.target = target
        self.options = options
        self.revision = revision
        self.createdAt = createdAt
    }

    private enum CodingKeys: String, CodingKey { case name, spec, target, options, revision, createdAt }

    /// Lenient for what a client may leave out: options, revision and creation time.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        name = try c.decode(String.self, forKey: .name)
        spec = try c.decode(ScheduleSpec.self, forKey: .spec)
        target = try c.decode(ScheduleTarget.self, forKey: .target)
        options = try c.decodeIfPresent(ScheduleOptions.self, forKey: .options) ?? ScheduleOptions()
        revision = try c.decodeIfPresent(Int64.self, forKey: .revision) ?? 0
        createdAt = try c.decodeIfPresent(Int64.self, forKey: .createdAt) ?? 0
    }

    /// Same spec, target and options (what a create of an existing schedule compares).
    public func sameDefinition(as other: Schedule) -> Bool {
        spec == other.spec && target == other.target && options == other.options
    }

    /// The group whose acks an occurrence waits for: fixed delay's, or the overlap
    /// policy's. Nil when occurrences are fired and forgotten.
    public var watchedGroup: String? {
        if case .fixedDelay(_, let group) = spec { return group }
        return options.overlap == .allow ? nil : options.group
    }

    /// The dedup key of an occurrence: `schedule/<name>/<occurrence ms>`.
    public static func dedupKey(name: String, occurrence: Int64) -> [UInt8] { Array("schedule/\(name)/\(occurrence)".utf8) }
}

/// What an occurrence publishes: a message to `topic`, with the schedule's headers added.
public struct ScheduleTarget: Sendable, Equatable, Codable {
    public var topic: String
    public var key: [UInt8]?
    public var headers: [ScheduleHeader]
    public var body: [UInt8]

    private enum CodingKeys: String, CodingKey { case topic, key, headers, body }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        topic = try c.decode(String.self, forKey: .topic)
        key = try c.decodeIfPresent([UInt8].self, forKey: .key)
        headers = try c.decodeIfPresent([ScheduleHeader].self, forKey: .headers) ?? []
        body = try c.decodeIfPresent([UInt8].self, forKey: .body) ?? []
    }

    public init(topic: String, key: [UInt8]? = nil, headers: [ScheduleHeader] = [], body: [UInt8] = []) {
        self.topic = topic
        self.key = key
        self.headers = headers
        self.body = body
    }
}

public struct ScheduleHeader: Sendable, Equatable, Codable {
    public var name: String
    public var value: [UInt8]
    public init(name: String, value: [UInt8]) {
        self.name = name
        self.value = value
    }
}

public struct ScheduleOptions: Sendable, Equatable, Codable {
    public var misfire: MisfirePolicy
    /// With `.all`: how far back missed occurrences are still fired (ms).
    public var catchUpWindowMilliseconds: Int64
    /// No occurrence before this (ms since the epoch).
    public var startAt: Int64?
    /// No occurrence after this.
    public var endAt: Int64?
    /// Each occurrence fires up to this much later (deterministic per occurrence, and
    /// always before the next occurrence).
    public var jitterMilliseconds: Int64
    public var paused: Bool
    public var overlap: OverlapPolicy
    /// The group whose acks settle an occurrence, for `overlap` skip and bufferOne.
    public var group: String?

    public init(
        misfire: MisfirePolicy = .latest, catchUpWindowMilliseconds: Int64 = 3_600_000, startAt: Int64? = nil, endAt: Int64? = nil,
        jitterMilliseconds: Int64 = 0, paused: Bool = false, overlap: OverlapPolicy = .allow, group: String? = nil
    ) {
        self.misfire = misfire
        self.catchUpWindowMilliseconds = catchUpWindowMilliseconds
        self.startAt = startAt
        self.endAt = endAt
        self.jitterMilliseconds = jitterMilliseconds
        self.paused = paused
        self.overlap = overlap
        self.group = group
    }

    private enum CodingKeys: String, CodingKey {
        case misfire, catchUpWindowMilliseconds, startAt, endAt, jitterMilliseconds, paused, overlap, group
    }

    /// Every option may be left out (its default).
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = ScheduleOptions()
        misfire = try c.decodeIfPresent(MisfirePolicy.self, forKey: .misfire) ?? d.misfire
        catchUpWindowMilliseconds = try c.decodeIfPresent(Int64.self, forKey: .catchUpWindowMilliseconds) ?? d.catchUpWindowMilliseconds
        startAt = try c.decodeIfPresent(Int64.self, forKey: .startAt)
        endAt = try c.decodeIfPresent(Int64.self, forKey: .endAt)
        jitterMilliseconds = try c.decodeIfPresent(Int64.self, forKey: .jitterMilliseconds) ?? d.jitterMilliseconds
        paused = try c.decodeIfPresent(Bool.self, forKey: .paused) ?? d.paused
        overlap = try c.decodeIfPresent(OverlapPolicy.self, forKey: .overlap) ?? d.overlap
        group = try c.decodeIfPresent(String.self, forKey: .group)
    }

    /// At most a year of catch-up, and of jitter.
    public static let maximumWindowMilliseconds: Int64 = 366 * 86_400_000
}

/// A schedule as listed: its definition, its planned occurrence and the last one fired.
public struct ScheduleInfo: Sendable, Equatable, Codable {
    public var schedule: Schedule
    public var partition: Int
    /// The occurrence waiting in the wheel (nominal time) and when it fires (with jitter);
    /// nil when paused, ended, or fixed delay waiting for an ack.
    public var nextOccurrence: Int64?
    public var nextFireAt: Int64?
    /// The last occurrence this broker fired since it started (nil if none yet).
    public var lastOccurrence: Int64?
    /// The occurrences after the planned one, as many as asked for.
    public var upcoming: [Int64]
    /// Why nothing is planned: "paused", "ended", or nil.
    public var idle: String?

    public init(schedule: Schedule, partition: Int, nextOccurrence: Int64?, nextFireAt: Int64?, lastOccurrence: Int64?, upcoming: [Int64], idle: String?) {
        self.schedule = schedule
        self.partition = partition
        self.nextOccurrence = nextOccurrence
        self.nextFireAt = nextFireAt
        self.lastOccurrence = lastOccurrence
        self.upcoming = upcoming
        self.idle = idle
    }
}

/// How a schedule write treats a name that is taken.
public enum ScheduleWrite: String, Sendable, Codable, CaseIterable {
    /// A new schedule; an existing one with the same definition is answered as it is (a
    /// create repeated, or made by ten workers at once), a different one is `scheduleExists`.
    case create
    /// An existing schedule; `unknownSchedule` otherwise.
    case update
    /// Whichever applies (what a worker registering its schedule at start does).
    case createOrUpdate
}

/// What a schedule operation on one schedule does.
public enum ScheduleAction: String, Sendable, Codable, CaseIterable {
    case pause, resume, delete
}

