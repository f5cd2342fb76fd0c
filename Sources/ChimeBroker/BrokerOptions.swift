import ChimeStore
import ChimeWheel

/// Per-topic settings, persisted with the topic.
public struct TopicSettings: Sendable, Codable, Equatable {
    public var partitions: Int
    /// Ready-log retention: whole segments older than this are deleted (nil: keep).
    public var retentionMilliseconds: Int64?
    /// Ready-log retention by size, per partition (nil: no limit).
    public var retentionBytes: Int64?
    /// Largest message (key + headers + body) a producer may publish.
    public var maxMessageBytes: Int
    /// Deliveries before a message goes to the group's dead-letter topic (a group may override).
    public var maxAttempts: Int
    /// A second message with the same dedup key within this window is a duplicate.
    public var dedupWindowMilliseconds: Int64

    public init(
        partitions: Int = 4, retentionMilliseconds: Int64? = 7 * 86_400_000, retentionBytes: Int64? = nil,
        maxMessageBytes: Int = 1 << 20, maxAttempts: Int = 5, dedupWindowMilliseconds: Int64 = 600_000
    ) {
        self.partitions = partitions
        self.retentionMilliseconds = retentionMilliseconds
        self.retentionBytes = retentionBytes
        self.maxMessageBytes = maxMessageBytes
        self.maxAttempts = maxAttempts
        self.dedupWindowMilliseconds = dedupWindowMilliseconds
    }

    func validate() throws {
        guard (1...4096).contains(partitions) else { throw BrokerError(.invalidArgument, "partitions must be 1...4096, got \(partitions)") }
        guard maxMessageBytes > 0, maxMessageBytes <= 16 << 20 else {
            throw BrokerError(.invalidArgument, "maxMessageBytes must be 1...\(16 << 20), got \(maxMessageBytes)")
        }
        guard maxAttempts >= 1 else { throw BrokerError(.invalidArgument, "maxAttempts must be at least 1") }
        // Durations are added to the clock: past a century they would overflow it.
        let longest = Broker.maxDelayMilliseconds
        guard (0...longest).contains(dedupWindowMilliseconds) else {
            throw BrokerError(.invalidArgument, "dedup window must be 0...\(longest) ms, got \(dedupWindowMilliseconds)")
        }
        guard retentionMilliseconds.map({ (0...longest).contains($0) }) ?? true else {
            throw BrokerError(.invalidArgument, "retention must be 0...\(longest) ms, got \(retentionMilliseconds!)")
        }
        guard retentionBytes.map({ $0 >= 0 }) ?? true else {
            throw BrokerError(.invalidArgument, "retention bytes must not be negative, got \(retentionBytes!)")
        }
    }
}

/// Per-group settings, persisted with the group.
/// How a group hands out its topics' partitions.
public enum GroupMode: String, Sendable, Codable, CaseIterable {
    /// Each partition is owned by one live member at a time (sticky assignment): order
    /// within a partition, parallelism up to the partition count.
    case partitioned
    /// Every live member fetches from every partition of the topics it subscribes to; the
    /// per-message lease alone gives exclusivity. Any number of workers on one queue.
    case shared
}

public struct GroupSettings: Sendable, Codable, Equatable {
    public var mode: GroupMode
    /// Messages in flight at once per partition: per member per assigned partition in a
    /// partitioned group; for all members together in a shared one.
    public var maxInFlight: Int
    /// Visibility timeout: a delivery not acked, nacked or extended within it is redelivered.
    public var leaseMilliseconds: Int64
    /// A member that neither heartbeats nor fetches for this long leaves the group.
    public var sessionTimeoutMilliseconds: Int64
    /// Overrides the topic's `maxAttempts` when set.
    public var maxAttempts: Int?
    /// Two messages with the same key are never in flight at the same time, and they are
    /// delivered in order (a redelivery stays first of its key).
    public var keyOrdering: Bool
    /// At most this many messages of one key in flight at once (nil: no limit), without an
    /// order between them. `keyOrdering` is 1 with the order kept.
    public var keyConcurrency: Int?
    /// Deliveries per second for the whole group, shared by all its members (nil: no limit).
    public var rateLimit: Double?
    /// Deliveries the bucket can hold (default: one second's worth).
    public var rateBurst: Double?
    /// Deliveries per second of one key, across all members (nil: no limit).
    public var keyRateLimit: Double?
    /// Deliveries of one key the bucket can hold (default: one second's worth, at least 1).
    public var keyRateBurst: Double?
    /// Most offsets one partition's window may span between the oldest unacked message and
    /// the newest delivered one: bounds the memory a stuck message can pin.
    public var maxWindow: Int

