@testable import ChimeBroker
import ChimeStore
import Testing

/// `Broker.jobStatus`: a message followed by its id through every state — scheduled,
/// cancelled, fired and ready, running, retrying, succeeded, dead — per group, and what is
/// still known after a restart.
@Suite struct JobStatusTests {
    static let settings = GroupSettings(leaseMilliseconds: 30_000, sessionTimeoutMilliseconds: 1_000_000, maxAttempts: 2)

    func states(_ s: Scenario, _ id: MessageID, group: String? = nil) async throws -> [JobState] {
        try await s.broker.jobStatus(id, group: group).map(\.state)
    }

    @Test func aScheduledJobIsScheduledUntilDueThenReadyRunningAndSucceeded() async throws {
        let s = try await Scenario.make()
        try s.broker.createTopic("jobs", settings: TopicSettings(partitions: 1))
        let m = try await s.broker.join(group: "g", member: "w", topics: ["jobs"], settings: Self.settings)
        let due = s.now + 5_000
        _ = try await s.broker.publish(topic: "jobs", [.text("before")])
        let id = try #require(try await s.broker.publish(topic: "jobs", [.text("job", at: due)]).first?.id)
        #expect(id.kind == .scheduled)
        #expect(try await states(s, id) == [.scheduled(dueAt: due)])

        #expect(try await s.advance(by: 5_000) == 1)
        #expect(try await states(s, id) == [.ready], "fired, found in the ready log by its due time")
        let got = try await s.broker.fetch(group: "g", member: m.memberID, max: 10)
        #expect(got.map(\.text) == ["before", "job"])
        let job = try #require(got.last)
        #expect(try await states(s, id, group: "g") == [.running(member: m.memberID, attempt: 1, leaseDeadline: job.leaseDeadline)])
        #expect(try await s.broker.ack(group: "g", member: m.memberID, [job.receipt]) == [nil])
        #expect(try await states(s, id) == [.succeeded])
        // The one before it was only fetched: still running.
        let before = MessageID(topicID: id.topicID, partition: 0, kind: .ready, value: got[0].offset)
        #expect(try await states(s, before) == [.running(member: m.memberID, attempt: 1, leaseDeadline: got[0].leaseDeadline)])
        await s.broker.close()
    }

    @Test func aCancelledJobIsCancelledBeforeAndAfterItsDueTime() async throws {
        let s = try await Scenario.make()
        try s.broker.createTopic("jobs", settings: TopicSettings(partitions: 1))
        let id = try #require(try await s.broker.publish(topic: "jobs", [.text("job", at: s.now + 5_000)]).first?.id)
        try await s.broker.cancel(id)
        #expect(try await states(s, id) == [.cancelled])
        try await s.advance(by: 10_000)
        #expect(try await states(s, id) == [.cancelled], "past its due time: not in the ready log, which reaches back that far")
        await s.broker.close()
    }

    @Test func eachGroupHasItsOwnState() async throws {
        let s = try await Scenario.make()
        try s.broker.createTopic("jobs", settings: TopicSettings(partitions: 1))
        let a = try await s.broker.join(group: "a", member: "w", topics: ["jobs"], settings: Self.settings)
        _ = try await s.broker.join(group: "b", member: "w", topics: ["jobs"], settings: Self.settings)
        let id = try #require(try await s.broker.publish(topic: "jobs", [.text("job")]).first?.id)
        #expect(try await s.broker.jobStatus(id) == [JobStatus(group: "a", state: .ready), JobStatus(group: "b", state: .ready)])
        _ = try await s.consumeAll("a", a.memberID)
        #expect(try await s.broker.jobStatus(id) == [JobStatus(group: "a", state: .succeeded), JobStatus(group: "b", state: .ready)])
        #expect(try await s.broker.jobStatus(id, group: "b") == [JobStatus(group: "b", state: .ready)])
        await s.broker.close()
    }

    @Test func aFailedJobIsRetryingThenRunningAgainThenDeadWithItsReason() async throws {
        let s = try await Scenario.make()
        try s.broker.createTopic("jobs", settings: TopicSettings(partitions: 1))
        let m = try await s.broker.join(group: "g", member: "w", topics: ["jobs"], settings: Self.settings)
        let id = try #require(try await s.broker.publish(topic: "jobs", [.text("job")]).first?.id)
        let first = try await s.broker.fetch(group: "g", member: m.memberID, max: 10)
        #expect(try await s.broker.nack(group: "g", member: m.memberID, first.map(\.receipt), delay: 2_000, reason: "timeout talking to smtp") == [nil])
        #expect(try await states(s, id) == [.retrying(nextAttemptAt: s.now + 2_000, attempts: 1, lastError: "timeout talking to smtp")])

        #expect(try await s.advance(by: 2_000) == 1)
        #expect(try await states(s, id) == [.retrying(nextAttemptAt: nil, attempts: 1, lastError: "timeout talking to smtp")], "in the retry log, not fetched yet")
        let second = try await s.broker.fetch(group: "g", member: m.memberID, max: 10)
        let retry = try #require(second.first)
        #expect(retry.source == .retry)
        #expect(try await states(s, id) == [.running(member: m.memberID, attempt: 2, leaseDeadline: retry.leaseDeadline)])
        #expect(try await s.broker.nack(group: "g", member: m.memberID, [retry.receipt], reason: "still down") == [nil])
        #expect(try await states(s, id) == [.dead(reason: "still down", attempts: 2)], "max attempts 2")

        // Known from the dead-letter topic after a restart too.
        try await s.restart()
        #expect(try await states(s, id) == [.dead(reason: "still down", attempts: 2)])
        await s.broker.close()
    }

