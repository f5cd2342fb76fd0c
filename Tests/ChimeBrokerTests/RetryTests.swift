import ChimeBroker
import ChimeStore
import Testing

/// nack with and without delay (through the wheel into the group's own retry log), the
/// attempt count, dead-lettering past the max attempts or on term, and redrive.
@Suite struct RetryTests {
    /// "jobs" with one partition: two fillers (acked by everyone) then `m` at offset 2.
    func setUp(topic: TopicSettings = TopicSettings(partitions: 1), a: GroupSettings) async throws -> (Scenario, UInt64, UInt64) {
        let s = try await Scenario.make()
        try s.broker.createTopic("jobs", settings: topic)
        _ = try await s.broker.publish(topic: "jobs", [.text("f0"), .text("f1")])
        let ma = try await s.broker.join(group: "A", member: "a", topics: ["jobs"], settings: a)
        let mb = try await s.broker.join(group: "B", member: "b", topics: ["jobs"], settings: GroupSettings(sessionTimeoutMilliseconds: 1_000_000))
        #expect(try await s.consumeAll("A", ma.memberID).texts == ["f0", "f1"])
        #expect(try await s.consumeAll("B", mb.memberID).texts == ["f0", "f1"])
        var m = OutgoingMessage.text("m", key: "k")
        m.headers = [RecordHeader(name: "h", value: bytes("v"))]
        _ = try await s.broker.publish(topic: "jobs", [m])
        return (s, ma.memberID, mb.memberID)
    }

    static let longLived = GroupSettings(leaseMilliseconds: 600_000, sessionTimeoutMilliseconds: 1_000_000, maxAttempts: 3)

    func deadLetters(_ s: Scenario, of group: String) async throws -> [Delivery] {
        let r = try await s.broker.join(group: "inspect-\(group)", member: "i", topics: ["\(group).dlq"])
        return try await s.consumeAll("inspect-\(group)", r.memberID)
    }

    @Test func nackWithDelayComesBackOnlyToThatGroupAfterTheDelay() async throws {
        let (s, a, b) = try await setUp(a: Self.longLived)
        let t0 = s.now
        let first = try await s.broker.fetch(group: "A", member: a, max: 10)
        #expect(first.texts == ["m"] && first[0].attempt == 1 && first[0].source == .ready)
        #expect(try await s.broker.nack(group: "A", member: a, first.map(\.receipt), delay: 5_000, reason: "boom") == [nil])
        #expect(try await s.consumeAll("B", b).texts == ["m"])

        #expect(try await s.advance(by: 4_999) == 0)
        #expect(try await s.broker.fetch(group: "A", member: a, max: 10).isEmpty)
        #expect(try await s.advance(by: 1) == 1)
        let second = try await s.broker.fetch(group: "A", member: a, max: 10)
        #expect(second.texts == ["m"])
        #expect(try await s.broker.fetch(group: "B", member: b, max: 10).isEmpty)
        guard let d = second.first else { return }
        #expect(d.source == .retry)
        #expect(d.attempt == 2)
        #expect(d.lastError == "boom")
        #expect(d.id == first[0].id)
        #expect(d.key == bytes("k"))
        #expect(d.headers == [RecordHeader(name: "h", value: bytes("v"))])
        #expect(d.publishedAt == t0 && d.dueAt == t0)

        // Without delay: straight back, one attempt further; then acked for good.
        #expect(try await s.broker.nack(group: "A", member: a, [d.receipt], reason: "again") == [nil])
        let third = try await s.broker.fetch(group: "A", member: a, max: 10)
        #expect(third.texts == ["m"])
        #expect(third.map(\.attempt) == [3])
        #expect(third.map(\.source) == [.retry])
        #expect(try await s.broker.ack(group: "A", member: a, third.map(\.receipt)) == [nil])
        try await s.advance(by: 100_000)
        #expect(try await s.broker.fetch(group: "A", member: a, max: 10).isEmpty)
        #expect(try await s.broker.fetch(group: "B", member: b, max: 10).isEmpty)
        let stats = try await s.broker.groupStats("A")
        #expect(stats.partitions.map(\.committed) == [3])
        #expect(stats.partitions.map(\.retriesPending) == [0])
        await s.broker.close()
    }

