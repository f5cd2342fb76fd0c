@testable import ChimeBroker
import ChimeStore
import Testing

/// Flows on a manual clock: a job spawns children and a continuation; each child's end is
/// counted once; the continuation is published exactly once — when the last child ends,
/// or at the first failure when failing fast — across restarts, nested, and aborted.
@Suite struct FlowTests {
    static let settings = GroupSettings(mode: .shared, leaseMilliseconds: 30_000, sessionTimeoutMilliseconds: 10_000_000, maxAttempts: 2)

    struct Setup {
        let s: Scenario
        var member: UInt64
    }

    func setUp() async throws -> Setup {
        let s = try await Scenario.make()
        try s.broker.createTopic("jobs", settings: TopicSettings(partitions: 2))
        try s.broker.createTopic("shards", settings: TopicSettings(partitions: 3))
        let member = try await s.broker.join(group: "g", member: "w", topics: ["jobs", "shards"], settings: Self.settings).memberID
        return Setup(s: s, member: member)
    }

    /// Publishes a parent job and spawns `count` children from it.
    func spawn(_ f: Setup, count: Int, policy: FlowPolicy = .waitForAll, parent: String = "split") async throws -> FlowRef {
        // One key for every parent: one partition, one flow table.
        _ = try await f.s.broker.publish(topic: "jobs", [.text(parent, key: "parents")])
        let job = try #require(try await f.s.fetchAll("g", f.member).first { $0.text == parent })
        return try await f.s.broker.spawnFlow(
            group: "g", member: f.member, job.receipt, childTopic: "shards", children: (0..<count).map { .text("shard \($0)") }, policy: policy,
            continuationTopic: "jobs", continuation: .text("reduce"))
    }

    func children(_ f: Setup) async throws -> [Delivery] {
        try await f.s.fetchAll("g", f.member).filter { $0.topic == "shards" }
    }

    /// Continuations delivered now, acked.
    func continuations(_ f: Setup) async throws -> [Delivery] {
        let got = try await f.s.fetchAll("g", f.member).filter { $0.text == "reduce" }
        _ = try await f.s.broker.ack(group: "g", member: f.member, got.map(\.receipt))
        return got
    }

    @Test func theContinuationIsPublishedOnceWhenTheLastChildEndsWithEveryOutcome() async throws {
        let f = try await setUp()
        let ref = try await spawn(f, count: 5)
        let kids = try await children(f)
        #expect(kids.count == 5)
        #expect(Set(kids.compactMap { FlowMembership.of(($0.headers)) }.map(\.index)) == [0, 1, 2, 3, 4], "each child knows its index")
        for k in kids.dropLast() {
            #expect(try await f.s.broker.ack(group: "g", member: f.member, [k.receipt], result: bytes("sum of \(k.text)")) == [nil])
        }
        #expect(try await continuations(f).isEmpty, "one child still runs")
        #expect(try await f.s.broker.flowStatus(ref).pending == 1)
        #expect(try await f.s.broker.ack(group: "g", member: f.member, [kids.last!.receipt], result: bytes("sum of \(kids.last!.text)")) == [nil])
        let next = try await continuations(f)
        #expect(next.count == 1)
        #expect(next.first?.header("chime-flow-done") == ref.description)
        let status = try await f.s.broker.flowStatus(ref)
        #expect(status.succeeded == 5 && status.failed == 0 && status.continuation != nil)

        var pages: [[FlowOutcome]] = []
        var cursor: Int64? = 0
        while let c = cursor {
            let page = try await f.s.broker.flowOutcomes(ref, from: c, max: 2)
            pages.append(page.outcomes)
            cursor = page.next
        }
        #expect(pages.map(\.count) == [2, 2, 1])
        let all = pages.flatMap { $0 }
        #expect(Set(all.map(\.index)) == [0, 1, 2, 3, 4] && all.allSatisfy(\.succeeded))
        #expect(Set(all.map { String(decoding: $0.detail, as: UTF8.self) }) == Set(kids.map { "sum of \($0.text)" }))
        await f.s.broker.close()
    }

    @Test func aChildAckedTwiceOrRetriedCountsOnce() async throws {
        let f = try await setUp()
        let ref = try await spawn(f, count: 2)
        let kids = try await children(f)
        // The first fails once and is retried: its end is its final outcome.
        #expect(try await f.s.broker.nack(group: "g", member: f.member, [kids[0].receipt], delay: 1_000, reason: "flaky") == [nil])
        #expect(try await f.s.broker.flowStatus(ref).pending == 2)
        try await f.s.advance(by: 1_000)
        let retry = try #require(try await children(f).first)
        #expect(retry.source == .retry)
        #expect(try await f.s.broker.ack(group: "g", member: f.member, [retry.receipt, retry.receipt]).compactMap { $0?.code } == [.alreadyAcked])
        #expect(try await f.s.broker.flowStatus(ref).succeeded == 1)
        _ = try await f.s.broker.ack(group: "g", member: f.member, [kids[1].receipt])
        #expect(try await continuations(f).count == 1)
        await f.s.broker.close()
    }

