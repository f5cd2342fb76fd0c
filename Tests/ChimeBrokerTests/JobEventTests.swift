@testable import ChimeBroker
import ChimeStore
import Testing

/// Job events on a manual clock: abort by id in every state a job can be in, continuations
/// (a durable snooze that is not an attempt) and callbacks (completed exactly once, or
/// resumed at their timeout), across restarts.
@Suite struct JobEventTests {
    static let settings = GroupSettings(leaseMilliseconds: 30_000, sessionTimeoutMilliseconds: 10_000_000, maxAttempts: 2)

    func states(_ s: Scenario, _ id: MessageID) async throws -> [JobState] {
        try await s.broker.jobStatus(id, group: "g").map(\.state)
    }

    func setUp(_ s: Scenario) async throws -> UInt64 {
        try s.broker.createTopic("jobs", settings: TopicSettings(partitions: 1))
        return try await s.broker.join(group: "g", member: "w", topics: ["jobs"], settings: Self.settings).memberID
    }

    // MARK: - Abort

    @Test func abortingAScheduledJobCancelsItAndItNeverFires() async throws {
        let s = try await Scenario.make()
        let member = try await setUp(s)
        let id = try #require(try await s.broker.publish(topic: "jobs", [.text("later", at: s.now + 5_000)]).first?.id)
        #expect(try await s.broker.abort(id, reason: "order cancelled") == .cancelled)
        #expect(try await s.advance(by: 10_000) == 0)
        #expect(try await s.fetchAll("g", member).isEmpty)
        #expect(try await s.broker.abort(id, reason: "again") == .finished)
        await s.broker.close()
    }

    @Test func abortingAJobTheGroupHasNotReadYetSkipsItAndStaysSkippedAfterARestart() async throws {
        let s = try await Scenario.make()
        _ = try await setUp(s)
        let ids = try await s.broker.publish(topic: "jobs", [.text("a"), .text("b"), .text("c")]).compactMap(\.id)
        #expect(try await s.broker.abort(ids[1], reason: "not wanted") == .cancelled)
        #expect(try await states(s, ids[1]) == [.aborted(whileRunning: false, reason: "not wanted")])
        try await s.restart()
        let member = try await s.broker.join(group: "g", member: "w", topics: ["jobs"], settings: Self.settings).memberID
        #expect(try await s.consumeAll("g", member).texts == ["a", "c"])
        await s.broker.close()
    }

    @Test func abortingARunningJobEndsItsLeaseAndTellsItsMemberOnce() async throws {
        let s = try await Scenario.make()
        let member = try await setUp(s)
        let id = try #require(try await s.broker.publish(topic: "jobs", [.text("long")]).first?.id)
        let job = try #require(try await s.broker.fetch(group: "g", member: member, max: 1).first)
        #expect(try await s.broker.abort(id, reason: "stop it") == .signalled)
        #expect(try await s.broker.abortNotices(group: "g", member: member) == [job.receipt])
        #expect(try await s.broker.abortNotices(group: "g", member: member).isEmpty, "each abort is told once")
        #expect(try await s.broker.ack(group: "g", member: member, [job.receipt]).first??.code == .alreadyAcked)
        #expect(try await states(s, id) == [.aborted(whileRunning: true, reason: "stop it")])
        try await s.advance(by: 60_000)
        #expect(try await s.fetchAll("g", member).isEmpty, "never delivered again, also past its lease")
        try await s.restart()
        let again = try await s.broker.join(group: "g", member: "w", topics: ["jobs"], settings: Self.settings).memberID
        #expect(try await s.fetchAll("g", again).isEmpty, "the abort is journaled like an ack")
        await s.broker.close()
    }

    @Test func abortingAJobWaitingForARetryCancelsTheRetry() async throws {
        let s = try await Scenario.make()
        let member = try await setUp(s)
        let id = try #require(try await s.broker.publish(topic: "jobs", [.text("flaky")]).first?.id)
        let job = try await s.broker.fetch(group: "g", member: member, max: 1)
        #expect(try await s.broker.nack(group: "g", member: member, job.map(\.receipt), delay: 5_000, reason: "503") == [nil])
        #expect(try await s.broker.abort(id, reason: "give up") == .cancelled)
        #expect(try await s.advance(by: 10_000) == 0, "the retry's timer was cancelled")
        #expect(try await s.fetchAll("g", member).isEmpty)
        #expect(try await states(s, id) == [.aborted(whileRunning: false, reason: "give up")])
        await s.broker.close()
    }

