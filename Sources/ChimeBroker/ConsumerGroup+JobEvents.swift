import ChimeStore
import ChimeWheel

/// What an abort did (see `Broker.abort`).
public enum AbortOutcome: Sendable, Equatable {
    /// It had not run: it will not.
    case cancelled
    /// A member was running it: its lease ended at once (the message is done in its group,
    /// never delivered again) and the member is told on its next `abortNotices`.
    case signalled
    /// It had finished (succeeded, dead-lettered, aborted) before.
    case finished
}

/// Job events in one group: aborts (`abort`, `takeAbortNotices`) and parking a job in the
/// wheel without counting an attempt (`snooze`).
extension ConsumerGroup {
    /// The most aborted leases kept for one member until it asks (the oldest go first).
    static let maxNoticesPerMember = 10_000

    /// Aborts the message first stored at `readyOffset` of partition `key` (its id `id`)
    /// in this group; nil when the group has never consumed that partition.
    func abort(_ key: PartitionKey, readyOffset: Int64, reason: String) async throws -> AbortOutcome? {
        try checkNotRetired()
        guard let gp = try parts[key] ?? openIfStored(key) else { return nil }
        try await expireLeases(now: clock.now())
        let origin = JobOutcomes.Key(partition: key, readyOffset: readyOffset)
        let maxWindow = settings.maxWindow
        if readyOffset >= gp.ready.readEnd {
            // Not read by this group yet: taken into its window so its slot can be acked.
            guard readyOffset - gp.ready.frontier < Int64(maxWindow) else {
                throw BrokerError(
                    .limitReached,
                    "group \(name) is \(readyOffset - gp.ready.frontier) messages behind message \(readyOffset) of \(gp.partition.topic)/\(key.partition), past its window of \(maxWindow): abort it once the group is closer")
            }
            gp.withWindow(.ready) { $0.admit(through: readyOffset) }
        }
        if let outcome = try await abortInWindow(gp, .ready, readyOffset, origin, reason) { return outcome }
        // Moved out of the ready log: to the wheel (a retry, a parked job) and maybe on to
        // the retry log. Where in the wheel is remembered in memory; after a restart it is
        // looked for in the timer log.
        let inWheel: (timerID: Int64, due: Int64)?
        switch outcomes[origin] {
        case .retrying(let timerID, let due, _, _), .waiting(let timerID, let due, _): inWheel = (timerID, due)
        case nil where !(readyOffset >= gp.ackedSinceOpenFrom && !outcomes.forgotSome):
            inWheel = try await gp.partition.findPending(destination: id, readyOffset: readyOffset)
        case .dead, .aborted, nil:
            return .finished
        }
        if let inWheel {
            // Cancelled there (found by its due time too, should compaction have moved it).
            // Fired meanwhile: aborted where it went.
            do {
                try await gp.partition.cancel(MessageID(topicID: key.topicID, partition: key.partition, kind: .scheduled, value: inWheel.timerID), dueAt: inWheel.due)
                gp.retriesScheduled = max(0, gp.retriesScheduled - 1)
                outcomes.record(.aborted(whileRunning: false, reason: reason), for: origin)
                return .cancelled
            } catch let error as BrokerError where error.code == .unknownMessage {}
        }
        // In the retry log: its last copy there.
        guard let copy = try MessageSearch.find(in: gp.retryLog.log, from: gp.retry.frontier, last: true, { RecordMeta.split($0.headers).meta.readyOffset == readyOffset }) else {
            return .finished
        }
        if copy.offset >= gp.retry.readEnd {
            guard copy.offset - gp.retry.frontier < Int64(maxWindow) else {
                throw BrokerError(.limitReached, "group \(name)'s retries of \(gp.partition.topic)/\(key.partition) are past its window of \(maxWindow): abort it once the group is closer")
            }
            let admitted = Int(copy.offset - gp.retry.readEnd + 1)
            gp.withWindow(.retry) { $0.admit(through: copy.offset) }
            // Read from the retry log, as far as the count of retries waiting goes.
            gp.retriesScheduled = max(0, gp.retriesScheduled - admitted)
        }
        return try await abortInWindow(gp, .retry, copy.offset, origin, reason) ?? .finished
    }