    @Test func aDeadLetteredChildIsAFailureWithItsReasonAndTheFlowWaitsForTheRest() async throws {
        let f = try await setUp()
        let ref = try await spawn(f, count: 3)
        let kids = try await children(f)
        #expect(try await f.s.broker.term(group: "g", member: f.member, [kids[1].receipt], reason: "bad shard") == [nil])
        #expect(try await continuations(f).isEmpty)
        _ = try await f.s.broker.ack(group: "g", member: f.member, [kids[0].receipt, kids[2].receipt])
        let next = try #require(try await continuations(f).first)
        #expect(next.headers.first { $0.name == "chime-flow-counts" }?.value == Broker.counts(2, 1))
        let outcomes = try await f.s.broker.flowOutcomes(ref).outcomes
        let failed = try #require(outcomes.first { !$0.succeeded })
        #expect(String(decoding: failed.detail, as: UTF8.self) == "bad shard")
        await f.s.broker.close()
    }

    @Test func failingFastPublishesTheContinuationAtTheFirstFailureAndAbortsTheRest() async throws {
        let f = try await setUp()
        let ref = try await spawn(f, count: 4, policy: .failFast)
        let kids = try await children(f)
        _ = try await f.s.broker.ack(group: "g", member: f.member, [kids[0].receipt])
        _ = try await f.s.broker.term(group: "g", member: f.member, [kids[1].receipt], reason: "boom")
        #expect(try await continuations(f).count == 1, "out at the first failure")
        #expect(try await f.s.broker.abortNotices(group: "g", member: f.member).count == 2, "the two still running were aborted")
        #expect(try await f.s.broker.ack(group: "g", member: f.member, [kids[2].receipt]).first??.code == .alreadyAcked)
        let status = try await f.s.broker.flowStatus(ref)
        #expect(status.succeeded == 1 && status.failed == 1 && status.continuation != nil)
        #expect(try await continuations(f).isEmpty, "published once")
        await f.s.broker.close()
    }

    @Test func aFlowSurvivesARestartAndItsChildrenAckedAfterItCompleteIt() async throws {
        let f = try await setUp()
        let ref = try await spawn(f, count: 3)
        let first = try await children(f)
        _ = try await f.s.broker.ack(group: "g", member: f.member, [first[0].receipt], result: bytes("before"))
        try await f.s.restart()
        let member = try await f.s.broker.join(group: "g", member: "w", topics: ["jobs", "shards"], settings: Self.settings).memberID
        let g = Setup(s: f.s, member: member)
        #expect(try await f.s.broker.flowStatus(ref).succeeded == 1)
        let rest = try await children(g)
        #expect(rest.count == 2, "the two unacked children come again")
        _ = try await f.s.broker.ack(group: "g", member: member, rest.map(\.receipt))
        #expect(try await continuations(g).count == 1)
        #expect(try await f.s.broker.flowOutcomes(ref).outcomes.count == 3)
        try await f.s.restart()
        let again = try await f.s.broker.join(group: "g", member: "w", topics: ["jobs", "shards"], settings: Self.settings).memberID
        #expect(try await continuations(Setup(s: f.s, member: again)).isEmpty, "not published again by the restart")
        await f.s.broker.close()
    }

    @Test func compactionKeepsOpenFlowsWithTheirOutcomesAndDropsFlowsFinishedAWeekAgo() async throws {
        let f = try await setUp()
        let done = try await spawn(f, count: 2, parent: "first")
        for k in try await children(f) { _ = try await f.s.broker.ack(group: "g", member: f.member, [k.receipt], result: bytes("r")) }
        #expect(try await continuations(f).count == 1)
        try await f.s.advance(by: FlowTable.retentionMilliseconds + 1)
        // A week later: the member timed out meanwhile and joins again.
        let later = Setup(s: f.s, member: try await f.s.broker.join(group: "g", member: "w", topics: ["jobs", "shards"], settings: Self.settings).memberID)
        let open = try await spawn(later, count: 3, parent: "second")
        let kids = try await children(later)
        _ = try await f.s.broker.ack(group: "g", member: later.member, [kids[0].receipt], result: bytes("kept"))
        #expect(done.partition == open.partition, "one table holds both")
        let p = try #require(f.s.broker.partition(PartitionKey(topicID: open.topicID, partition: open.partition)))
        try await p.compactFlows()
        try await f.s.restart()
        let member = try await f.s.broker.join(group: "g", member: "w", topics: ["jobs", "shards"], settings: Self.settings).memberID
        await expectBrokerError(.unknownMessage) { try await f.s.broker.flowStatus(done) }
        #expect(try await f.s.broker.flowStatus(open).succeeded == 1)
        #expect(try await f.s.broker.flowOutcomes(open).outcomes.map(\.detail) == [bytes("kept")])
        let g = Setup(s: f.s, member: member)
        _ = try await f.s.broker.ack(group: "g", member: member, try await children(g).map(\.receipt))
        #expect(try await continuations(g).count == 1)
        #expect(try await f.s.broker.flowOutcomes(open).outcomes.count == 3)
        await f.s.broker.close()
    }

