import ChimeStore

/// Flows in one group: spawning from a leased job, and each child's end reported to its
/// flow (`Broker+Flows.swift`).
extension ConsumerGroup {
    /// Settles the leased job `receipt` by `body` — which spawns its flow, given the job's
    /// partition, its ready-log offset and its own place in a flow of this group, if any —
    /// then acks it. The job's own end is not a flow outcome: its place goes on to the
    /// continuation.
    func spawn(
        member: UInt64, _ receipt: DeliveryReceipt, _ body: @escaping @Sendable (Partition, Int64, FlowMembership?) async throws -> FlowRef
    ) async throws -> FlowRef {
        var ref: FlowRef?
        let results = try await settle(member: member, [receipt]) { group, gp, r in
            _ = try gp.withWindow(reading: r.source) { w in try w.check(r.offset, lease: r.lease) }
            guard let stored = try gp.record(r.source, at: r.offset), stored.offset == r.offset else {
                throw BrokerError(.storage, "message at offset \(r.offset) can no longer be read")
            }
            let meta = RecordMeta.split(stored.record.headers).meta
            let origin = r.source == .ready ? r.offset : meta.readyOffset ?? r.offset
            let membership = FlowMembership.of(stored.record.headers).flatMap { $0.groupID == group.id ? $0 : nil }
            ref = try await body(gp.partition, origin, membership)
            gp.removeFlowChild(r.source, r.offset)
            return r.offset
        }
        if let refused = results.first ?? nil { throw refused }
        guard let ref else { throw BrokerError(.storage, "spawning from \(receipt.offset) in group \(name) made no flow") }
        return ref
    }

    /// The message at `offset` ended here: if it is a child of a flow this group counts,
    /// its outcome is recorded (throws if it cannot be: the ack must fail then).
    func flowChildEnded(
        _ gp: GroupPartition, _ source: DeliverySource, _ offset: Int64, succeeded: Bool, detail: [UInt8], record: Record? = nil
    ) async throws {
        gp.removeFlowChild(source, offset)
        guard let headers = try record?.headers ?? gp.record(source, at: offset).flatMap({ $0.offset == offset ? $0.record.headers : nil }),
            let m = FlowMembership.of(headers), m.groupID == id, let host
        else { return }
        try await host.flowChildrenEnded([(m, succeeded, detail)])
    }

    /// Before acks are journaled: the flows' children among `receipts` whose leases hold
    /// have their outcomes recorded, all in one call (one append per flows' partition).
    func flowChildrenAcked(_ receipts: [DeliveryReceipt], result: [UInt8]?) async throws {
        var ends: [(FlowMembership, succeeded: Bool, detail: [UInt8])] = []
        // Receipts come in runs of one partition: looked up once per run.
        var run: (key: PartitionKey, gp: GroupPartition?)? = nil
        for r in receipts {
            let key = PartitionKey(topicID: r.topicID, partition: r.partition)
            if run?.key != key { run = (key, parts[key]) }
            guard let gp = run?.gp, gp.isFlowChild(r.source, r.offset),
                (try? gp.withWindow(reading: r.source, { try $0.check(r.offset, lease: r.lease) })) != nil,
                let stored = try? gp.record(r.source, at: r.offset), stored.offset == r.offset,
                let m = FlowMembership.of(stored.record.headers), m.groupID == id
            else { continue }
            gp.removeFlowChild(r.source, r.offset)
            ends.append((m, true, result ?? []))
        }
        guard !ends.isEmpty, let host else { return }
        try await host.flowChildrenEnded(ends)
    }
}