    public init(
        mode: GroupMode = .partitioned, maxInFlight: Int = 10_000, leaseMilliseconds: Int64 = 30_000,
        sessionTimeoutMilliseconds: Int64 = 10_000, maxAttempts: Int? = nil, keyOrdering: Bool = false, keyConcurrency: Int? = nil,
        rateLimit: Double? = nil, rateBurst: Double? = nil, keyRateLimit: Double? = nil, keyRateBurst: Double? = nil,
        maxWindow: Int = 100_000
    ) {
        self.mode = mode
        self.maxInFlight = maxInFlight
        self.leaseMilliseconds = leaseMilliseconds
        self.sessionTimeoutMilliseconds = sessionTimeoutMilliseconds
        self.maxAttempts = maxAttempts
        self.keyOrdering = keyOrdering
        self.keyConcurrency = keyConcurrency
        self.rateLimit = rateLimit
        self.rateBurst = rateBurst
        self.keyRateLimit = keyRateLimit
        self.keyRateBurst = keyRateBurst
        self.maxWindow = maxWindow
    }

    /// The most messages of one key in flight at once: 1 under key ordering, nil for none.
    var keyLimit: Int? { keyOrdering ? 1 : keyConcurrency }

    private enum CodingKeys: String, CodingKey {
        case mode, maxInFlight, leaseMilliseconds, sessionTimeoutMilliseconds, maxAttempts, keyOrdering, keyConcurrency
        case rateLimit, rateBurst, keyRateLimit, keyRateBurst, maxWindow
    }

    /// meta.json written before a setting existed reads as that setting's default (a group
    /// of an older broker is partitioned, without per-key limits).
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = GroupSettings()
        mode = try c.decodeIfPresent(GroupMode.self, forKey: .mode) ?? d.mode
        maxInFlight = try c.decodeIfPresent(Int.self, forKey: .maxInFlight) ?? d.maxInFlight
        leaseMilliseconds = try c.decodeIfPresent(Int64.self, forKey: .leaseMilliseconds) ?? d.leaseMilliseconds
        sessionTimeoutMilliseconds = try c.decodeIfPresent(Int64.self, forKey: .sessionTimeoutMilliseconds) ?? d.sessionTimeoutMilliseconds
        maxAttempts = try c.decodeIfPresent(Int.self, forKey: .maxAttempts)
        keyOrdering = try c.decodeIfPresent(Bool.self, forKey: .keyOrdering) ?? d.keyOrdering
        keyConcurrency = try c.decodeIfPresent(Int.self, forKey: .keyConcurrency)
        rateLimit = try c.decodeIfPresent(Double.self, forKey: .rateLimit)
        rateBurst = try c.decodeIfPresent(Double.self, forKey: .rateBurst)
        keyRateLimit = try c.decodeIfPresent(Double.self, forKey: .keyRateLimit)
        keyRateBurst = try c.decodeIfPresent(Double.self, forKey: .keyRateBurst)
        maxWindow = try c.decodeIfPresent(Int.self, forKey: .maxWindow) ?? d.maxWindow
    }

    func validate() throws {
        guard maxInFlight >= 1 else { throw BrokerError(.invalidArgument, "maxInFlight must be at least 1") }
        guard leaseMilliseconds >= 1, leaseMilliseconds <= Broker.maxDelayMilliseconds else {
            throw BrokerError(.invalidArgument, "lease must be 1...\(Broker.maxDelayMilliseconds) ms")
        }
        guard sessionTimeoutMilliseconds >= 1 else { throw BrokerError(.invalidArgument, "session timeout must be at least 1 ms") }
        guard maxAttempts.map({ $0 >= 1 }) ?? true else { throw BrokerError(.invalidArgument, "maxAttempts must be at least 1") }
        guard keyConcurrency.map({ $0 >= 1 }) ?? true else { throw BrokerError(.invalidArgument, "keyConcurrency must be at least 1") }
        guard !keyOrdering || (keyConcurrency ?? 1) == 1 else {
            throw BrokerError(.invalidArgument, "keyOrdering is keyConcurrency 1 with the order kept: set one or the other")
        }
        guard rateLimit.map({ $0 > 0 && $0.isFinite }) ?? true, rateBurst.map({ $0 >= 1 && $0.isFinite }) ?? true else {
            throw BrokerError(.invalidArgument, "rate limit must be positive and its burst at least 1")
        }
        guard keyRateLimit.map({ $0 > 0 && $0.isFinite }) ?? true, keyRateBurst.map({ $0 >= 1 && $0.isFinite }) ?? true else {
            throw BrokerError(.invalidArgument, "key rate limit must be positive and its burst at least 1")
        }
        guard maxWindow >= maxInFlight else { throw BrokerError(.invalidArgument, "maxWindow must be at least maxInFlight") }
    }
}