    @Test func flowsNestTheOuterContinuationWaitsForTheInnerOne() async throws {
        let f = try await setUp()
        let outer = try await spawn(f, count: 2)
        let kids = try await children(f)
        // The first child splits again: its place in the outer flow passes to its continuation.
        let inner = try await f.s.broker.spawnFlow(
            group: "g", member: f.member, kids[0].receipt, childTopic: "shards", children: [.text("leaf a"), .text("leaf b")],
            continuationTopic: "jobs", continuation: .text("inner reduce"))
        #expect(inner != outer)
        _ = try await f.s.broker.ack(group: "g", member: f.member, [kids[1].receipt])
        #expect(try await f.s.broker.flowStatus(outer).pending == 1, "the splitting child has not ended: its continuation stands for it")
        let leaves = try await children(f)
        #expect(leaves.map(\.text).sorted() == ["leaf a", "leaf b"])
        _ = try await f.s.broker.ack(group: "g", member: f.member, leaves.map(\.receipt))
        let innerDone = try await f.s.fetchAll("g", f.member)
        #expect(innerDone.map(\.text) == ["inner reduce"])
        #expect(try await f.s.broker.flowStatus(outer).pending == 1)
        _ = try await f.s.broker.ack(group: "g", member: f.member, innerDone.map(\.receipt), result: bytes("inner total"))
        let outerDone = try await continuations(f)
        #expect(outerDone.count == 1 && outerDone.first?.header("chime-flow-done") == outer.description)
        #expect(try await f.s.broker.flowOutcomes(outer).outcomes.contains { $0.detail == bytes("inner total") })
        await f.s.broker.close()
    }

    @Test func abortingAFlowAbortsItsPendingChildrenAndPublishesNoContinuation() async throws {
        let f = try await setUp()
        let ref = try await spawn(f, count: 3)
        let kids = try await children(f)
        _ = try await f.s.broker.ack(group: "g", member: f.member, [kids[0].receipt])
        #expect(try await f.s.broker.abortFlow(ref, reason: "cancelled by operator") == 2)
        #expect(try await f.s.broker.abortNotices(group: "g", member: f.member).count == 2)
        let status = try await f.s.broker.flowStatus(ref)
        #expect(status.aborted && status.continuation == nil)
        #expect(try await continuations(f).isEmpty)
        #expect(try await f.s.broker.abortFlow(ref, reason: "again") == 0)
        await f.s.broker.close()
    }

    @Test func hostileSpawnsAreRefusedAndTheParentStaysLeased() async throws {
        let f = try await setUp()
        _ = try await f.s.broker.publish(topic: "jobs", [.text("split")])
        let job = try #require(try await f.s.fetchAll("g", f.member).first)
        func spawn(_ children: [OutgoingMessage], _ continuation: OutgoingMessage = .text("reduce")) async throws -> FlowRef {
            try await f.s.broker.spawnFlow(group: "g", member: f.member, job.receipt, childTopic: "shards", children: children, continuationTopic: "jobs", continuation: continuation)
        }
        await expectBrokerError(.invalidArgument) { try await spawn([]) }
        await expectBrokerError(.invalidArgument) { try await spawn(Array(repeating: .text("x"), count: FlowTable.maxChildren + 1)) }
        await expectBrokerError(.messageTooLarge) { try await spawn([OutgoingMessage(body: [UInt8](repeating: 1, count: FlowTable.maxSpawnBytes))]) }
        await expectBrokerError(.invalidArgument) { try await spawn([OutgoingMessage(headers: [RecordHeader(name: "chime-flow", value: [])], body: [])]) }
        await expectBrokerError(.invalidArgument) { try await spawn([.text("x", at: f.s.now + 1_000)]) }
        await expectBrokerError(.messageTooLarge) { try await f.s.broker.ack(group: "g", member: f.member, [job.receipt], result: [UInt8](repeating: 0, count: 2_000)) }
        await expectBrokerError(.unknownMessage) { try await f.s.broker.flowStatus(FlowRef(topicID: 99, partition: 0, id: 0)) }
        await expectBrokerError(.invalidArgument) { try await f.s.broker.flowOutcomes(FlowRef(topicID: job.id.topicID, partition: 0, id: job.offset), from: 0, max: 0) }
        #expect(FlowRef("1-0-f5") == FlowRef(topicID: 1, partition: 0, id: 5) && FlowRef("1-0-r5") == nil && FlowRef("1-0-f-5") == nil)
        #expect(try await f.s.broker.ack(group: "g", member: f.member, [job.receipt]) == [nil], "still leased after every refusal")
        await f.s.broker.close()
    }
}
