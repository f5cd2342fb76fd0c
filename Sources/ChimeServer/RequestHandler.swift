import ChimeBroker
import ChimeProtocol
import NIOCore

/// Turns one request frame into its response frame by calling the engine. Stateless: the
/// connection's state (handshake, budgets) lives in `ConnectionStateMachine`.
struct RequestHandler: Sendable {
    let broker: Broker
    /// Largest reply payload: a fetch answers with fewer deliveries rather than a frame the
    /// client would refuse (the frame limit less its header and the list count).
    let maxReplyBytes: Int
    /// Where refusals that are the server's trouble are logged.
    let troubles: TroubleLog

    init(broker: Broker, maxFrameBytes: Int, troubles: TroubleLog) {
        precondition(maxFrameBytes > Frame.headerSize + 4, "a frame limit holds at least a header")
        self.broker = broker
        maxReplyBytes = maxFrameBytes - Frame.headerSize - 4
        self.troubles = troubles
    }

    /// `version`: the protocol version the connection chose, which lays out the payload;
    /// `grant`: what its token grants (`RequestAccess`).
    func respond(to frame: Frame, version: UInt16, grant: AccessGrant, allocator: ByteBufferAllocator) async -> Frame {
        do {
            let payload = try await handle(frame, version, RequestAccess(grant: grant, broker: broker), allocator)
            return Frame(opcode: frame.opcode, flags: .response, correlationID: frame.correlationID, payload: payload)
        } catch {
            let reply = ErrorCodes.reply(error)
            troubles.record(reply, request: "\(frame.opcode)")
            return Frame(
                opcode: frame.opcode, flags: [.response, .error], correlationID: frame.correlationID,
                payload: reply.payload(allocator: allocator))
        }
    }

