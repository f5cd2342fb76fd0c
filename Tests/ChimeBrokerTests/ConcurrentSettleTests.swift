import ChimeBroker
import ChimeStore
import Testing

/// Acks and the other settling calls against fetches of the same member: each call changes
/// a partition's delivery state on the group's actor only, so a fetch never sees it half
/// changed. (Acks used to change it from a closure that ran off the actor: a batch ack
/// racing a fetch corrupted the window and trapped in `DeliveryWindow.lease`.)
@Suite struct ConcurrentSettleTests {
    static let settings = GroupSettings(leaseMilliseconds: 60_000, sessionTimeoutMilliseconds: 1_000_000, maxAttempts: 10)

    /// Every settling call goes through the group's partitions, which check (in debug
    /// builds) that they are used on the group's actor: the old ack and extend trapped here.
    @Test func everySettlingCallChangesTheWindowOnTheGroupsActor() async throws {
        let s = try await Scenario.make()
        try s.broker.createTopic("jobs", settings: TopicSettings(partitions: 1))
        _ = try await s.broker.publish(topic: "jobs", (0..<5).map { .text("m\($0)") })
        let w = try await s.broker.join(group: "g", member: "w", topics: ["jobs"], settings: Self.settings).memberID
        let got = try await s.broker.fetch(group: "g", member: w, max: 10)
        #expect(got.texts == ["m0", "m1", "m2", "m3", "m4"])

        #expect(try await s.broker.extend(group: "g", member: w, [got[0].receipt], by: 120_000) == [nil])
        #expect(try await s.broker.ack(group: "g", member: w, [got[0].receipt, got[1].receipt]) == [nil, nil])
        #expect(try await s.broker.nack(group: "g", member: w, [got[2].receipt]) == [nil])
        #expect(try await s.broker.nack(group: "g", member: w, [got[3].receipt], delay: 1_000) == [nil])
        #expect(try await s.broker.term(group: "g", member: w, [got[4].receipt], reason: "bad") == [nil])

        // m2 again at once, m3 through the retry log once due; m4 is a dead letter.
        let again = try await s.broker.fetch(group: "g", member: w, max: 10)
        #expect(again.texts == ["m2"] && again.map(\.attempt) == [2])
        try await s.advance(by: 1_000)
        let retried = try await s.broker.fetch(group: "g", member: w, max: 10)
        #expect(retried.texts == ["m3"] && retried.map(\.attempt) == [2])
        #expect(try await s.broker.ack(group: "g", member: w, (again + retried).map(\.receipt)) == [nil, nil])
        let stats = try await s.broker.groupStats("g").partitions
        #expect(stats.map(\.committed) == [5] && stats.map(\.inFlight) == [0] && stats.map(\.deadLettered) == [1])
        await s.broker.close()
    }

    /// The bench's consumer in small: one member fetches batches while up to 8 batch acks of
    /// earlier batches are in flight. Every message comes exactly once (no lease runs out:
    /// the clock stands still), every ack is taken, and the committed positions end at the
    /// end of each partition.
    @Test func batchAcksInFlightWhileFetchingLoseAndRepeatNothing() async throws {
        let s = try await Scenario.make()
        let partitions = 4, count = 2_000, batch = 100, acksInFlight = 8
        try s.broker.createTopic("load", settings: TopicSettings(partitions: partitions))
        for start in stride(from: 0, to: count, by: 500) {
            _ = try await s.broker.publish(topic: "load", (start..<start + 500).map { .text("m\($0)") })
        }
        let w = try await s.broker.join(group: "g", member: "w", topics: ["load"], settings: Self.settings).memberID

        let broker = s.broker
        var seen = Set<String>()
        var repeated: [String] = []
        var refused = 0
        try await withThrowingTaskGroup(of: Int.self) { acks in
            var pending = 0
            while seen.count < count {
                let got = try await broker.fetch(group: "g", member: w, max: batch)
                for d in got where !seen.insert(d.text).inserted { repeated.append(d.text) }
                if !got.isEmpty {
                    let receipts = got.map(\.receipt)
                    acks.addTask { try await broker.ack(group: "g", member: w, receipts).count(where: { $0 != nil }) }
                    pending += 1
                }
                // Room for the next ack, or (nothing fetched: everything leased) an ack to
                // free some; with nothing leased and nothing fetched, delivery is stuck.
                if pending >= acksInFlight || (got.isEmpty && pending > 0) {
                    refused += try await acks.next() ?? 0
                    pending -= 1
                } else if got.isEmpty {
                    Issue.record("nothing to fetch and no ack pending after \(seen.count) of \(count)")
                    break
                }
            }
            while let n = try await acks.next() { refused += n }
        }
        #expect(seen.count == count)
        #expect(repeated.isEmpty, "delivered twice while leased: \(repeated.prefix(10))")
        #expect(refused == 0)
        let stats = try await s.broker.groupStats("g").partitions
        #expect(stats.map(\.committed).reduce(0, +) == Int64(count))
        #expect(stats.allSatisfy { $0.inFlight == 0 && $0.ackedAboveCommitted == 0 && $0.lag == 0 })
        await s.broker.close()
    }
}
