import ChimeBroker
import ChimeStore
import Testing

/// Members joining, leaving and timing out mid-stream: sticky assignment, generations,
/// one owner per partition, revoked leases redelivered to the new owner, stale acks fenced.
@Suite struct MembershipTests {
    static let settings = GroupSettings(leaseMilliseconds: 60_000, sessionTimeoutMilliseconds: 10_000)

    /// Publishes two messages to each partition: "p<partition>-<n>".
    func fill(_ s: Scenario, partitions: Int, round: Int = 0) async throws {
        for p in 0..<partitions {
            _ = try await s.broker.publish(topic: "jobs", [.text("p\(p)-\(2 * round)"), .text("p\(p)-\(2 * round + 1)")], partition: p)
        }
    }

    func owned(_ m: Membership) -> Set<Int> { Set(m.assignment.map(\.partition)) }

    /// Every partition has exactly one owner among the members.
    func expectExactCover(_ s: Scenario, _ group: String, partitions: Int, sourceLocation: SourceLocation = #_sourceLocation) async throws {
        let members = try await s.broker.groupMembers(group)
        let all = members.flatMap { $0.assignment.map(\.partition) }
        #expect(all.sorted() == Array(0..<partitions), "assignment \(members.map(\.assignment))", sourceLocation: sourceLocation)
    }