/// How the engine runs. Time and randomness are injected so tests can drive them.
public struct BrokerOptions: Sendable {
    public enum Firing: Sendable {
        /// A firing loop per partition fires due messages in real time (`Broker.run`).
        case automatic
        /// Nothing fires until `Broker.fireDue()` is called: for tests on a manual clock.
        case manual
    }

    public var directory: String
    /// Publishing to or consuming from an unknown topic creates it with `defaultTopic`.
    public var autoCreateTopics: Bool
    public var defaultTopic: TopicSettings
    public var defaultGroup: GroupSettings
    public var durability: DurabilityPolicy
    public var readySegmentBytes: Int
    public var timerSegmentBytes: Int
    /// Segment size of each group's ack journal and retry log.
    public var groupSegmentBytes: Int
    /// Geometry of the wheel of new partitions (an existing partition keeps its own).
    public var wheelGeometry: WheelGeometry
    /// When partitions checkpoint their wheel, producer state and fire marks while running
    /// (`CheckpointPolicy.interval` is also how often groups snapshot their acks).
    public var checkpoints: CheckpointPolicy
    public var clock: any WheelClock
    public var firing: Firing
    /// Seed of member ids (nil: from the system's random source).
    public var randomSeed: UInt64?
    /// How many ms before their due time the firing loops fire messages (`.automatic`
    /// only): the fire's syncs and appends happen ahead, and each message is held back
    /// from consumers until it is due, so what is left at the due time is waking the
    /// consumers. Long enough to cover a sync that stalls for tens of ms (as a disk
    /// shared with other work does now and then). A message can no longer be cancelled or
    /// moved in its last `fireLead` ms. 0 through 1,000.
    public var fireLead: Int64 = 25
    /// Idempotent producers that have not published for this long are forgotten (their
    /// next publish must start a new sequence). Kafka's default, 7 days: far beyond any
    /// retry, and it bounds the table when clients come and go.
    public var producerExpiryMilliseconds: Int64 = 7 * 86_400_000
    /// Most topics the broker holds (dead-letter topics count); past it a create, or a
    /// publish that would auto-create, is refused with `limitReached`.
    public var maxTopics = 10_000
    /// Most partitions over all topics.
    public var maxPartitions = 10_000
    /// Most consumer groups.
    public var maxGroups = 10_000
    /// The system calls the broker's logs and `meta.json` write and sync through (tests
    /// inject faults: a full disk, a failing sync).
    public var fileSystem: FileSystemCalls = .system

    public init(
        directory: String, autoCreateTopics: Bool = true, defaultTopic: TopicSettings = TopicSettings(),
        defaultGroup: GroupSettings = GroupSettings(), durability: DurabilityPolicy = .always,
        readySegmentBytes: Int = 256 << 20, timerSegmentBytes: Int = 64 << 20, groupSegmentBytes: Int = 8 << 20,
        wheelGeometry: WheelGeometry = .slots256, checkpoints: CheckpointPolicy = .standard,
        clock: any WheelClock = SystemWheelClock(), firing: Firing = .automatic, randomSeed: UInt64? = nil
    ) {
        self.directory = directory
        self.autoCreateTopics = autoCreateTopics
        self.defaultTopic = defaultTopic
        self.defaultGroup = defaultGroup
        self.durability = durability
        self.readySegmentBytes = readySegmentBytes
        self.timerSegmentBytes = timerSegmentBytes
        self.groupSegmentBytes = groupSegmentBytes
        self.wheelGeometry = wheelGeometry
        self.checkpoints = checkpoints
        self.clock = clock
        self.firing = firing
        self.randomSeed = randomSeed
    }
}

/// Topic and group names: safe as directory names, readable in logs.
enum Names {
    static func validate(_ name: String, what: String) throws {
        let ok = !name.isEmpty && name.utf8.count <= 200 && name != "." && name != ".."
            && name.utf8.allSatisfy { c in
                (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || c == 0x2E || c == 0x5F || c == 0x2D
            }
        guard ok else { throw BrokerError(.invalidName, "\(what) name \"\(name)\" must be 1-200 characters of A-Z a-z 0-9 . _ -") }
    }
}