    private func handle(_ frame: Frame, _ version: UInt16, _ access: RequestAccess, _ allocator: ByteBufferAllocator) async throws -> ByteBuffer {
        switch frame.opcode {
        case .hello:
            throw ProtocolError(.malformed, "hello was already received on this connection")
        case .createTopic:
            let r = try CreateTopic(payload: frame.payload)
            try access.require(.admin, topic: r.name)
            let info = try broker.createTopic(r.name, settings: r.settings?.settings)
            return WireTopic(name: info.name, id: info.id, settings: WireTopicSettings(info.settings)).payload(allocator: allocator)
        case .listTopics:
            _ = try Empty(payload: frame.payload)
            try access.require(.read)
            return TopicList(topics: broker.listTopics().filter { access.sees($0.name) }.map { WireTopic(name: $0.name, id: $0.id, settings: WireTopicSettings($0.settings)) })
                .payload(allocator: allocator)
        case .deleteTopic:
            let name = try TopicName(payload: frame.payload).name
            try access.require(.admin, topic: name)
            try await broker.deleteTopic(name)
            return Empty().payload(allocator: allocator)
        case .publish:
            let r = try Publish(payload: frame.payload, version: version)
            try access.require(.publish, topic: r.topic)
            if let fence = r.fence { try await broker.checkFence(lock: fence.lock, token: fence.token) }
            let producer = r.producerID >= 0 ? ProducerStamp(producerID: r.producerID, sequence: r.sequence) : nil
            let results = try await broker.publish(
                topic: r.topic, r.records.map(\.message), partition: r.partition >= 0 ? Int(r.partition) : nil, producer: producer)
            return PublishReply(outcomes: results.map { .init(id: $0.id.map(WireMessageID.init), partition: UInt32($0.partition), duplicate: $0.duplicate) })
                .payload(allocator: allocator)
        case .cancel:
            let r = try ScheduleChange(payload: frame.payload, version: version)
            try access.require(.publish, message: r.id.messageID)
            try await broker.cancel(r.id.messageID)
            return Empty().payload(allocator: allocator)
        case .reschedule:
            let r = try ScheduleChange(payload: frame.payload, version: version)
            try access.require(.publish, message: r.id.messageID)
            guard let due = r.due else { throw ProtocolError(.malformed, "reschedule needs a due time") }
            return WireMessageID(try await broker.reschedule(r.id.messageID, to: Due(due))).payload(allocator: allocator)
        case .join:
            let r = try Join(payload: frame.payload, version: version)
            try access.require(.publish, topics: r.topics)
            return WireMembership(try await broker.join(group: r.group, member: r.member, topics: r.topics, createTopics: r.createTopics))
                .payload(allocator: allocator)
        case .heartbeat:
            try access.require(.publish)
            let r = try MemberRef(payload: frame.payload)
            return WireMembership(try await broker.heartbeat(group: r.group, member: r.memberID)).payload(allocator: allocator)
        case .leave:
            try access.require(.publish)
            let r = try MemberRef(payload: frame.payload)
            try await broker.leave(group: r.group, member: r.memberID)
            return Empty().payload(allocator: allocator)
        case .fetch:
            try access.require(.publish)
            let r = try Fetch(payload: frame.payload)
            let deliveries = try await fetch(r)
            let size = deliveries.reduce(4) { $0 + 160 + $1.topic.utf8.count + ($1.key?.count ?? 0) + $1.body.count + 32 * $1.headers.count }
            return Deliveries.payload(deliveries, allocator: allocator, estimatedSize: size, WireDelivery.init)
        case .ack, .nack, .extend, .term, .release:
            try access.require(.publish)
            let r = try Settle(payload: frame.payload, version: version)
            if let fence = r.fence { try await broker.checkFence(lock: fence.lock, token: fence.token) }
            let receipts = r.receipts.map(\.receipt)
            let results: [BrokerError?]
            switch frame.opcode {
            case .ack: results = try await broker.ack(group: r.group, member: r.memberID, receipts, result: r.reason.map { Array($0.utf8) })
            case .nack: results = try await broker.nack(group: r.group, member: r.memberID, receipts, delay: r.milliseconds, reason: r.reason)
            case .extend: results = try await broker.extend(group: r.group, member: r.memberID, receipts, by: r.milliseconds)
            case .release: results = try await broker.release(group: r.group, member: r.memberID, receipts)
            default: results = try await broker.term(group: r.group, member: r.memberID, receipts, reason: r.reason ?? "terminated")
            }
            let replies = results.map { $0.map { ErrorCodes.reply($0) } }
            for case let reply? in replies { troubles.record(reply, request: "\(frame.opcode)") }
            return SettleReply(results: replies).payload(allocator: allocator)
        case .publishRecords:
            let r = try PublishRecords(payload: frame.payload)
            try access.require(.publish, topic: r.topic)
            let results = try await broker.publishRecords(topic: r.topic, partition: Int(r.partition), batch: r.batch)
            return PublishReply(outcomes: results.map { .init(id: $0.id.map(WireMessageID.init), partition: UInt32($0.partition), duplicate: $0.duplicate) })
                .payload(allocator: allocator)
        case .stats:
            return try await stats(try StatsRequest(payload: frame.payload), access).payload(allocator: allocator)
        case .createGroup:
            let r = try CreateGroup(payload: frame.payload)
            // Workers create their group (if absent) before they join: a consumer's act.
            if r.ifAbsent { try access.require(.publish) } else { try access.require(.admin, topic: nil) }
            let settings = try r.settings.applied(to: broker.options.defaultGroup)
            return WireGroupSettings(try broker.createGroup(r.name, settings: settings, ifAbsent: r.ifAbsent)).payload(allocator: allocator)
        case .configureGroup:
            let r = try ConfigureGroup(payload: frame.payload)
            try access.require(.admin, topic: nil)
            let settings = try await broker.configure(group: r.name) { $0 = try r.settings.applied(to: $0) }
            return WireGroupSettings(settings).payload(allocator: allocator)
        case .describeGroup:
            try access.require(.read)
            let name = try GroupRef(payload: frame.payload).name
            if !access.grant.topics.isEmpty {
                let topics = Set(try await broker.groupStats(name).partitions.map(\.topic))
                if topics.isEmpty { try access.require(.read, topic: nil) }
                for t in topics { try access.require(.read, topic: t) }
            }
            return WireGroupSettings(try broker.groupSettings(name)).payload(allocator: allocator)
        case .deleteGroup:
            try access.require(.admin, topic: nil)
            try await broker.deleteGroup(try GroupRef(payload: frame.payload).name)
            return Empty().payload(allocator: allocator)
        case .jobStatus:
            let r = try JobStatusRequest(payload: frame.payload)
            try access.require(.read, message: r.id.messageID)
            let statuses = try await broker.jobStatus(r.id.messageID, group: r.group.isEmpty ? nil : r.group)
            return JobStatusReply(statuses: statuses.map { s in
                var w = WireJobStatus(s)
                w.state = w.state.laidOut(for: version)
                return w
            }).payload(allocator: allocator)
        case .scheduleWrite, .scheduleControl, .scheduleBackfill, .scheduleList:
            return try await scheduleRequest(frame.opcode, frame.payload, access).payload(allocator: allocator)
        case .lockAcquire, .lockRenew, .lockRelease, .lockList:
            return try await lockRequest(frame.opcode, frame.payload, access, allocator: allocator)
        case .jobAbort, .abortNotices, .jobSnooze, .callbackComplete, .flowSpawn, .flowQuery, .flowAbort:
            return try await jobEventRequest(frame.opcode, frame.payload, access, allocator: allocator)
        case .peek:
            let r = try Peek(payload: frame.payload)
            try access.require(.read, topic: r.topic)
            guard r.fromOffset >= -1 else { throw BrokerError(.invalidArgument, "from offset \(r.fromOffset): offsets are 0 or more (-1: the start)") }
            let deliveries = try await broker.peek(
                topic: r.topic, partition: Int(r.partition), from: r.fromOffset == -1 ? nil : r.fromOffset, group: r.group.isEmpty ? nil : r.group,
                max: Int(min(r.max, 65_536)), maxBytes: maxReplyBytes)
            let size = deliveries.reduce(4) { $0 + 160 + $1.topic.utf8.count + ($1.key?.count ?? 0) + $1.body.count + 32 * $1.headers.count }
            return Deliveries.payload(deliveries, allocator: allocator, estimatedSize: size, WireDelivery.init)
        }
    }