    @Test func abortingARetryThatRunsSignalsItsMember() async throws {
        let s = try await Scenario.make()
        let member = try await setUp(s)
        let id = try #require(try await s.broker.publish(topic: "jobs", [.text("flaky")]).first?.id)
        let job = try await s.broker.fetch(group: "g", member: member, max: 1)
        #expect(try await s.broker.nack(group: "g", member: member, job.map(\.receipt), delay: 1_000, reason: "503") == [nil])
        try await s.advance(by: 1_000)
        let retry = try #require(try await s.broker.fetch(group: "g", member: member, max: 1).first)
        #expect(retry.source == .retry)
        #expect(try await s.broker.abort(id, reason: "stop") == .signalled)
        #expect(try await s.broker.abortNotices(group: "g", member: member) == [retry.receipt])
        await s.broker.close()
    }

    @Test func abortingAFinishedJobChangesNothing() async throws {
        let s = try await Scenario.make()
        let member = try await setUp(s)
        let id = try #require(try await s.broker.publish(topic: "jobs", [.text("quick")]).first?.id)
        _ = try await s.consumeAll("g", member)
        #expect(try await s.broker.abort(id, reason: "too late") == .finished)
        #expect(try await states(s, id) == [.succeeded])
        await s.broker.close()
    }

    @Test func abortingWithNoGroupIsRefusedAndAnUnknownIdIsUnknown() async throws {
        let s = try await Scenario.make()
        try s.broker.createTopic("jobs", settings: TopicSettings(partitions: 1))
        let id = try #require(try await s.broker.publish(topic: "jobs", [.text("x")]).first?.id)
        await expectBrokerError(.invalidArgument) { try await s.broker.abort(id, reason: "") }
        await expectBrokerError(.unknownMessage) { try await s.broker.abort(MessageID(topicID: id.topicID, partition: 0, kind: .ready, value: .max), reason: "") }
        await expectBrokerError(.unknownMessage) { try await s.broker.abort(MessageID(topicID: 9_999, partition: 0, kind: .ready, value: 0), reason: "") }
        await s.broker.close()
    }

    @Test func abortingASnoozedJobAfterARestartFindsItInTheWheelAndCancelsIt() async throws {
        let s = try await Scenario.make()
        let member = try await setUp(s)
        let id = try #require(try await s.broker.publish(topic: "jobs", [.text("poll")]).first?.id)
        let job = try #require(try await s.broker.fetch(group: "g", member: member, max: 1).first)
        _ = try await s.broker.snooze(group: "g", member: member, job.receipt, milliseconds: 60_000, state: nil)
        try await s.restart()
        let again = try await s.broker.join(group: "g", member: "w", topics: ["jobs"], settings: Self.settings).memberID
        #expect(try await s.broker.abort(id, reason: "not any more") == .cancelled, "the restart forgot where it was parked; the timer log did not")
        #expect(try await s.advance(by: 120_000) == 0)
        #expect(try await s.fetchAll("g", again).isEmpty)
        await s.broker.close()
    }

    @Test func abortingARetryThatFiredBeforeARestartFindsItInTheRetryLog() async throws {
        let s = try await Scenario.make()
        let member = try await setUp(s)
        let id = try #require(try await s.broker.publish(topic: "jobs", [.text("flaky")]).first?.id)
        let job = try await s.broker.fetch(group: "g", member: member, max: 1)
        _ = try await s.broker.nack(group: "g", member: member, job.map(\.receipt), delay: 1_000, reason: "503")
        try await s.advance(by: 1_000)
        try await s.restart()
        let again = try await s.broker.join(group: "g", member: "w", topics: ["jobs"], settings: Self.settings).memberID
        #expect(try await s.broker.abort(id, reason: "stop") == .cancelled)
        #expect(try await s.fetchAll("g", again).isEmpty)
        await s.broker.close()
    }

    // MARK: - Continuations

