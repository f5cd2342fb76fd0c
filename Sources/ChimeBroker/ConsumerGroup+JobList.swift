import ChimeStore

/// A group's jobs in flight, by state: running (leased), retrying (waiting in the wheel
/// for their next attempt), parked (snoozed, or awaiting a callback). For operators: it
/// reads the delivery windows and the outcomes kept in memory, and a running retry's
/// record to name its job — at most `limit` of each state.
public struct GroupJobs: Sendable, Equatable {
    public var running: [(id: MessageID, state: JobState)] = []
    public var retrying: [(id: MessageID, state: JobState)] = []
    public var waiting: [(id: MessageID, state: JobState)] = []

    public static func == (a: GroupJobs, b: GroupJobs) -> Bool {
        func same(_ x: [(id: MessageID, state: JobState)], _ y: [(id: MessageID, state: JobState)]) -> Bool {
            x.elementsEqual(y) { $0.id == $1.id && $0.state == $1.state }
        }
        return same(a.running, b.running) && same(a.retrying, b.retrying) && same(a.waiting, b.waiting)
    }
}

extension ConsumerGroup {
    func jobs(limit: Int) async throws -> GroupJobs {
        try checkNotRetired()
        try await expireLeases(now: clock.now())
        var out = GroupJobs()
        for (key, gp) in parts.sorted(by: { ($0.key.topicID, $0.key.partition) < ($1.key.topicID, $1.key.partition) }) {
            for (i, slot) in gp.ready.slots.enumerated() where slot.state == .leased && out.running.count < limit {
                let id = MessageID(topicID: key.topicID, partition: key.partition, kind: .ready, value: gp.ready.frontier + Int64(i))
                out.running.append((id, .running(member: slot.member, attempt: Int(slot.attempt), leaseDeadline: slot.deadline)))
            }
            for (i, slot) in gp.retry.slots.enumerated() where slot.state == .leased && out.running.count < limit {
                // A retry's copy names its job by the ready offset it came from.
                let offset = gp.retry.frontier + Int64(i)
                guard let copy = try? gp.retryLog.log.read(from: offset, maxBytes: 64 << 10).lazy.flatMap({ (try? $0.records()) ?? [] }).first(where: { $0.offset == offset }),
                    let ready = RecordMeta.split(copy.record.headers).meta.readyOffset
                else { continue }
                let attempts = RecordMeta.split(copy.record.headers).meta.attempts
                let id = MessageID(topicID: key.topicID, partition: key.partition, kind: .ready, value: ready)
                out.running.append((id, .running(member: slot.member, attempt: attempts + Int(slot.attempt), leaseDeadline: slot.deadline)))
            }
        }
        // Retries and parkings still in the wheel (an outcome stays after its entry fired).
        var candidates: [(JobOutcomes.Key, JobOutcomes.Outcome)] = []
        outcomes.forEach { key, outcome in
            switch outcome {
            case .retrying, .waiting: candidates.append((key, outcome))
            default: break
            }
            return candidates.count < 20 * limit
        }
        for (key, outcome) in candidates.reversed() {
            guard let gp = parts[key.partition] else { continue }
            let id = MessageID(topicID: key.partition.topicID, partition: key.partition.partition, kind: .ready, value: key.readyOffset)
            switch outcome {
            case .retrying(let timerID, let next, let attempts, let error) where out.retrying.count < limit:
                if case .pending = try await gp.partition.scheduledState(timerID) {
                    out.retrying.append((id, .retrying(nextAttemptAt: next, attempts: attempts, lastError: error)))
                }
            case .waiting(let timerID, let until, let callback) where out.waiting.count < limit:
                if case .pending = try await gp.partition.scheduledState(timerID) { out.waiting.append((id, .waiting(until: until, callback: callback))) }
            default: break
            }
        }
        return out
    }
}

extension Broker {
    /// A group's running, retrying and parked jobs, at most `limit` of each (newest retries
    /// and parkings first; see `ConsumerGroup.jobs`).
    public func jobs(group name: String, limit: Int = 100) async throws -> GroupJobs {
        try await group(name).jobs(limit: limit)
    }
}