    /// Counts for the topics and groups asked for (all when none are named). A name that
    /// does not exist is an error (`unknownTopic` / `unknownGroup`), not an empty answer;
    /// asked for all, a topic deleted while the answer is made is left out.
    /// A grant limited to topic patterns is refused a topic outside them by name, and not
    /// shown one (nor a group reading one) when it asks for all.
    private func stats(_ r: StatsRequest, _ access: RequestAccess) async throws -> StatsReply {
        try access.require(.read, topics: r.topics)
        let all = broker.listTopics().filter { access.sees($0.name) }
        let topics = r.topics.isEmpty ? all : try r.topics.map { name in
            guard let t = all.first(where: { $0.name == name }) else { throw BrokerError(.unknownTopic, "topic \(name) does not exist") }
            return t
        }
        var topicStats: [WireTopicStats] = []
        for t in topics {
            let counts: [PartitionStats]
            do {
                counts = try await broker.partitionStats(topic: t.name)
            } catch let error as BrokerError where error.code == .unknownTopic && r.topics.isEmpty {
                continue  // deleted since the listing: not one the caller named
            }
            let parts = counts.map {
                WirePartitionStats(
                    partition: UInt32($0.partition), readyStart: $0.readyStart, logEnd: $0.logEnd, readyBytes: $0.readyBytes,
                    scheduled: Int64($0.scheduled), nextDue: $0.nextDue, timerBytes: $0.timerBytes)
            }
            topicStats.append(WireTopicStats(topic: WireTopic(name: t.name, id: t.id, settings: WireTopicSettings(t.settings)), partitions: parts))
        }
        var groupStats: [WireGroupStats] = []
        for name in r.groups.isEmpty ? broker.listGroups() : r.groups {
            let g = try await broker.groupStats(name)
            let seen = g.partitions.allSatisfy { access.sees($0.topic) }
            if !seen && r.groups.isEmpty { continue }
            if !seen { try access.require(.read, topic: nil) }
            let members = r.includeMembers ? try await broker.groupMembers(name).map {
                WireGroupMember(
                    id: $0.id, name: $0.name, lastSeen: $0.lastSeen,
                    assignment: $0.assignment.map { WireTopicPartition(topic: $0.topic, partition: UInt32($0.partition)) })
            } : []
            groupStats.append(
                WireGroupStats(
                    name: g.name, generation: g.generation, memberCount: UInt32(g.members),
                    partitions: g.partitions.map {
                        WireGroupPartitionStats(
                            topic: $0.topic, partition: UInt32($0.partition), committed: $0.committed, lag: $0.lag, inFlight: Int64($0.inFlight),
                            retriesPending: Int64($0.retriesPending), deadLettered: Int64($0.deadLettered), owner: $0.owner)
                    }, members: members))
        }
        return StatsReply(takenAt: broker.options.clock.now(), topics: topicStats, groups: groupStats)
    }

    /// A fetch waits (up to its wait time) for something to deliver: it looks again when the
    /// broker signals a change (a publish, a fire, an ack, a member leaving), and at least
    /// every 50 ms for what no signal announces (leases expiring, rebalances after a
    /// session timeout). A consumer keeps one fetch outstanding instead of polling. The
    /// connection cancels the fetch when its client goes: it stops before leasing anything
    /// (what it leased then would wait out its lease with nobody to work on it).
    private func fetch(_ r: Fetch) async throws -> [Delivery] {
        let max = Int(min(r.max, 65_536))
        let deadline = ContinuousClock.now + .milliseconds(Int64(min(r.waitMilliseconds, 300_000)))
        while true {
            try Task.checkCancellation()
            let seen = broker.changes.version
            let got = try await broker.fetch(group: r.group, member: r.memberID, max: max, maxBytes: maxReplyBytes)
            let now = ContinuousClock.now
            if !got.isEmpty || now >= deadline { return got }
            await broker.changes.wait(after: seen, timeout: min(.milliseconds(50), deadline - now))
            try Task.checkCancellation()
        }
    }
}