    @Test func aSnoozedJobComesBackAfterItsDelayWithItsStateAsTheSameAttempt() async throws {
        let s = try await Scenario.make()
        let member = try await setUp(s)
        let id = try #require(try await s.broker.publish(topic: "jobs", [.text("poll")]).first?.id)
        var job = try #require(try await s.broker.fetch(group: "g", member: member, max: 1).first)
        // Snoozed three times with maxAttempts 2: none of them counts as a failure.
        for round in 1...3 {
            #expect(job.attempt == 1)
            let parked = try await s.broker.snooze(group: "g", member: member, job.receipt, milliseconds: 5_000, state: bytes("poll \(round)"))
            #expect(parked.kind == .scheduled)
            #expect(try await states(s, id) == [.waiting(until: s.now + 5_000, callback: false)])
            #expect(try await s.advance(by: 4_999) == 0)
            #expect(try await s.fetchAll("g", member).isEmpty)
            #expect(try await s.advance(by: 1) == 1)
            job = try #require(try await s.broker.fetch(group: "g", member: member, max: 1).first)
            #expect(job.text == "poll")
            #expect(job.header("chime-state") == "poll \(round)", "the state it parked with, replacing the one before")
        }
        #expect(try await s.broker.nack(group: "g", member: member, [job.receipt], delay: 1_000, reason: "real failure") == [nil])
        #expect(try await states(s, id) == [.retrying(nextAttemptAt: s.now + 1_000, attempts: 1, lastError: "real failure")], "a first failure, not a fourth")
        await s.broker.close()
    }

    @Test func aSnoozedJobSurvivesARestart() async throws {
        let s = try await Scenario.make()
        let member = try await setUp(s)
        _ = try await s.broker.publish(topic: "jobs", [.text("poll")])
        let job = try #require(try await s.broker.fetch(group: "g", member: member, max: 1).first)
        _ = try await s.broker.snooze(group: "g", member: member, job.receipt, milliseconds: 60_000, state: bytes("cursor=17"))
        try await s.restart()
        let again = try await s.broker.join(group: "g", member: "w", topics: ["jobs"], settings: Self.settings).memberID
        #expect(try await s.fetchAll("g", again).isEmpty)
        try await s.advance(by: 60_000)
        let back = try await s.consumeAll("g", again)
        #expect(back.map { $0.header("chime-state") } == ["cursor=17"])
        await s.broker.close()
    }

    // MARK: - Callbacks

    @Test func aCallbackCompletedOnceResumesTheJobWithItsPayload() async throws {
        let s = try await Scenario.make()
        let member = try await setUp(s)
        let id = try #require(try await s.broker.publish(topic: "jobs", [.text("approve")]).first?.id)
        let job = try #require(try await s.broker.fetch(group: "g", member: member, max: 1).first)
        let token = try await s.broker.awaitCallback(group: "g", member: member, job.receipt, timeout: 60_000, state: bytes("step 2"))
        #expect(CallbackToken(token.description) == token)
        #expect(try await states(s, id) == [.waiting(until: s.now + 60_000, callback: true)])
        #expect(try await s.fetchAll("g", member).isEmpty)

        try await s.broker.completeCallback(token, payload: bytes("approved by ana"))
        await expectBrokerError(.callbackClosed) { try await s.broker.completeCallback(token, payload: bytes("twice")) }
        #expect(try await states(s, id) == [.waiting(until: s.now, callback: false)], "resumed: due now")
        try await s.advance(by: 0)
        let resumed = try await s.consumeAll("g", member)
        #expect(try await states(s, id) == [.succeeded])
        #expect(resumed.map(\.text) == ["approve"])
        #expect(resumed.first?.header("chime-callback") == "completed")
        #expect(resumed.first?.header("chime-callback-payload") == "approved by ana")
        #expect(resumed.first?.header("chime-state") == "step 2")
        #expect(resumed.first?.attempt == 1)
        try await s.advance(by: 120_000)
        #expect(try await s.fetchAll("g", member).isEmpty, "its timeout went with the completion")
        await s.broker.close()
    }

    @Test func aCallbackThatTimesOutResumesTheJobStillWaitingAndCannotBeCompletedAfter() async throws {
        let s = try await Scenario.make()
        let member = try await setUp(s)
        _ = try await s.broker.publish(topic: "jobs", [.text("approve")])
        let job = try #require(try await s.broker.fetch(group: "g", member: member, max: 1).first)
        let token = try await s.broker.awaitCallback(group: "g", member: member, job.receipt, timeout: 1_000, state: nil)
        #expect(try await s.advance(by: 1_000) == 1)
        await expectBrokerError(.callbackClosed) { try await s.broker.completeCallback(token, payload: []) }
        let resumed = try await s.consumeAll("g", member)
        #expect(resumed.map { $0.header("chime-callback") } == ["waiting"])
        #expect(resumed.first?.header("chime-callback-payload") == nil)
        await s.broker.close()
    }

