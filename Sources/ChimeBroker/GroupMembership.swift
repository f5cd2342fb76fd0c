/// A partition of a topic, by the topic's numeric id.
public struct PartitionKey: Hashable, Sendable, Comparable, CustomStringConvertible {
    public var topicID: UInt32
    public var partition: Int

    public init(topicID: UInt32, partition: Int) {
        self.topicID = topicID
        self.partition = partition
    }

    public static func < (a: PartitionKey, b: PartitionKey) -> Bool { (a.topicID, a.partition) < (b.topicID, b.partition) }
    public var description: String { "\(topicID)/\(partition)" }
}

/// Who is in a group and which partitions each member fetches from: a pure state machine.
///
/// In a shared group every member fetches from every partition of the topics it
/// subscribes to, and no partition has an owner. In a partitioned group assignment is sticky: a partition stays with its owner while that member lives and
/// still subscribes to its topic; partitions without an owner go to the least-loaded
/// eligible member, and partitions then move one at a time from the most to the least
/// loaded member until no two eligible members differ by more than one. Every change of
/// members or of assignment bumps the generation, which fences stale members.
struct GroupMembership {
    struct Member: Equatable {
        var id: UInt64
        var name: String
        var topics: Set<String>
        var lastSeen: Int64
    }

    private(set) var members: [UInt64: Member] = [:]
    /// Starts where the broker's clock is (ms) when the group is loaded, so that it keeps
    /// growing across restarts (a member or monitor comparing generations never sees one
    /// go back) without being written anywhere on every change.
    private(set) var generation: Int64
    private(set) var assignment: [PartitionKey: UInt64] = [:]
    private(set) var mode: GroupMode
    /// Every partition of the topics the members subscribe to, as the last rebalance saw
    /// them, in key order.
    private(set) var subscribed: [(key: PartitionKey, topic: String)] = []

    init(generation: Int64 = 0, mode: GroupMode = .partitioned) {
        self.generation = generation
        self.mode = mode
    }

    var topics: Set<String> { members.values.reduce(into: Set()) { $0.formUnion($1.topics) } }

    /// The partitions `member` fetches from: those it owns, or in a shared group all of
    /// its topics'.
    func partitions(of member: UInt64) -> [PartitionKey] {
        switch mode {
        case .partitioned:
            return assignment.compactMap { $0.value == member ? $0.key : nil }.sorted()
        case .shared:
            guard let topics = members[member]?.topics else { return [] }
            return subscribed.compactMap { topics.contains($0.topic) ? $0.key : nil }
        }
    }

    /// Whether `member` may settle what it holds in `partition`: its owner in a partitioned
    /// group; any member in a shared one (the lease then says whose a message is).
    func mayFetch(_ member: UInt64, from partition: PartitionKey) -> Bool {
        switch mode {
        case .partitioned: return assignment[partition] == member
        case .shared: return members[member] != nil
        }
    }

    /// A new mode takes effect at the next `rebalance` (which the caller runs).
    mutating func setMode(_ mode: GroupMode) {
        guard mode != self.mode else { return }
        self.mode = mode
        generation += 1
    }

    mutating func join(_ member: Member) {
        members[member.id] = member
        generation += 1
    }

    @discardableResult
    mutating func leave(_ id: UInt64) -> Bool {
        guard members.removeValue(forKey: id) != nil else { return false }
        generation += 1
        return true
    }

    /// Records a sign of life; false for a member not in the group.
    mutating func touch(_ id: UInt64, now: Int64) -> Bool {
        guard members[id] != nil else { return false }
        members[id]!.lastSeen = max(members[id]!.lastSeen, now)
        return true
    }

    /// Removes members silent for longer than `timeout`; returns them.
    mutating func expire(now: Int64, timeout: Int64) -> [UInt64] {
        let gone = members.values.filter { now - $0.lastSeen > timeout }.map(\.id).sorted()
        for id in gone { members[id] = nil }
        if !gone.isEmpty { generation += 1 }
        return gone
    }

    /// Reassigns `partitions` (each with its topic name) to the live members (in a shared
    /// group: to none). Returns the partitions whose owner changed, with the owner they had.
    mutating func rebalance(_ partitions: [(key: PartitionKey, topic: String)]) -> [(key: PartitionKey, previous: UInt64?)] {
        subscribed = partitions.sorted { $0.key < $1.key }
        var next: [PartitionKey: UInt64] = [:]
        guard mode == .partitioned else { return reassign(next) }
        var load: [UInt64: Int] = members.mapValues { _ in 0 }
        let sorted = partitions.sorted { $0.key < $1.key }
        let eligible: [PartitionKey: [UInt64]] = Dictionary(uniqueKeysWithValues: sorted.map { p in
            (p.key, members.values.filter { $0.topics.contains(p.topic) }.map(\.id).sorted())
        })
        for p in sorted {
            if let owner = assignment[p.key], eligible[p.key]!.contains(owner) {
                next[p.key] = owner
                load[owner]! += 1
            }
        }
        for p in sorted where next[p.key] == nil {
            guard let pick = eligible[p.key]!.min(by: { (load[$0]!, $0) < (load[$1]!, $1) }) else { continue }
            next[p.key] = pick
            load[pick]! += 1
        }
        // Even out: move from the most loaded owner to the least loaded eligible member.
        var moved = true
        while moved {
            moved = false
            for p in sorted.reversed() {
                guard let owner = next[p.key], let target = eligible[p.key]!.min(by: { (load[$0]!, $0) < (load[$1]!, $1) }),
                    load[owner]! - load[target]! > 1
                else { continue }
                next[p.key] = target
                load[owner]! -= 1
                load[target]! += 1
                moved = true
            }
        }
        return reassign(next)
    }

    private mutating func reassign(_ next: [PartitionKey: UInt64]) -> [(key: PartitionKey, previous: UInt64?)] {
        var changes: [(PartitionKey, UInt64?)] = []
        for key in Set(next.keys).union(assignment.keys).sorted() where next[key] != assignment[key] {
            changes.append((key, assignment[key]))
        }
        assignment = next
        if !changes.isEmpty { generation += 1 }
        return changes
    }
}

/// The group's rate limit: a smooth token bucket in milliseconds of an injected clock.
struct TokenBucket {
    let rate: Double
    let burst: Double
    private var tokens: Double
    private var last: Int64

    init(rate: Double, burst: Double?, now: Int64) {
        self.rate = rate
        self.burst = burst ?? max(1, rate)
        tokens = self.burst
        last = now
    }

    /// Takes up to `wanted` whole tokens.
    mutating func take(_ wanted: Int, now: Int64) -> Int {
        if now > last {
            tokens = min(burst, tokens + Double(now - last) * rate / 1000)
            last = now
        }
        let granted = min(wanted, Int(tokens))
        tokens -= Double(granted)
        return granted
    }

    /// Gives back tokens taken but not used.
    mutating func giveBack(_ count: Int) { tokens = min(burst, tokens + Double(count)) }

    /// When the next whole token is there.
    func nextToken(now: Int64) -> Int64 { tokens >= 1 ? now : now + Int64(((1 - tokens) * 1000 / rate).rounded(.up)) }
}
