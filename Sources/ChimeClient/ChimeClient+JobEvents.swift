import ChimeProtocol

// Protocol version 9: fenced writes, abort, continuations and callbacks (docs/formats.md,
// "Job events"). `ChimeWorker` builds its job results on these.

extension WireFence {
    /// The fence of a lock lease: writes under it are refused once it is not the live grant.
    public init(_ lease: LockLease) { self.init(lock: lease.name, token: lease.token) }
}

extension ChimeClient {
    /// Publishes `records` only while `lease` is the live grant of its lock: refused as a
    /// whole with `staleToken` (nothing written) once a newer grant exists or the lock
    /// expired. Sent at once, not batched with other publishes. Needs protocol version 9.
    public func publish(
        _ records: [OutgoingRecord], to topic: String, partition: Int32? = nil, fencedBy lease: LockLease
    ) async throws -> [PublishReply.Outcome] {
        let publish = Publish(topic: topic, partition: partition ?? -1, records: records, fence: WireFence(lease))
        let outcomes = try await call(.publish, publish, as: PublishReply.self).outcomes
        guard outcomes.count == records.count else {
            throw ClientError.protocolViolation("the broker answered \(outcomes.count) outcomes for \(records.count) records")
        }
        return outcomes
    }

    /// Aborts the job `id`: cancelled if it has not run (scheduled, waiting for delivery or
    /// for a retry); signalled to the member running it otherwise — its lease ends at once
    /// and a `ChimeWorker` cancels the job's task within about a second; finished when it
    /// was already done. The outcome is also in `jobStatus`. Needs protocol version 9.
    @discardableResult
    public func abort(_ id: WireMessageID, reason: String = "aborted") async throws -> WireAbortOutcome {
        try await call(.jobAbort, JobAbort(id: id, reason: reason), as: JobAbortReply.self).outcome
    }

    /// Completes the callback `token` (from `ConsumedMessage.awaitCallback`, or a worker's
    /// `JobResult.awaitCallback`): its job runs again at once with `payload`. Exactly once:
    /// a second completion, or one after the timeout, is refused with `callbackClosed`.
    public func complete(callback token: String, payload: [UInt8] = []) async throws {
        _ = try await call(.callbackComplete, CallbackComplete(token: token, payload: payload), as: Empty.self)
    }

    /// The leases of a member aborted since it last asked (each told once).
    public func abortNotices(group: String, memberID: UInt64) async throws -> [WireReceipt] {
        try await call(.abortNotices, MemberRef(group: group, memberID: memberID), as: AbortNotices.self).receipts
    }
}

extension ConsumedMessage {
    /// Acks only while `lease` is the live grant of its lock; else refused with
    /// `staleToken` and the message stays leased. Sent at once and durably, not batched.
    public func ack(fencedBy lease: LockLease) async throws {
        let reply = try await client.call(
            .ack, Settle(group: group, memberID: memberID, receipts: [delivery.receipt], fence: WireFence(lease)), as: SettleReply.self)
        if let refused = reply.results.first ?? nil { throw ClientError(refused) }
    }

    /// A continuation: done for now, delivered again (to this group) after `delay` with
    /// `state` in its `chime-state` header — not a failed attempt. Durable in the broker's
    /// wheel: it survives restarts of the worker and the broker. Returns its id there.
    @discardableResult
    public func snooze(for delay: Duration, state: [UInt8]? = nil) async throws -> WireMessageID {
        try await park(milliseconds: ChimeClient.milliseconds(delay), callback: false, state: state).id
    }

    /// Parks the message until its callback is completed (`ChimeClient.complete`) or
    /// `timeout` passes; returns the callback's token. It is then delivered again with
    /// `chime-callback: completed` and the payload in `chime-callback-payload`, or at the
    /// timeout with `chime-callback: waiting`.
    public func awaitCallback(timeout: Duration, state: [UInt8]? = nil) async throws -> String {
        try await park(milliseconds: ChimeClient.milliseconds(timeout), callback: true, state: state).token
    }

    private func park(milliseconds: Int64, callback: Bool, state: [UInt8]?) async throws -> JobSnoozeReply {
        try await client.call(
            .jobSnooze,
            JobSnooze(group: group, memberID: memberID, receipt: delivery.receipt, milliseconds: milliseconds, callback: callback, state: state),
            as: JobSnoozeReply.self)
    }
}

extension ChimeClient {
    /// The leases aborted since they last asked, of every member that leased one of
    /// `messages` (one request per member; a member whose request fails is skipped and
    /// asked again next time). Each abort is told once: keep what matches no message yet.
    public func abortNotices(for messages: [ConsumedMessage]) async -> [WireReceipt] {
        var members = Set<MemberKey>()
        for m in messages { members.insert(MemberKey(group: m.group, memberID: m.memberID)) }
        var out: [WireReceipt] = []
        for member in members {
            if let notices = try? await abortNotices(group: member.group, memberID: member.memberID) { out += notices }
        }
        return out
    }
}
