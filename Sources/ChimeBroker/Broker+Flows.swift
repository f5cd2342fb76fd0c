import ChimeStore
import Foundation

/// Flows (split / join, design §10; docs/architecture.md, "Flows"): a job spawns children
/// and a continuation; each child's end is counted once in the flow's table, in the
/// parent's partition; the last one publishes the continuation, exactly once.
extension Broker {
    /// Spawns a flow from the leased job `receipt` (which is acked by it): `children` are
    /// published to `childTopic`, each with its place in the flow (`chime-flow`), and
    /// `continuation` to `continuationTopic` once they have ended (`policy`). One flow per
    /// job: spawning again from the same job (delivered again after a crash) answers the
    /// flow it spawned and publishes nothing more. A job that is itself a child of a flow
    /// passes its place on to the continuation, so flows nest: the outer flow counts it
    /// when its continuation ends.
    public func spawnFlow(
        group name: String, member: UInt64, _ receipt: DeliveryReceipt, childTopic: String, children: [OutgoingMessage],
        policy: FlowPolicy = .waitForAll, continuationTopic: String, continuation: OutgoingMessage
    ) async throws -> FlowRef {
        guard !children.isEmpty, children.count <= FlowTable.maxChildren else {
            throw BrokerError(.invalidArgument, "a flow has 1...\(FlowTable.maxChildren) children, not \(children.count)")
        }
        let size = children.reduce(continuation.size) { $0 + $1.size + 16 }
        guard size <= FlowTable.maxSpawnBytes else {
            throw BrokerError(.messageTooLarge, "a spawn's children and continuation are at most \(FlowTable.maxSpawnBytes) bytes, not \(size)")
        }
        for m in children + [continuation] {
            guard m.due == nil, m.dedupKey == nil else { throw BrokerError(.invalidArgument, "a flow's children and continuation are due now and have no dedup keys") }
            if let h = m.headers.first(where: { ReservedHeader.isForbiddenToProducers($0.name) }) {
                throw BrokerError(.invalidArgument, "header \(h.name): the chime- prefix is the broker's")
            }
        }
        // Both topics checked (or created, as a publish would) before anything is written.
        _ = try await partitions(ofTopic: childTopic, create: true)
        _ = try await partitions(ofTopic: continuationTopic, create: true)
        let g = try group(name)
        let groupID = g.id
        return try await g.spawn(member: member, receipt) { parent, origin, membership in
            let ref = FlowRef(topicID: parent.topicID, partition: parent.index, id: origin)
            var next = FlowMessage(key: continuation.key, headers: continuation.headers, body: continuation.body)
            if let membership { next.headers.append(RecordHeader(name: ReservedHeader.flow, value: membership.bytes)) }
            let work = try await parent.openFlow(
                origin, policy: policy, groupID: groupID, childTopic: childTopic,
                children: children.enumerated().map { i, c in
                    FlowMessage(
                        key: c.key, headers: c.headers + [RecordHeader(name: ReservedHeader.flow, value: FlowMembership(flow: ref, groupID: groupID, index: UInt32(i)).bytes)],
                        body: c.body)
                },
                continuationTopic: continuationTopic, continuation: next)
            if let work { try await self.finishFlowWork(parent, work) }
            return ref
        }
    }

    /// Publishes what a flow still needs: its children (then marks them spawned), its
    /// continuation (then marks it closed). The continuation goes under a producer stamp of
    /// its own — the flow's — so that publishing it again after a crash stores it once.
    func finishFlowWork(_ p: Partition, _ work: Partition.FlowWork) async throws {
        if let children = work.children {
            let published = try await publish(
                topic: work.childTopic, children.map { OutgoingMessage(key: $0.key, headers: $0.headers, body: $0.body) }, partition: nil, producer: nil,
                asBroker: true)
            try await p.flowSpawned(work.id, children: published.compactMap(\.id))
        }
        if let c = work.continuation {
            let ref = FlowRef(topicID: p.topicID, partition: p.index, id: work.id)
            do {
                let targets = try await partitions(ofTopic: c.topic, create: true)
                let target = c.message.key.map { Broker.partition(forKey: $0, partitions: targets.count) } ?? Int(UInt64(bitPattern: work.id) % UInt64(targets.count))
                var headers = c.message.headers
                headers.append(RecordHeader(name: ReservedHeader.flowDone, value: Array(ref.description.utf8)))
                headers.append(RecordHeader(name: ReservedHeader.flowCounts, value: Self.counts(c.succeeded, c.failed)))
                let out = try await publish(
                    topic: c.topic, [OutgoingMessage(key: c.message.key, headers: headers, body: c.message.body)], partition: target,
                    producer: ProducerStamp(producerID: Self.flowProducer(ref), sequence: 0), asBroker: true)
                let id = out.first?.id ?? MessageID(topicID: targets[target].topicID, partition: target, kind: .ready, value: -1)
                try await p.flowClosed(work.id, continuation: id)
                logger.info("flow done: continuation published", metadata: ["flow": "\(ref)", "succeeded": "\(c.succeeded)", "failed": "\(c.failed)"])
            } catch {
                await p.flowClosingFailed(work.id)
                throw error
            }
            if work.abortRest {
                // Best effort: a child that ends meanwhile is simply not counted any more.
                for child in (try? await p.flowPendingChildren(work.id)) ?? [] { _ = try? await abort(child, reason: "flow \(ref) failed fast") }
            }
        }
    }