    @Test func nackWithoutDelayRedeliversAtOnce() async throws {
        let (s, a, _) = try await setUp(a: Self.longLived)
        let first = try await s.broker.fetch(group: "A", member: a, max: 10)
        try await s.broker.nack(group: "A", member: a, first.map(\.receipt))
        let second = try await s.broker.fetch(group: "A", member: a, max: 10)
        #expect(second.texts == ["m"])
        #expect(second.map(\.attempt) == [2])
        #expect(second.map(\.source) == [.ready])
        #expect(second.map(\.offset) == [2])
        await s.broker.close()
    }

    @Test func pastGroupMaxAttemptsTheMessageIsDeadLettered() async throws {
        let (s, a, b) = try await setUp(a: Self.longLived)
        var attempts: [Int] = []
        for n in 0..<3 {
            let got = try await s.broker.fetch(group: "A", member: a, max: 10)
            #expect(got.texts == ["m"])
            attempts += got.map(\.attempt)
            #expect(try await s.broker.nack(group: "A", member: a, got.map(\.receipt), delay: 1_000, reason: "fail \(n)") == [nil])
            try await s.advance(by: 1_000)
        }
        #expect(attempts == [1, 2, 3])
        #expect(try await s.broker.fetch(group: "A", member: a, max: 10).isEmpty)
        #expect(try await s.consumeAll("B", b).texts == ["m"])

        let letters = try await deadLetters(s, of: "A")
        #expect(letters.texts == ["m"])
        guard let l = letters.first else { return }
        #expect(l.topic == "A.dlq")
        #expect(l.key == bytes("k"))
        #expect(l.header("h") == "v")
        #expect(l.header("chime-dlq-topic") == "jobs")
        #expect(l.header("chime-dlq-partition") == "0")
        #expect(l.header("chime-dlq-offset") == "2")
        #expect(l.header("chime-dlq-attempts") == "3")
        #expect(l.header("chime-dlq-error") == "fail 2")
        #expect(try await s.broker.groupStats("A").partitions.map(\.deadLettered) == [1])
        #expect(try await s.broker.groupStats("A").partitions.map(\.committed) == [3])
        await s.broker.close()
    }

    @Test func topicMaxAttemptsAppliesWithoutGroupOverride() async throws {
        var settings = Self.longLived
        settings.maxAttempts = nil
        let (s, a, _) = try await setUp(topic: TopicSettings(partitions: 1, maxAttempts: 2), a: settings)
        for _ in 0..<2 {
            let got = try await s.broker.fetch(group: "A", member: a, max: 10)
            #expect(got.texts == ["m"])
            try await s.broker.nack(group: "A", member: a, got.map(\.receipt), reason: "no")
        }
        #expect(try await s.broker.fetch(group: "A", member: a, max: 10).isEmpty)
        let letters = try await deadLetters(s, of: "A")
        #expect(letters.texts == ["m"])
        #expect(letters.first?.header("chime-dlq-attempts") == "2")
        #expect(letters.first?.header("chime-dlq-error") == "no")
        await s.broker.close()
    }

    @Test func leaseExpiringPastMaxAttemptsDeadLetters() async throws {
        var settings = Self.longLived
        settings.leaseMilliseconds = 1_000
        let (s, a, _) = try await setUp(a: settings)
        var attempts: [Int] = []
        for _ in 0..<3 {
            attempts += try await s.broker.fetch(group: "A", member: a, max: 10).map(\.attempt)
            s.clock.advance(by: 1_000)
        }
        #expect(attempts == [1, 2, 3])
        #expect(try await s.broker.fetch(group: "A", member: a, max: 10).isEmpty)
        let letters = try await deadLetters(s, of: "A")
        #expect(letters.texts == ["m"])
        #expect(letters.first?.header("chime-dlq-attempts") == "3")
        #expect(letters.first?.header("chime-dlq-offset") == "2")
        await s.broker.close()
    }