    @Test func joinAndLeaveKeepSurvivorsPartitionsAndRedeliverRevokedLeases() async throws {
        let s = try await Scenario.make()
        try s.broker.createTopic("jobs", settings: TopicSettings(partitions: 6))
        try await fill(s, partitions: 6)

        let a = try await s.broker.join(group: "g", member: "a", topics: ["jobs"], settings: Self.settings)
        #expect(owned(a) == Set(0..<6))
        let aGot = try await s.fetchAll("g", a.memberID)
        #expect(aGot.textSet == Set((0..<6).flatMap { p in ["p\(p)-0", "p\(p)-1"] }))
        #expect(aGot.allSatisfy { $0.attempt == 1 })

        let b = try await s.broker.join(group: "g", member: "b", topics: ["jobs"])
        #expect(b.generation > a.generation)
        let a2 = try await s.broker.heartbeat(group: "g", member: a.memberID)
        #expect(a2.generation == b.generation)
        #expect(owned(a2).count == 3 && owned(b).count == 3)
        #expect(owned(a2).isSubset(of: owned(a)))
        #expect(owned(a2).isDisjoint(with: owned(b)))
        try await expectExactCover(s, "g", partitions: 6)

        // A's acks on partitions it kept go through; on the moved ones they are fenced.
        let kept = aGot.filter { owned(a2).contains($0.partition) }
        let moved = aGot.filter { owned(b).contains($0.partition) }
        let results = try await s.broker.ack(group: "g", member: a.memberID, kept.map(\.receipt) + moved.map(\.receipt))
        #expect(results[..<kept.count].allSatisfy { $0 == nil })
        #expect(results[kept.count...].allSatisfy { $0?.code == .fenced })

        // B gets the moved partitions' messages again, counted as second attempts, in log order.
        let bGot = try await s.consumeAll("g", b.memberID)
        #expect(bGot.textSet == moved.textSet)
        #expect(bGot.allSatisfy { $0.attempt == 2 })
        for (p, texts) in bGot.byPartition { #expect(texts == ["p\(p)-0", "p\(p)-1"]) }
        #expect(try await s.fetchAll("g", a.memberID).isEmpty)

        // C joins: A and B each keep a subset of what they had.
        let c = try await s.broker.join(group: "g", member: "c", topics: ["jobs"])
        let a3 = try await s.broker.heartbeat(group: "g", member: a.memberID)
        let b3 = try await s.broker.heartbeat(group: "g", member: b.memberID)
        #expect(c.generation > b.generation)
        #expect([owned(a3).count, owned(b3).count, owned(c).count] == [2, 2, 2])
        #expect(owned(a3).isSubset(of: owned(a2)) && owned(b3).isSubset(of: owned(b)))
        try await expectExactCover(s, "g", partitions: 6)

        // New messages go to the current owners only.
        try await fill(s, partitions: 6, round: 1)
        var perMember: [String: [Delivery]] = [:]
        for (name, m) in [("a", a3), ("b", b3), ("c", c)] {
            perMember[name] = try await s.consumeAll("g", m.memberID)
            #expect(Set(perMember[name]!.map(\.partition)) == owned(m))
            for (p, texts) in perMember[name]!.byPartition { #expect(texts == ["p\(p)-2", "p\(p)-3"]) }
        }

        // B leaves with one message in flight: A and C keep theirs and share B's.
        try await fill(s, partitions: 6, round: 2)
        let bLast = try await s.broker.fetch(group: "g", member: b3.memberID, max: 1)
        #expect(bLast.count == 1)
        try await s.broker.leave(group: "g", member: b3.memberID)
        let a4 = try await s.broker.heartbeat(group: "g", member: a.memberID)
        let c4 = try await s.broker.heartbeat(group: "g", member: c.memberID)
        #expect(a4.generation > c.generation)
        #expect(owned(a3).isSubset(of: owned(a4)) && owned(c).isSubset(of: owned(c4)))
        #expect(owned(a4).count == 3 && owned(c4).count == 3)
        try await expectExactCover(s, "g", partitions: 6)
        await expectBrokerError(.fenced) { try await s.broker.ack(group: "g", member: b3.memberID, bLast.map(\.receipt)) }
        await expectBrokerError(.unknownMember) { try await s.broker.heartbeat(group: "g", member: b3.memberID) }

        let rest = try await s.consumeAll("g", a.memberID) + s.consumeAll("g", c.memberID)
        #expect(rest.texts.sorted() == (0..<6).flatMap { p in ["p\(p)-4", "p\(p)-5"] }.sorted())
        // Handed back by the leave: delivered again as the same attempt, not a second one.
        #expect(rest.filter { $0.text == bLast[0].text }.map(\.attempt) == [1])
        #expect(rest.allSatisfy { $0.attempt == 1 })
        let stats = try await s.broker.groupStats("g")
        #expect(stats.partitions.map(\.committed) == Array(repeating: 6, count: 6))
        #expect(stats.partitions.allSatisfy { $0.lag == 0 && $0.inFlight == 0 })
        await s.broker.close()
    }

    /// One ack call whose receipts alternate between partitions still owned, partitions
    /// moved to another member, a partition the group never delivered from, and a repeat:
    /// each receipt gets its own answer, whatever the receipt before it was (the lookups
    /// are made once per run of one partition).
    @Test func interleavedReceiptsEachGetTheirPartitionsAnswer() async throws {
        let s = try await Scenario.make()
        try s.broker.createTopic("jobs", settings: TopicSettings(partitions: 4))
        try await fill(s, partitions: 4)
        let a = try await s.broker.join(group: "g", member: "a", topics: ["jobs"], settings: Self.settings)
        let got = try await s.fetchAll("g", a.memberID)
        #expect(got.count == 8)
        let b = try await s.broker.join(group: "g", member: "b", topics: ["jobs"])
        let a2 = try await s.broker.heartbeat(group: "g", member: a.memberID)
        let kept = got.filter { owned(a2).contains($0.partition) }
        let moved = got.filter { owned(b).contains($0.partition) }
        #expect(kept.count == 4 && moved.count == 4)
        var stranger = kept[0].receipt
        stranger.partition = 99
        var receipts: [DeliveryReceipt] = []
        var expected: [BrokerError.Code?] = []
        for k in 0..<4 {
            receipts += [kept[k].receipt, moved[k].receipt]
            expected += [nil, .fenced]
            if k == 1 {
                receipts += [stranger, kept[k].receipt]
                expected += [.unknownDelivery, .alreadyAcked]
            }
        }
        let results = try await s.broker.ack(group: "g", member: a.memberID, receipts)
        #expect(results.map { $0?.code } == expected)
        // What was acked stays acked; what moved goes to its new owner.
        #expect(try await s.consumeAll("g", b.memberID).textSet == moved.textSet)
        #expect(try await s.fetchAll("g", a.memberID).isEmpty)
        let stats = try await s.broker.groupStats("g")
        #expect(stats.partitions.map(\.committed) == Array(repeating: 2, count: 4))
        await s.broker.close()
    }

    @Test func silentMemberLosesPartitionsAndIsFenced() async throws {
        let s = try await Scenario.make()
        try s.broker.createTopic("jobs", settings: TopicSettings(partitions: 4))
        try await fill(s, partitions: 4)
        let a = try await s.broker.join(group: "g", member: "a", topics: ["jobs"], settings: Self.settings)
        let b = try await s.broker.join(group: "g", member: "b", topics: ["jobs"])
        let a1 = try await s.broker.heartbeat(group: "g", member: a.memberID)
        let aGot = try await s.fetchAll("g", a.memberID)
        let bGot = try await s.consumeAll("g", b.memberID)
        #expect(aGot.count == 4 && bGot.count == 4)
        #expect(Set(aGot.map(\.partition)) == owned(a1))

        // B heartbeats every 5 s; A stays silent.
        for _ in 0..<2 {
            s.clock.advance(by: 5_000)
            _ = try await s.broker.heartbeat(group: "g", member: b.memberID)
        }
        s.clock.advance(by: 1)
        let b2 = try await s.broker.heartbeat(group: "g", member: b.memberID)
        #expect(owned(b2) == Set(0..<4))
        #expect(b2.generation > a1.generation)
        #expect(try await s.broker.groupMembers("g").map(\.name) == ["b"])

        // A's unacked messages go to B, one attempt further, in log order per partition.
        let redelivered = try await s.consumeAll("g", b.memberID)
        #expect(redelivered.textSet == aGot.textSet)
        #expect(redelivered.allSatisfy { $0.attempt == 2 })
        for (p, texts) in redelivered.byPartition { #expect(texts == ["p\(p)-0", "p\(p)-1"]) }

        await expectBrokerError(.fenced) { try await s.broker.ack(group: "g", member: a.memberID, aGot.map(\.receipt)) }
        await expectBrokerError(.unknownMember) { try await s.broker.heartbeat(group: "g", member: a.memberID) }
        await expectBrokerError(.unknownMember) { try await s.broker.fetch(group: "g", member: a.memberID, max: 1) }
        let stats = try await s.broker.groupStats("g")
        #expect(stats.partitions.map(\.committed) == [2, 2, 2, 2])
        await s.broker.close()
    }

    /// A member past its session timeout is gone even when it is the first to call again:
    /// its own call must not bring it back with leases another member may now hold.
    @Test func silentMemberCallingFirstIsStillFenced() async throws {
        let s = try await Scenario.make()
        try s.broker.createTopic("jobs", settings: TopicSettings(partitions: 2))
        try await fill(s, partitions: 2)
        let a = try await s.broker.join(group: "g", member: "a", topics: ["jobs"], settings: Self.settings)
        let b = try await s.broker.join(group: "g", member: "b", topics: ["jobs"])
        let aGot = try await s.fetchAll("g", a.memberID)
        #expect(aGot.count == 2)
        s.clock.advance(by: 10_001)
        await expectBrokerError(.fenced) { try await s.broker.ack(group: "g", member: a.memberID, aGot.map(\.receipt)) }
        await expectBrokerError(.unknownMember) { try await s.broker.fetch(group: "g", member: a.memberID, max: 10) }
        // B (also silent, but it asks) must join again too; a fresh member gets everything.
        await expectBrokerError(.unknownMember) { try await s.broker.heartbeat(group: "g", member: b.memberID) }
        let c = try await s.broker.join(group: "g", member: "c", topics: ["jobs"])
        #expect(owned(c) == [0, 1])
        let got = try await s.consumeAll("g", c.memberID)
        #expect(got.texts.sorted() == ["p0-0", "p0-1", "p1-0", "p1-1"])
        #expect(got.filter { $0.attempt == 2 }.textSet == aGot.textSet)
        await s.broker.close()
    }

    @Test func heartbeatsKeepAMemberAliveAndFetchCountsAsOne() async throws {
        let s = try await Scenario.make()
        try s.broker.createTopic("jobs", settings: TopicSettings(partitions: 2))
        let a = try await s.broker.join(group: "g", member: "a", topics: ["jobs"], settings: Self.settings)
        let b = try await s.broker.join(group: "g", member: "b", topics: ["jobs"])
        let generation = try await s.broker.heartbeat(group: "g", member: a.memberID).generation
        for i in 0..<10 {
            s.clock.advance(by: 9_000)
            if i % 2 == 0 {
                _ = try await s.broker.heartbeat(group: "g", member: a.memberID)
                _ = try await s.broker.fetch(group: "g", member: b.memberID, max: 1)
            } else {
                _ = try await s.broker.fetch(group: "g", member: a.memberID, max: 1)
                _ = try await s.broker.heartbeat(group: "g", member: b.memberID)
            }
        }
        let stats = try await s.broker.groupStats("g")
        #expect(stats.members == 2 && stats.generation == generation)
        try await expectExactCover(s, "g", partitions: 2)
        await s.broker.close()
    }

    /// A group's generation keeps growing across a restart: a member or a monitor holding
    /// the generation from before never sees a later one that is lower.
    @Test func theGenerationGrowsAcrossARestart() async throws {
        let s = try await Scenario.make()
        try s.broker.createTopic("jobs", settings: TopicSettings(partitions: 2))
        _ = try await s.broker.join(group: "g", member: "a", topics: ["jobs"])
        let before = try await s.broker.join(group: "g", member: "b", topics: ["jobs"]).generation
        s.clock.advance(by: 10)
        try await s.restart()
        let after = try await s.broker.join(group: "g", member: "a", topics: ["jobs"]).generation
        #expect(after > before, "generation \(before) before the restart, \(after) after")
        #expect(after < 1 << 53, "and still exact in JSON")
        await s.broker.close()
    }

    /// Member ids travel in JSON (`chime groups --json`, the admin port): below 2^53 they
    /// are read exactly by JavaScript and jq, whose numbers are doubles.
    @Test func memberIDsFitInADouble() async throws {
        let s = try await Scenario.make()
        try s.broker.createTopic("jobs", settings: TopicSettings(partitions: 1))
        for i in 0..<200 {
            let m = try await s.broker.join(group: "g", member: "m\(i)", topics: ["jobs"])
            #expect(m.memberID > 0 && m.memberID < 1 << 53, "member id \(m.memberID)")
            #expect(UInt64(Double(m.memberID)) == m.memberID)
        }
        await s.broker.close()
    }
}

@Suite struct MixedSubscriptionTests {
    /// Members subscribed to different topics: a topic's partitions only go to members that
    /// subscribe to it; when its last subscriber leaves, they have no owner.
    @Test func partitionsGoOnlyToSubscribers() async throws {
        let s = try await Scenario.make()
        try s.broker.createTopic("jobs", settings: TopicSettings(partitions: 2))
        try s.broker.createTopic("mail", settings: TopicSettings(partitions: 2))
        let settings = GroupSettings(sessionTimeoutMilliseconds: 1_000_000)
        let a = try await s.broker.join(group: "g", member: "a", topics: ["jobs"], settings: settings)
        let b = try await s.broker.join(group: "g", member: "b", topics: ["jobs", "mail"])
        let a1 = try await s.broker.heartbeat(group: "g", member: a.memberID)
        #expect(a1.assignment.allSatisfy { $0.topic == "jobs" })
        #expect(Set(b.assignment.filter { $0.topic == "mail" }.map(\.partition)) == [0, 1])
        let all = a1.assignment + b.assignment
        #expect(Set(all).count == 4 && all.count == 4)
        _ = try await s.broker.publish(topic: "mail", [.text("m0")], partition: 0)
        _ = try await s.broker.publish(topic: "jobs", [.text("j0")], partition: 0)
        _ = try await s.broker.publish(topic: "jobs", [.text("j1")], partition: 1)
        let got = try await s.consumeAll("g", a.memberID) + s.consumeAll("g", b.memberID)
        #expect(got.texts.sorted() == ["j0", "j1", "m0"])
        #expect(got.filter { $0.topic == "mail" }.texts == ["m0"])
        try await s.broker.leave(group: "g", member: b.memberID)
        let a2 = try await s.broker.heartbeat(group: "g", member: a.memberID)
        #expect(a2.assignment.map(\.description).sorted() == ["jobs/0", "jobs/1"])
        _ = try await s.broker.publish(topic: "mail", [.text("m1")], partition: 1)
        #expect(try await s.fetchAll("g", a.memberID).isEmpty)
        let stats = try await s.broker.groupStats("g")
        #expect(stats.partitions.filter { $0.topic == "mail" }.map(\.owner) == [nil, nil])
        await s.broker.close()
    }
}
