import NIOCore

// Opcode 16 (stats): counts of topics, partitions and groups, as the admin port shows
// them, for clients and the CLI. Byte layout in docs/formats.md ("stats").

/// What to report: every topic and group (both empty), or only the ones named.
public struct StatsRequest: WireMessage {
    public var topics: [String]
    public var groups: [String]
    /// Also list the groups' members (names, last heartbeat, assignment).
    public var includeMembers: Bool

    public init(topics: [String] = [], groups: [String] = [], includeMembers: Bool = false) {
        self.topics = topics
        self.groups = groups
        self.includeMembers = includeMembers
    }
    public init(from r: inout WireReader) throws {
        topics = try (0..<r.count("topics", minimumItemBytes: 2, limit: 10_000)).map { _ in try r.string("topic") }
        groups = try (0..<r.count("groups", minimumItemBytes: 2, limit: 10_000)).map { _ in try r.string("group") }
        includeMembers = try r.u8("include members") != 0
    }
    public func encode(into b: inout ByteBuffer) {
        b.writeWire(UInt32(topics.count))
        for t in topics { b.writeWire(t) }
        b.writeWire(UInt32(groups.count))
        for g in groups { b.writeWire(g) }
        b.writeWire(UInt8(includeMembers ? 1 : 0))
    }
}

public struct WirePartitionStats: Sendable, Equatable {
    public var partition: UInt32
    public var readyStart: Int64
    public var logEnd: Int64
    public var readyBytes: Int64
    public var scheduled: Int64
    /// ms since the epoch; nil when nothing is scheduled.
    public var nextDue: Int64?
    public var timerBytes: Int64

    public init(partition: UInt32, readyStart: Int64, logEnd: Int64, readyBytes: Int64, scheduled: Int64, nextDue: Int64?, timerBytes: Int64) {
        self.partition = partition
        self.readyStart = readyStart
        self.logEnd = logEnd
        self.readyBytes = readyBytes
        self.scheduled = scheduled
        self.nextDue = nextDue
        self.timerBytes = timerBytes
    }
    static let size = 4 + 6 * 8
    init(from r: inout WireReader) throws {
        partition = try r.u32("partition")
        readyStart = try r.i64("ready start")
        logEnd = try r.i64("log end")
        readyBytes = try r.i64("ready bytes")
        scheduled = try r.i64("scheduled")
        nextDue = try r.optionalI64("next due")
        timerBytes = try r.i64("timer bytes")
    }
    func encode(into b: inout ByteBuffer) {
        b.writeWire(partition)
        b.writeWire(readyStart)
        b.writeWire(logEnd)
        b.writeWire(readyBytes)
        b.writeWire(scheduled)
        b.writeWire(optional: nextDue)
        b.writeWire(timerBytes)
    }
}

public struct WireTopicStats: Sendable, Equatable {
    public var topic: WireTopic
    public var partitions: [WirePartitionStats]
    public init(topic: WireTopic, partitions: [WirePartitionStats]) {
        self.topic = topic
        self.partitions = partitions
    }
}

public struct WireGroupPartitionStats: Sendable, Equatable {
    public var topic: String
    public var partition: UInt32
    public var committed: Int64
    public var lag: Int64
    public var inFlight: Int64
    public var retriesPending: Int64
    public var deadLettered: Int64
    /// Member id owning it, nil when unassigned.
    public var owner: UInt64?

    public init(topic: String, partition: UInt32, committed: Int64, lag: Int64, inFlight: Int64, retriesPending: Int64, deadLettered: Int64, owner: UInt64?) {
        self.topic = topic
        self.partition = partition
        self.committed = committed
        self.lag = lag
        self.inFlight = inFlight
        self.retriesPending = retriesPending
        self.deadLettered = deadLettered
        self.owner = owner
    }
}

public struct WireGroupMember: Sendable, Equatable {
    public var id: UInt64
    public var name: String
    /// ms since the epoch.
    public var lastSeen: Int64
    public var assignment: [WireTopicPartition]
    public init(id: UInt64, name: String, lastSeen: Int64, assignment: [WireTopicPartition]) {
        self.id = id
        self.name = name
        self.lastSeen = lastSeen
        self.assignment = assignment
    }
}

public struct WireTopicPartition: Sendable, Equatable, Hashable {
    public var topic: String
    public var partition: UInt32
    public init(topic: String, partition: UInt32) {
        self.topic = topic
        self.partition = partition
    }
}