    @Test func termDeadLettersAtOnceAndRedriveBringsItBackToThatGroupOnly() async throws {
        let (s, a, b) = try await setUp(a: Self.longLived)
        let got = try await s.broker.fetch(group: "A", member: a, max: 10)
        #expect(try await s.broker.term(group: "A", member: a, got.map(\.receipt), reason: "poison") == [nil])
        #expect(try await s.broker.fetch(group: "A", member: a, max: 10).isEmpty)
        #expect(try await s.consumeAll("B", b).texts == ["m"])
        let letters = try await deadLetters(s, of: "A")
        #expect(letters.texts == ["m"])
        #expect(letters.first?.header("chime-dlq-attempts") == "1")
        #expect(letters.first?.header("chime-dlq-error") == "poison")
        #expect(letters.first?.header("chime-dlq-offset") == "2")

        #expect(try await s.broker.redrive(group: "A") == 1)
        #expect(try await s.broker.redrive(group: "A") == 0)
        try await s.broker.fireDue()
        let back = try await s.broker.fetch(group: "A", member: a, max: 10)
        #expect(back.texts == ["m"])
        #expect(back.map(\.attempt) == [1])
        #expect(back.map(\.source) == [.retry])
        #expect(back.first?.id == got.first?.id)
        #expect(back.first?.headers == [RecordHeader(name: "h", value: bytes("v"))])
        #expect(try await s.broker.fetch(group: "B", member: b, max: 10).isEmpty)
        #expect(try await s.broker.ack(group: "A", member: a, back.map(\.receipt)) == [nil])

        // A second dead letter later: redrive again finds exactly it.
        _ = try await s.broker.publish(topic: "jobs", [.text("n")])
        let n = try await s.broker.fetch(group: "A", member: a, max: 10)
        #expect(n.texts == ["n"])
        try await s.broker.term(group: "A", member: a, n.map(\.receipt), reason: "again")
        #expect(try await s.broker.redrive(group: "A") == 1)
        try await s.broker.fireDue()
        #expect(try await s.consumeAll("A", a).texts == ["n"])
        #expect(try await s.consumeAll("B", b).texts == ["n"])
        await s.broker.close()
    }
}

@Suite struct DeadLetterIDTests {
    /// Dead letters are messages of the dead-letter topic with ids of their own (unique in
    /// it); the original id travels in a header and comes back with a redrive.
    @Test func deadLettersHaveTheirOwnIDs() async throws {
        let s = try await Scenario.make()
        try s.broker.createTopic("jobs", settings: TopicSettings(partitions: 2))
        try s.broker.createTopic("g.dlq", settings: TopicSettings(partitions: 1))
        let published = try await s.broker.publish(topic: "jobs", [.text("x")], partition: 0)
            + s.broker.publish(topic: "jobs", [.text("y")], partition: 1)
        #expect(published.map { $0.id?.value } == [0, 0])
        let settings = GroupSettings(sessionTimeoutMilliseconds: 1_000_000)
        let m = try await s.broker.join(group: "g", member: "m", topics: ["jobs"], settings: settings)
        let got = try await s.fetchAll("g", m.memberID)
        try await s.broker.term(group: "g", member: m.memberID, got.map(\.receipt), reason: "no")
        let r = try await s.broker.join(group: "reader", member: "r", topics: ["g.dlq"], settings: settings)
        let letters = try await s.consumeAll("reader", r.memberID)
        #expect(letters.texts.sorted() == ["x", "y"])
        #expect(Set(letters.map(\.id)).count == 2)
        let dlqID = s.broker.listTopics().first { $0.name == "g.dlq" }!.id
        #expect(letters.allSatisfy { $0.id.topicID == dlqID && $0.id.kind == .ready && $0.id.value == $0.offset })
        for l in letters {
            let original = published[l.text == "x" ? 0 : 1].id!
            #expect(l.header("chime-dlq-id") == original.description)
        }
        #expect(try await s.broker.redrive(group: "g") == 2)
        try await s.broker.fireDue()
        let back = try await s.consumeAll("g", m.memberID)
        #expect(Dictionary(uniqueKeysWithValues: back.map { ($0.text, $0.id) }) == ["x": published[0].id!, "y": published[1].id!])
        await s.broker.close()
    }
}