    /// Children of flows ended in the group their flows count: each recorded once in its
    /// flow's table, and a continuation published where one was the last (or, failing fast,
    /// the first to fail). Throws when they could not be recorded: the acks must then fail.
    func flowChildrenEnded(_ ends: [(FlowMembership, succeeded: Bool, detail: [UInt8])]) async throws {
        // One append per flows' partition, however many children ended.
        let byPartition = Dictionary(grouping: ends) { PartitionKey(topicID: $0.0.flow.topicID, partition: $0.0.flow.partition) }
        for (key, ends) in byPartition {
            guard let p = partition(key) else { continue }
            for work in try await p.flowOutcomes(ends.map { ($0.0.flow.id, Int($0.0.index), $0.succeeded, $0.detail) }) {
                do {
                    try await finishFlowWork(p, work)
                } catch {
                    // The outcome is recorded: the continuation goes out at the next start, if not before.
                    logger.error("publishing a flow's continuation failed; it is published at the next start", metadata: ["flow": "\(work.id)", "error": "\(error)"])
                }
            }
        }
    }

    /// After a start: children not yet published, continuations not yet published.
    func resumeFlows() async {
        for p in allPartitions {
            for work in await p.unfinishedFlows() {
                do {
                    try await finishFlowWork(p, work)
                } catch {
                    logger.error("resuming a flow failed", metadata: ["partition": "\(p.topic)/\(p.index)", "flow": "\(work.id)", "error": "\(error)"])
                }
            }
        }
    }

    /// How flow `ref` stands.
    public func flowStatus(_ ref: FlowRef) async throws -> FlowStatus {
        guard let p = partition(PartitionKey(topicID: ref.topicID, partition: ref.partition)), let status = await p.flowStatus(ref.id) else {
            throw BrokerError(.unknownMessage, "no flow \(ref)")
        }
        return status
    }

    /// The children's outcomes of flow `ref`, a page at a time: from `cursor` (0 for the
    /// first page), at most `max`; `next` is the cursor of the next page, nil after the last.
    public func flowOutcomes(_ ref: FlowRef, from cursor: Int64 = 0, max: Int = 1_000) async throws -> (outcomes: [FlowOutcome], next: Int64?) {
        guard max > 0, max <= 100_000, cursor >= 0 else { throw BrokerError(.invalidArgument, "a page is 1...100,000 outcomes from a cursor ≥ 0") }
        guard let p = partition(PartitionKey(topicID: ref.topicID, partition: ref.partition)), await p.flowStatus(ref.id) != nil else {
            throw BrokerError(.unknownMessage, "no flow \(ref)")
        }
        do {
            return try await p.flowOutcomes(ref.id, from: cursor, max: max)
        } catch {
            throw BrokerError(.storage, "reading the outcomes of flow \(ref): \(error)", underlying: error as? StoreError)
        }
    }

    /// Aborts flow `ref`: its continuation will not be published, and each child that has
    /// not ended is aborted (`abort`). Returns how many children were.
    @discardableResult
    public func abortFlow(_ ref: FlowRef, reason: String) async throws -> Int {
        guard let p = partition(PartitionKey(topicID: ref.topicID, partition: ref.partition)), await p.flowStatus(ref.id) != nil else {
            throw BrokerError(.unknownMessage, "no flow \(ref)")
        }
        guard try await p.flowAborted(ref.id) else { return 0 }
        var aborted = 0
        for id in try await p.flowPendingChildren(ref.id) {
            if (try? await abort(id, reason: reason)) != nil { aborted += 1 }
        }
        return aborted
    }

    /// The producer id a flow's continuation is published under (63 bits, from the flow's
    /// place: the same after a restart).
    static func flowProducer(_ ref: FlowRef) -> Int64 {
        var h = KeyHash.of(Array("flow/\(ref)".utf8))
        h &= UInt64(Int64.max)
        return Int64(h)
    }

    static func counts(_ succeeded: Int, _ failed: Int) -> [UInt8] {
        var b: [UInt8] = []
        LittleEndian.append(UInt32(succeeded), to: &b)
        LittleEndian.append(UInt32(failed), to: &b)
        return b
    }
}
