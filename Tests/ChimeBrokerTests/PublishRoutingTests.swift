import ChimeBroker
import ChimeStore
import Testing

/// Publishing now and later across partitions (explicit, by key hash, round-robin), read by
/// two independent groups that each see every message exactly once.
@Suite struct PublishRoutingTests {
    @Test func explicitKeyedAndRoundRobinRouting() async throws {
        let s = try await Scenario.make()
        try s.broker.createTopic("jobs", settings: TopicSettings(partitions: 4))

        let explicit = try await s.broker.publish(topic: "jobs", [.text("e0"), .text("e1")], partition: 2)
        #expect(explicit.map(\.partition) == [2, 2])
        #expect(explicit.map { $0.id?.value } == [0, 1])

        let keys = ["alpha", "beta", "gamma", "delta", "epsilon"]
        let keyed = try await s.broker.publish(topic: "jobs", keys.map { .text("k-\($0)", key: $0) })
        #expect(keyed.map(\.partition) == keys.map { Broker.partition(forKey: bytes($0), partitions: 4) })
        #expect(keyed.allSatisfy { $0.id?.partition == $0.partition && !$0.duplicate })

        // Keyless messages of one call go together; consecutive calls go to consecutive partitions.
        var turns: [Int] = []
        for i in 0..<4 {
            let r = try await s.broker.publish(topic: "jobs", [.text("rr\(i)a"), .text("rr\(i)b")])
            #expect(r[0].partition == r[1].partition)
            turns.append(r[0].partition)
        }
        #expect(Set(turns) == [0, 1, 2, 3])
        for k in 1..<4 { #expect(turns[k] == (turns[k - 1] + 1) % 4) }

        let stats = try await s.broker.partitionStats(topic: "jobs")
        var expectedEnd = [0, 0, 0, 0]
        expectedEnd[2] += 2
        for p in keyed.map(\.partition) { expectedEnd[p] += 1 }
        for p in turns { expectedEnd[p] += 2 }
        #expect(stats.map(\.logEnd) == expectedEnd.map(Int64.init))
        await s.broker.close()
    }

    @Test func twoGroupsEachSeeEveryMessageScheduledOnesOnlyWhenDue() async throws {
        let s = try await Scenario.make()
        try s.broker.createTopic("jobs", settings: TopicSettings(partitions: 3))
        let t0 = s.now
        var messages: [OutgoingMessage] = []
        for i in 0..<6 { messages.append(.text("now\(i)", key: "key\(i)")) }
        for i in 0..<6 {
            var m = OutgoingMessage.text("later\(i)", key: "key\(i)", at: t0 + 1_000 * Int64(i + 1))
            m.headers = [RecordHeader(name: "trace", value: bytes("t\(i)"))]
            messages.append(m)
        }
        let published = try await s.broker.publish(topic: "jobs", messages)
        #expect(published.allSatisfy { $0.id != nil && !$0.duplicate })
        #expect(published[0..<6].allSatisfy { $0.id?.kind == .ready })
        #expect(published[6...].allSatisfy { $0.id?.kind == .scheduled })

        let idle = GroupSettings(sessionTimeoutMilliseconds: 1_000_000)
        let a = try await s.broker.join(group: "A", member: "a1", topics: ["jobs"], settings: idle)
        let b = try await s.broker.join(group: "B", member: "b1", topics: ["jobs"], settings: idle)
        #expect(a.assignment.count == 3 && b.assignment.count == 3)

        let nowA = try await s.consumeAll("A", a.memberID)
        let nowB = try await s.consumeAll("B", b.memberID)
        #expect(nowA.texts.sorted() == (0..<6).map { "now\($0)" })
        #expect(nowB.texts.sorted() == nowA.texts.sorted())
        for d in nowA {
            let i = Int(d.text.dropFirst(3))!
            #expect(d.id == published[i].id)
            #expect(d.partition == published[i].partition)
            #expect(d.attempt == 1)
            #expect(d.publishedAt == t0 && d.dueAt == t0)
        }

        // Each due time in turn: only what is due, in both groups, exactly once.
        for i in 0..<6 {
            try await s.advance(by: 999)
            #expect(try await s.broker.fetch(group: "A", member: a.memberID, max: 10).isEmpty)
            #expect(try await s.broker.fetch(group: "B", member: b.memberID, max: 10).isEmpty)
            #expect(try await s.advance(by: 1) == 1)
            for (group, member) in [("A", a.memberID), ("B", b.memberID)] {
                let got = try await s.consumeAll(group, member)
                #expect(got.texts == ["later\(i)"])
                guard let d = got.first else { continue }
                #expect(d.id == published[6 + i].id)
                #expect(d.key == bytes("key\(i)"))
                #expect(d.headers == [RecordHeader(name: "trace", value: bytes("t\(i)"))])
                #expect(d.publishedAt == t0)
                #expect(d.dueAt == t0 + 1_000 * Int64(i + 1))
                #expect(d.deliveredAt == s.now)
                #expect(d.partition == published[6 + i].partition)
                #expect(d.attempt == 1)
            }
        }
        try await s.advance(by: 60_000)
        #expect(try await s.broker.fetch(group: "A", member: a.memberID, max: 10).isEmpty)
        #expect(try await s.broker.fetch(group: "B", member: b.memberID, max: 10).isEmpty)
        await s.broker.close()
    }

    @Test func aMessageDueAtOrBeforeNowIsImmediate() async throws {
        let s = try await Scenario.make()
        try s.broker.createTopic("jobs", settings: TopicSettings(partitions: 1))
        let r = try await s.broker.publish(topic: "jobs", [.text("past", at: s.now - 5_000), .text("exact", at: s.now), .text("next", at: s.now + 1)])
        #expect(r.map { $0.id?.kind } == [.ready, .ready, .scheduled])
        let m = try await s.broker.join(group: "g", member: "m", topics: ["jobs"])
        #expect(try await s.consumeAll("g", m.memberID).texts == ["past", "exact"])
        try await s.advance(by: 1)
        #expect(try await s.consumeAll("g", m.memberID).texts == ["next"])
        await s.broker.close()
    }
}
