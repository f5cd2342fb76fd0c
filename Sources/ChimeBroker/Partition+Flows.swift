import ChimeStore

/// A partition's side of flows (`Broker+Flows.swift` carries them between partitions): the
/// table of the flows its jobs spawned, serialised by the partition's actor.
extension Partition {
    private func flows(create: Bool) throws -> FlowTable? {
        if flowTable == nil && create {
            let clock = self.clock
            flowTable = try FlowTable(directory: directory + "/flows", configuration: flowConfiguration, calls: fileCalls, clock: { clock.now() }, logger: logger)
        }
        return flowTable
    }

    /// What the broker must still do for a flow: publish its children, or its continuation.
    struct FlowWork: Sendable {
        var id: Int64
        var childTopic: String
        /// Children to publish (the flow is not marked spawned yet).
        var children: [FlowMessage]?
        /// The continuation to publish, once complete and not closed.
        var continuation: (topic: String, message: FlowMessage, succeeded: Int, failed: Int)?
        /// Failed fast: the children still running are aborted once the continuation is out.
        var abortRest = false
    }

    /// Opens flow `id` (children and continuation journaled in one batch); returns what is
    /// left to do — for a flow that exists already, its unfinished work, if any.
    func openFlow(
        _ id: Int64, policy: FlowPolicy, groupID: UInt32, childTopic: String, children: [FlowMessage], continuationTopic: String,
        continuation: FlowMessage
    ) throws -> FlowWork? {
        guard !closed else { throw BrokerError(.closed, "partition \(topic)/\(index) is closed") }
        let table = try flows(create: true)!
        do {
            _ = try table.open(
                id, policy: policy, groupID: groupID, childTopic: childTopic, children: children, continuationTopic: continuationTopic, continuation: continuation)
        } catch {
            throw BrokerError(.storage, "journaling flow \(id) of \(topic)/\(index): \(error)", underlying: error as? StoreError)
        }
        return work(id)
    }

    /// The children of flow `id` were published.
    func flowSpawned(_ id: Int64, children: [MessageID]) throws {
        try flowTable?.spawned(id, children: children)
    }

    /// The ids of flow `id`'s children that have not ended.
    func flowPendingChildren(_ id: Int64) throws -> [MessageID] {
        try flowTable?.pendingChildren(id) ?? []
    }

    /// Records children's ends, in one append. Returns the continuations to publish of the
    /// flows these ends completed (and nobody is publishing already).
    func flowOutcomes(_ ends: [(id: Int64, index: Int, succeeded: Bool, detail: [UInt8])]) throws -> [FlowWork] {
        guard let table = flowTable else { return [] }
        let changed: Set<Int64>
        do {
            changed = try table.outcomes(ends)
        } catch {
            throw BrokerError(.storage, "journaling outcomes of flows of \(topic)/\(index): \(error)", underlying: error as? StoreError)
        }
        return changed.sorted().compactMap { id in table.flows[id]?.isComplete == true ? work(id) : nil }
    }

    /// The unfinished work of flow `id`; a continuation is handed out once until
    /// `flowClosed` or `flowClosingFailed`.
    private func work(_ id: Int64) -> FlowWork? {
        guard let f = flowTable?.flows[id], !f.isFinished else { return nil }
        var w = FlowWork(id: id, childTopic: f.childTopic)
        if !f.spawned { w.children = f.unpublished }
        if f.isComplete, let c = f.continuation, !flowsClosing.contains(id) {
            flowsClosing.insert(id)
            w.continuation = (f.continuationTopic, c, f.succeeded, f.failed)
            w.abortRest = f.policy == .failFast && f.failed > 0 && f.succeeded + f.failed < f.count
        }
        return w.children == nil && w.continuation == nil ? nil : w
    }

    func flowClosed(_ id: Int64, continuation: MessageID) throws {
        flowsClosing.remove(id)
        try flowTable?.closed(id, continuation: continuation)
    }

    func flowClosingFailed(_ id: Int64) { flowsClosing.remove(id) }

    func flowAborted(_ id: Int64) throws -> Bool {
        guard let f = flowTable?.flows[id], !f.isFinished else { return false }
        try flowTable?.aborted(id)
        return true
    }

    /// Every flow with work left (after a restart).
    func unfinishedFlows() -> [FlowWork] {
        guard let table = flowTable else { return [] }
        return table.flows.keys.sorted().compactMap { work($0) }
    }

    func flowStatus(_ id: Int64) -> FlowStatus? {
        guard let f = flowTable?.flows[id] else { return nil }
        return FlowStatus(
            ref: FlowRef(topicID: topicID, partition: index, id: id), children: f.count, succeeded: f.succeeded, failed: f.failed, policy: f.policy,
            continuation: f.closed, aborted: f.aborted)
    }

    func flowOutcomes(_ id: Int64, from cursor: Int64, max: Int) throws -> (outcomes: [FlowOutcome], next: Int64?) {
        guard let table = flowTable else { return ([], nil) }
        return try table.outcomes(id, from: cursor, max: max)
    }

    /// Rewrites the flow table without the flows finished long ago (`FlowTable.compact`);
    /// the checkpoint does it once the table has grown fourfold.
    func compactFlows() throws {
        guard flowsClosing.isEmpty else { return }
        try flowTable?.compact()
    }
}