    /// Aborts the message in `source`'s window at `offset`, if it is there and not done.
    /// What suspends comes first — the wait for the message to be durable (an ack must not
    /// reach the disk before its message, see `settle`) and a flow child's outcome — and the
    /// slot is read again after it: the decision and the ack then happen with no suspension
    /// between them, so a fetch, nack or snooze meanwhile cannot slip in.
    private func abortInWindow(_ gp: GroupPartition, _ source: DeliverySource, _ offset: Int64, _ origin: JobOutcomes.Key, _ reason: String) async throws -> AbortOutcome? {
        let log = gp.partition.ready.log
        if source == .ready, log.configuration.durability != .always { try await log.waitUntilDurableShared(offset + 1) }
        var seen: DeliveryWindow.Slot?
        while true {
            guard let slot = gp.withWindow(reading: source, { $0.slot(offset) }), slot.state != .acked else { return nil }
            if slot.state == .parked {
                throw BrokerError(.unknownDelivery, "message \(offset) of \(gp.partition.topic)/\(gp.key.partition) is being retried or dead-lettered right now: abort it again")
            }
            if let seen, seen.state == slot.state, seen.lease == slot.lease { break }
            seen = slot
            // A flow's child ends as failed (counted once, however often this runs).
            try await flowChildEnded(gp, source, offset, succeeded: false, detail: Array("aborted: \(reason)".utf8))
        }
        let slot = seen!
        let outcome: AbortOutcome = slot.state == .leased ? .signalled : .cancelled
        if slot.state == .leased {
            let receipt = DeliveryReceipt(topicID: gp.key.topicID, partition: gp.key.partition, source: source, offset: offset, lease: slot.lease)
            var notices = abortNotices[slot.member, default: []]
            if notices.count >= Self.maxNoticesPerMember { notices.removeFirst() }
            notices.append(receipt)
            abortNotices[slot.member] = notices
        }
        do {
            try finish(gp, source, offset)
        } catch {
            throw BrokerError(.storage, "journaling the abort of \(offset) in group \(name): \(error)", underlying: error as? StoreError)
        }
        outcomes.record(.aborted(whileRunning: outcome == .signalled, reason: reason), for: origin)
        // A watched schedule's occurrence is settled by its abort, as by an ack.
        if let watch = host?.occurrenceWatch, watch.watches(group: name) { watch.settled(group: name, partition: gp.key, offsets: [origin.readyOffset]) }
        do {
            try await gp.journal.log.waitForAcknowledgement(gp.journal.log.endOffset)
        } catch {
            throw BrokerError(.storage, "journaling the abort of \(offset) in group \(name): \(error)", underlying: error as? StoreError)
        }
        logger.info("job aborted", metadata: ["partition": "\(gp.partition.topic)/\(gp.key.partition)", "offset": "\(offset)", "while-running": "\(outcome == .signalled)"])
        return outcome
    }

    /// A parked callback of this group was completed: its job waits at `timerID` now, due
    /// at once (its status follows it there).
    func callbackCompleted(_ key: PartitionKey, readyOffset: Int64, timerID: Int64) {
        let origin = JobOutcomes.Key(partition: key, readyOffset: readyOffset)
        guard case .waiting = outcomes[origin] else { return }
        outcomes.record(.waiting(timerID: timerID, until: clock.now(), callback: false), for: origin)
    }

    /// The leases of `member` aborted since it last asked (each told once). Asking is a
    /// sign of life, as a heartbeat is.
    func takeAbortNotices(member: UInt64) async throws -> [DeliveryReceipt] {
        guard try await expireMembers(touching: member) else {
            throw BrokerError(.fenced, "member \(member) is no longer in group \(name) (it left or missed heartbeats): its leases were revoked")
        }
        return abortNotices.removeValue(forKey: member) ?? []
    }

    /// Settles a leased message by parking it in the wheel until `milliseconds` from now,
    /// bound for this group's retry log, with its headers changed by `edit` — not as a
    /// failed attempt: it is delivered again as the same attempt. Returns its timer position
    /// and due time.
    func snooze(
        member: UInt64, _ receipt: DeliveryReceipt, milliseconds: Int64, callback: Bool,
        edit: @escaping @Sendable ([RecordHeader]) -> [RecordHeader]
    ) async throws -> (position: Int64, dueAt: Int64) {
        let due = clock.now() + milliseconds
        var timer: Int64?
        let results = try await settle(member: member, [receipt]) { group, gp, r in
            let slot = try gp.withWindow(reading: r.source) { try $0.check(r.offset, lease: r.lease) }
            let prior = r.source == .retry ? group.priorAttempts(gp, r.source, r.offset) : 0
            _ = try gp.withWindow(r.source) { w in try w.park(r.offset, lease: r.lease) }
            // This delivery is not counted: the next one has its number again.
            timer = try await group.retry(
                gp, r.source, r.offset, attempts: max(0, prior + Int(slot.attempt) - 1), at: due, reason: nil, parked: (callback, edit))
            return nil
        }
        if let refused = results.first ?? nil { throw refused }
        guard let timer else { throw BrokerError(.storage, "parking \(receipt.offset) in group \(name) left no timer") }
        return (timer, due)
    }
}