    @Test func aRetriedJobThatSucceedsIsSucceeded() async throws {
        let s = try await Scenario.make()
        try s.broker.createTopic("jobs", settings: TopicSettings(partitions: 1))
        let m = try await s.broker.join(group: "g", member: "w", topics: ["jobs"], settings: Self.settings)
        let id = try #require(try await s.broker.publish(topic: "jobs", [.text("job")]).first?.id)
        let first = try await s.broker.fetch(group: "g", member: m.memberID, max: 10)
        try await s.broker.nack(group: "g", member: m.memberID, first.map(\.receipt), delay: 1_000, reason: "flaky")
        try await s.advance(by: 1_000)
        let second = try await s.broker.fetch(group: "g", member: m.memberID, max: 10)
        #expect(try await s.broker.ack(group: "g", member: m.memberID, second.map(\.receipt)) == [nil])
        #expect(try await states(s, id) == [.succeeded])
        await s.broker.close()
    }

    @Test func afterARestartAnAckedJobIsFinishedAndOneAckedSinceIsSucceeded() async throws {
        let s = try await Scenario.make()
        try s.broker.createTopic("jobs", settings: TopicSettings(partitions: 1))
        let m = try await s.broker.join(group: "g", member: "w", topics: ["jobs"], settings: Self.settings)
        let ids = try await s.broker.publish(topic: "jobs", [.text("one"), .text("two")]).compactMap(\.id)
        let got = try await s.broker.fetch(group: "g", member: m.memberID, max: 1)
        #expect(try await s.broker.ack(group: "g", member: m.memberID, got.map(\.receipt)) == [nil])
        try await s.restart()
        // No member has joined since: the group's state is read from disk.
        #expect(try await states(s, ids[0]) == [.finished], "acked before the restart: a retry then would not be known")
        #expect(try await states(s, ids[1]) == [.ready])
        let again = try await s.broker.join(group: "g", member: "w", topics: ["jobs"])
        _ = try await s.consumeAll("g", again.memberID)
        #expect(try await states(s, ids[1]) == [.succeeded])
        await s.broker.close()
    }

    @Test func idsThatNameNothingAreUnknownMessages() async throws {
        let s = try await Scenario.make()
        try s.broker.createTopic("jobs", settings: TopicSettings(partitions: 1))
        let id = try #require(try await s.broker.publish(topic: "jobs", [.text("job")]).first?.id)
        for bad in [
            MessageID(topicID: id.topicID, partition: 0, kind: .ready, value: 1),
            MessageID(topicID: id.topicID, partition: 0, kind: .ready, value: .max),
            MessageID(topicID: id.topicID, partition: 0, kind: .scheduled, value: 0),
            MessageID(topicID: id.topicID, partition: 0, kind: .scheduled, value: .max),
            MessageID(topicID: id.topicID, partition: 7, kind: .ready, value: 0),
            MessageID(topicID: .max, partition: 0, kind: .ready, value: 0),
        ] {
            await expectBrokerError(.unknownMessage) { _ = try await s.broker.jobStatus(bad) }
        }
        await expectBrokerError(.unknownGroup) { _ = try await s.broker.jobStatus(id, group: "nobody") }
        await s.broker.close()
    }
}

/// The in-memory record of retries and dead letters stays bounded in entries and in bytes.
@Suite struct JobOutcomesTests {
    @Test func theOldestOutcomesGoPastTheCapacityAndLongTextsAreCut() {
        var outcomes = JobOutcomes(capacity: 2)
        let p = PartitionKey(topicID: 1, partition: 0)
        let long = String(repeating: "é", count: 40_000)
        for offset in Int64(0)..<3 { outcomes.record(.dead(reason: long, attempts: 1), for: .init(partition: p, readyOffset: offset)) }
        #expect(outcomes.count == 2)
        #expect(outcomes.forgotSome)
        #expect(outcomes[.init(partition: p, readyOffset: 0)] == nil)
        guard case .dead(let reason, _) = outcomes[.init(partition: p, readyOffset: 2)] else {
            Issue.record("the newest outcome is kept")
            return
        }
        #expect(reason.utf8.count <= JobOutcomes.maxTextBytes && reason.hasSuffix("…") && reason.hasPrefix("éé"))
    }
}