public struct WireGroupStats: Sendable, Equatable {
    public var name: String
    public var generation: Int64
    public var memberCount: UInt32
    public var partitions: [WireGroupPartitionStats]
    /// Empty unless the request asked for members.
    public var members: [WireGroupMember]
    public init(name: String, generation: Int64, memberCount: UInt32, partitions: [WireGroupPartitionStats], members: [WireGroupMember]) {
        self.name = name
        self.generation = generation
        self.memberCount = memberCount
        self.partitions = partitions
        self.members = members
    }
    public var lag: Int64 { partitions.reduce(0) { $0 + $1.lag } }
    public var inFlight: Int64 { partitions.reduce(0) { $0 + $1.inFlight } }
}

public struct StatsReply: WireMessage {
    /// ms since the epoch on the broker when the counts were taken.
    public var takenAt: Int64
    public var topics: [WireTopicStats]
    public var groups: [WireGroupStats]

    public init(takenAt: Int64, topics: [WireTopicStats], groups: [WireGroupStats]) {
        self.takenAt = takenAt
        self.topics = topics
        self.groups = groups
    }

    public init(from r: inout WireReader) throws {
        takenAt = try r.i64("taken at")
        topics = try (0..<r.count("topics", minimumItemBytes: 8)).map { _ in
            let topic = try WireTopic(from: &r)
            let parts = try (0..<r.count("partitions", minimumItemBytes: WirePartitionStats.size)).map { _ in try WirePartitionStats(from: &r) }
            return WireTopicStats(topic: topic, partitions: parts)
        }
        groups = try (0..<r.count("groups", minimumItemBytes: 18)).map { _ in
            let name = try r.string("group")
            let generation = try r.i64("generation")
            let memberCount = try r.u32("member count")
            let parts = try (0..<r.count("group partitions", minimumItemBytes: 2 + 4 + 6 * 8)).map { _ in
                WireGroupPartitionStats(
                    topic: try r.string("topic"), partition: try r.u32("partition"), committed: try r.i64("committed"), lag: try r.i64("lag"),
                    inFlight: try r.i64("in flight"), retriesPending: try r.i64("retries pending"), deadLettered: try r.i64("dead lettered"),
                    owner: try r.u64("owner").nonZero)
            }
            let members = try (0..<r.count("members", minimumItemBytes: 8 + 2 + 8 + 4)).map { _ in
                WireGroupMember(
                    id: try r.u64("member id"), name: try r.string("member name"), lastSeen: try r.i64("last seen"),
                    assignment: try (0..<r.count("assignment", minimumItemBytes: 6)).map { _ in
                        WireTopicPartition(topic: try r.string("topic"), partition: try r.u32("partition"))
                    })
            }
            return WireGroupStats(name: name, generation: generation, memberCount: memberCount, partitions: parts, members: members)
        }
    }

    public func encode(into b: inout ByteBuffer) {
        b.writeWire(takenAt)
        b.writeWire(UInt32(topics.count))
        for t in topics {
            t.topic.encode(into: &b)
            b.writeWire(UInt32(t.partitions.count))
            for p in t.partitions { p.encode(into: &b) }
        }
        b.writeWire(UInt32(groups.count))
        for g in groups {
            b.writeWire(g.name)
            b.writeWire(g.generation)
            b.writeWire(g.memberCount)
            b.writeWire(UInt32(g.partitions.count))
            for p in g.partitions {
                b.writeWire(p.topic)
                b.writeWire(p.partition)
                b.writeWire(p.committed)
                b.writeWire(p.lag)
                b.writeWire(p.inFlight)
                b.writeWire(p.retriesPending)
                b.writeWire(p.deadLettered)
                b.writeWire(p.owner ?? 0)
            }
            b.writeWire(UInt32(g.members.count))
            for m in g.members {
                b.writeWire(m.id)
                b.writeWire(m.name)
                b.writeWire(m.lastSeen)
                b.writeWire(UInt32(m.assignment.count))
                for a in m.assignment {
                    b.writeWire(a.topic)
                    b.writeWire(a.partition)
                }
            }
        }
    }
}

extension UInt64 {
    /// Member ids start at 1: 0 on the wire means none.
    fileprivate var nonZero: UInt64? { self == 0 ? nil : self }
}
