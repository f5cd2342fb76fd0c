import ChimeProtocol

// Protocol version 9: flows (split / join). `ChimeWorker` builds `JobResult.spawn` on these.

extension ConsumedMessage {
    /// Spawns a flow from this message (which it acks): `children` on `childTopic`, and
    /// `continuation` on `continuationTopic` once they have ended (`policy`). Each child
    /// carries its place (`chime-flow`); an ack of a child may give a result
    /// (`ack(result:)`), a dead letter gives its error. Spawning again from the same message
    /// (delivered again after a crash) answers the same flow. Returns the flow's name.
    @discardableResult
    public func spawn(
        _ children: [OutgoingRecord], on childTopic: String, then continuation: OutgoingRecord, on continuationTopic: String,
        policy: WireFlowPolicy = .waitForAll
    ) async throws -> String {
        try await client.call(
            .flowSpawn,
            FlowSpawn(
                group: group, memberID: memberID, receipt: delivery.receipt, policy: policy.rawValue, childTopic: childTopic, children: children,
                continuationTopic: continuationTopic, continuation: continuation),
            as: FlowSpawnReply.self
        ).flow
    }

    /// Done, giving `result` (UTF-8, at most 1 KiB) to the flow this message is a child of;
    /// the broker records it before the ack. Sent at once, not batched.
    public func ack(result: String) async throws {
        let reply = try await client.call(
            .ack, Settle(group: group, memberID: memberID, receipts: [delivery.receipt], reason: result), as: SettleReply.self)
        if let refused = reply.results.first ?? nil { throw ClientError(refused) }
    }
}

extension ChimeClient {
    /// How flow `flow` stands, with up to `max` of its children's outcomes from `cursor`.
    public func flow(_ flow: String, from cursor: Int64 = 0, max: Int = 0) async throws -> FlowQueryReply {
        try await call(.flowQuery, FlowQuery(flow: flow, cursor: cursor, max: UInt32(clamping: max)), as: FlowQueryReply.self)
    }

    /// Every outcome of flow `flow`'s children, read a page at a time.
    public func flowOutcomes(_ flow: String, pageSize: Int = 10_000) async throws -> [WireFlowOutcome] {
        var out: [WireFlowOutcome] = []
        var cursor: Int64? = 0
        while let c = cursor {
            let page = try await self.flow(flow, from: c, max: pageSize)
            out += page.outcomes
            cursor = page.next
        }
        return out
    }

    /// Aborts flow `flow`: no continuation, and its children that have not ended are
    /// aborted. Returns how many were.
    @discardableResult
    public func abortFlow(_ flow: String, reason: String = "aborted") async throws -> Int {
        Int(try await call(.flowAbort, FlowAbort(flow: flow, reason: reason), as: FlowAbortReply.self).aborted)
    }
}
