import ChimeBroker
import ChimeSchedule
import ChimeStore
import ChimeTestSupport
import Testing

/// Overlap policies and fixed delay: occurrences that wait for their group to settle the
/// previous one (ack it or dead-letter it), across a restart too.
@Suite struct ScheduleOverlapTests {
    static let group = "reporters"

    static func schedule(_ spec: ScheduleSpec, overlap: OverlapPolicy = .allow) -> Schedule {
        Schedule(
            name: "report", spec: spec, target: ScheduleTarget(topic: "jobs", body: Array("run".utf8)),
            options: ScheduleOptions(overlap: overlap, group: overlap == .allow ? nil : group))
    }

    static func setUp() async throws -> (Scenario, UInt64) {
        let s = try await Scenario.make()
        try s.broker.createTopic("jobs", settings: TopicSettings(partitions: 1))
        try s.broker.createGroup(group, settings: GroupSettings(mode: .shared, leaseMilliseconds: 3_600_000, sessionTimeoutMilliseconds: 3_600_000))
        let member = try await s.broker.join(group: group, member: "w", topics: ["jobs"]).memberID
        return (s, member)
    }

    /// Occurrence numbers (seconds after `start`) of what is delivered now, not acked.
    static func take(_ s: Scenario, _ member: UInt64, since start: Int64, unit: Int64 = 1_000) async throws -> ([Int64], [DeliveryReceipt]) {
        let got = try await s.fetchAll(group, member)
        return (got.map { ((Int64($0.header("chime-occurrence") ?? "") ?? 0) - start) / unit }, got.map(\.receipt))
    }

    static func run(_ s: Scenario, for ms: Int64, step: Int64 = 100) async throws {
        var left = ms
        while left > 0 {
            try await s.advance(by: min(step, left))
            left -= step
        }
    }

    /// Waits (on the real clock) for work the broker does off the acking call.
    static func eventually(_ condition: () async throws -> Bool) async throws -> Bool {
        let end = ContinuousClock.now + .seconds(30)  // generous: the whole suite shares two cores
        while ContinuousClock.now < end {
            if try await condition() { return true }
            try await Task.sleep(for: .milliseconds(10))
        }
        return try await condition()
    }

    @Test func skipPublishesNothingWhileThePreviousOccurrenceIsUnacked() async throws {
        let (s, member) = try await Self.setUp()
        let start = s.now
        _ = try await s.broker.writeSchedule(Self.schedule(.every(intervalMs: 1_000, anchorMs: 0), overlap: .skip), .create)
        try await Self.run(s, for: 1_000)
        let (first, receipts) = try await Self.take(s, member, since: start)
        #expect(first == [1])
        try await Self.run(s, for: 3_000)  // 2, 3 and 4 come while 1 is out
        #expect(try await Self.take(s, member, since: start).0 == [])
        try await s.broker.ack(group: Self.group, member: member, receipts)
        try await Self.run(s, for: 1_000)
        #expect(try await Self.take(s, member, since: start).0 == [5])
        await s.broker.close()
    }

    @Test func bufferOneHoldsOneOccurrenceUntilThePreviousIsAcked() async throws {
        let (s, member) = try await Self.setUp()
        let start = s.now
        _ = try await s.broker.writeSchedule(Self.schedule(.every(intervalMs: 1_000, anchorMs: 0), overlap: .bufferOne), .create)
        try await Self.run(s, for: 1_000)
        let (first, receipts) = try await Self.take(s, member, since: start)
        #expect(first == [1])
        try await Self.run(s, for: 3_000)  // 2 is held, 3 and 4 skipped
        #expect(try await Self.take(s, member, since: start).0 == [])
        try await s.broker.ack(group: Self.group, member: member, receipts)
        var held: [Int64] = []
        #expect(try await Self.eventually {
            held += try await Self.take(s, member, since: start).0
            return !held.isEmpty
        })
        #expect(held == [2], "the held occurrence is published once the previous one is acked")
        await s.broker.close()
    }

    @Test func fixedDelayPlansTheNextOccurrenceFromTheAck() async throws {
        let (s, member) = try await Self.setUp()
        let start = s.now
        let info = try await s.broker.writeSchedule(Self.schedule(.fixedDelay(intervalMs: 10_000, group: Self.group)), .create)
        #expect(info.nextOccurrence == start + 10_000)
        try await Self.run(s, for: 10_000, step: 1_000)
        let (first, receipts) = try await Self.take(s, member, since: start)
        #expect(first == [10])
        try await Self.run(s, for: 30_000, step: 1_000)  // not acked: nothing more
        #expect(try await Self.take(s, member, since: start).0 == [])
        #expect(try await s.broker.schedule("report").nextOccurrence == nil)
        try await s.broker.ack(group: Self.group, member: member, receipts)  // at 40 s
        #expect(try await Self.eventually { try await s.broker.schedule("report").nextOccurrence == start + 50_000 })
        try await Self.run(s, for: 10_000, step: 1_000)
        #expect(try await Self.take(s, member, since: start).0 == [50])
        await s.broker.close()
    }

    /// The occurrence out survives a restart: still unacked, the next ones are skipped; once
    /// acked, they are published again. A fixed delay waiting for its ack still waits.
    @Test func theOccurrenceOutIsKnownAgainAfterARestart() async throws {
        let (s, member) = try await Self.setUp()
        let start = s.now
        _ = try await s.broker.writeSchedule(Self.schedule(.every(intervalMs: 1_000, anchorMs: 0), overlap: .skip), .create)
        try await Self.run(s, for: 1_000)
        let (first, _) = try await Self.take(s, member, since: start)
        #expect(first == [1])
        try await s.restart()
        let again = try await s.broker.join(group: Self.group, member: "w", topics: ["jobs"]).memberID
        try await Self.run(s, for: 2_000)
        let (redelivered, receipts) = try await Self.take(s, member: again, since: start)
        #expect(redelivered == [1], "only occurrence 1, delivered again after the restart; 2 and 3 skipped")
        try await s.broker.ack(group: Self.group, member: again, receipts)
        try await Self.run(s, for: 1_000)
        #expect(try await Self.take(s, member: again, since: start).0 == [4])
        _ = member
        await s.broker.close()
    }

    @Test func anOverlapPolicyWithoutAGroupIsRefused() async throws {
        let (s, _) = try await Self.setUp()
        var schedule = Self.schedule(.every(intervalMs: 1_000, anchorMs: 0), overlap: .skip)
        schedule.options.group = nil
        let error = await #expect(throws: BrokerError.self) { try await s.broker.writeSchedule(schedule, .create) }
        #expect(error?.code == .badSchedule)
        await s.broker.close()
    }
}

extension ScheduleOverlapTests {
    static func take(_ s: Scenario, member: UInt64, since start: Int64) async throws -> ([Int64], [DeliveryReceipt]) {
        try await take(s, member, since: start)
    }
}