    @Test func aParkedCallbackSurvivesARestartAndIsCompletedAfterIt() async throws {
        let s = try await Scenario.make()
        let member = try await setUp(s)
        _ = try await s.broker.publish(topic: "jobs", [.text("approve")])
        let job = try #require(try await s.broker.fetch(group: "g", member: member, max: 1).first)
        let token = try await s.broker.awaitCallback(group: "g", member: member, job.receipt, timeout: 86_400_000, state: nil)
        try await s.restart()
        try await s.broker.completeCallback(token, payload: bytes("ok"))
        let again = try await s.broker.join(group: "g", member: "w", topics: ["jobs"], settings: Self.settings).memberID
        try await s.advance(by: 0)
        #expect(try await s.consumeAll("g", again).map { $0.header("chime-callback-payload") } == ["ok"])
        await s.broker.close()
    }

    @Test func aTokenWithAnotherNonceOrAnotherMessagesIdCompletesNothing() async throws {
        let s = try await Scenario.make()
        let member = try await setUp(s)
        _ = try await s.broker.publish(topic: "jobs", [.text("approve")])
        let plain = try #require(try await s.broker.publish(topic: "jobs", [.text("plain", at: s.now + 5_000)]).first?.id)
        let job = try #require(try await s.broker.fetch(group: "g", member: member, max: 1).first)
        let token = try await s.broker.awaitCallback(group: "g", member: member, job.receipt, timeout: 60_000, state: nil)
        await expectBrokerError(.callbackClosed) { try await s.broker.completeCallback(CallbackToken(id: token.id, dueAt: token.dueAt, nonce: token.nonce &+ 1), payload: []) }
        await expectBrokerError(.callbackClosed) { try await s.broker.completeCallback(CallbackToken(id: plain, dueAt: s.now + 5_000, nonce: token.nonce), payload: []) }
        await expectBrokerError(.callbackClosed) {
            try await s.broker.completeCallback(CallbackToken(id: MessageID(topicID: 9_999, partition: 0, kind: .scheduled, value: 0), dueAt: 0, nonce: 1), payload: [])
        }
        #expect(try await s.advance(by: 5_000) == 1, "the plain message fires at its time, untouched")
        #expect(try await s.consumeAll("g", member).map(\.text) == ["plain"])
        try await s.broker.completeCallback(token, payload: [])
        await s.broker.close()
    }

    @Test func hostileParkValuesAreRefusedAndTheJobStaysLeased() async throws {
        let s = try await Scenario.make()
        let member = try await setUp(s)
        _ = try await s.broker.publish(topic: "jobs", [.text("x")])
        let job = try #require(try await s.broker.fetch(group: "g", member: member, max: 1).first)
        await expectBrokerError(.invalidArgument) { try await s.broker.snooze(group: "g", member: member, job.receipt, milliseconds: -1, state: nil) }
        await expectBrokerError(.invalidArgument) { try await s.broker.snooze(group: "g", member: member, job.receipt, milliseconds: .max, state: nil) }
        await expectBrokerError(.messageTooLarge) {
            try await s.broker.snooze(group: "g", member: member, job.receipt, milliseconds: 1, state: [UInt8](repeating: 7, count: Broker.maxStateBytes + 1))
        }
        await expectBrokerError(.invalidArgument) { try await s.broker.awaitCallback(group: "g", member: member, job.receipt, timeout: .min, state: nil) }
        await expectBrokerError(.messageTooLarge) {
            try await s.broker.completeCallback(CallbackToken(id: MessageID(topicID: 1, partition: 0, kind: .scheduled, value: 0), dueAt: 0, nonce: 1), payload: [UInt8](repeating: 0, count: Broker.maxStateBytes + 1))
        }
        var stale = job.receipt
        stale.lease &+= 1
        await expectBrokerError(.unknownDelivery) { try await s.broker.snooze(group: "g", member: member, stale, milliseconds: 1, state: nil) }
        #expect(try await s.broker.ack(group: "g", member: member, [job.receipt]) == [nil], "still leased after every refusal")
        #expect(CallbackToken("3-1-s5.100.0000000000000001") == CallbackToken(id: MessageID(topicID: 3, partition: 1, kind: .scheduled, value: 5), dueAt: 100, nonce: 1))
        #expect(CallbackToken("3-1-r5.100.0000000000000001") == nil, "a ready id is no callback")
        #expect(CallbackToken("3-1-s5.100.1") == nil)
        #expect(CallbackToken("3-1-s5.-1.0000000000000001") == nil)
        #expect(CallbackToken("3-1-s5.100.zzzzzzzzzzzzzzzz") == nil)
        #expect(CallbackToken("3-1-s5.0000000000000001") == nil, "no due time")
        await s.broker.close()
    }
}
