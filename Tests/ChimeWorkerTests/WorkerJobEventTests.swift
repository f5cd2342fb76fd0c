import ChimeClient
import ChimeProtocol
import ChimeTestSupport
import ChimeWorker
import Foundation
import Synchronization
import Testing

/// Job events through ChimeWorker and a real `chime serve`: an abort cancels the running
/// job's task, a continuation runs the job again with its state (not as a failed attempt),
/// a callback resumes it once with the payload or at its timeout; fenced writes through the
/// client are refused once their token is stale.
@Suite struct WorkerJobEventTests {
    struct Step: ChimeJob {
        static let jobName = "step"
        var name: String
    }

    private func makeWorker(_ client: ChimeClient) -> ChimeWorker {
        ChimeWorker(client: client, options: .init(gracePeriod: .seconds(2), name: "events"), logger: testLogger)
    }

    @Test func anAbortCancelsTheRunningJobsTaskAndItIsNeverRunAgain() async throws {
        let server = try WorkerTestServer()
        defer { server.stop() }
        let client = server.client("abort")
        try await client.createTopic("jobs", settings: topicSettings(partitions: 1))
        let id = try await client.enqueue(Step(name: "long"), to: "jobs")

        let runs = Mutex(0)
        let cancelled = Mutex(false)
        let worker = makeWorker(client)
        worker.register(Step.self, retry: .never) { _, _ in
            runs.withLock { $0 += 1 }
            do {
                try await Task.sleep(for: .seconds(3_600))
            } catch {
                cancelled.withLock { $0 = true }
                throw error
            }
        }
        worker.addPool(WorkerPool(group: "g", topics: ["jobs"], concurrency: 2))
        let running = RunningWorker(worker)
        #expect(await eventually { runs.withLock { $0 } == 1 })
        #expect(try await client.abort(id, reason: "customer cancelled") == .signalled)
        #expect(await eventually { cancelled.withLock { $0 } }, "the job's task saw its cancellation")
        #expect(try await client.jobStatus(id, group: "g").map(\.state) == [.aborted(whileRunning: true, reason: "customer cancelled")])
        #expect(try await client.abort(id) == .finished)
        // Nothing left in the group: not leased, not waiting for a retry.
        #expect(await eventually { try await client.groupIsDone("g", topic: "jobs") })
        try await running.stop()
        #expect(runs.withLock { $0 } == 1)
        #expect(try await client.deadLetters(of: "g").isEmpty)
        await client.close()
    }

    @Test func aContinuationRunsAgainWithItsStateAsTheSameAttemptUntilDone() async throws {
        let server = try WorkerTestServer()
        defer { server.stop() }
        let client = server.client("continue")
        try await client.createTopic("jobs", settings: topicSettings(partitions: 1, maxAttempts: 2))
        let id = try await client.enqueue(Step(name: "poll"), to: "jobs")

        let seen = Mutex<[(state: Int?, attempt: Int)]>([])
        let worker = makeWorker(client)
        worker.registerResumable(Step.self, retry: .never) { _, context in
            let polls = try context.state(as: Int.self)
            seen.withLock { $0.append((polls, context.attempt)) }
            guard let polls, polls >= 3 else { return try .continueAfter(.milliseconds(50), state: (polls ?? 0) + 1) }
            return .done
        }
        worker.addPool(WorkerPool(group: "g", topics: ["jobs"], concurrency: 1))
        let running = RunningWorker(worker)
        #expect(await eventually { try await client.jobStatus(id, group: "g").map(\.state) == [.succeeded] })
        // Succeeded means the last run returned: never a parking being handed over (a CI
        // run once saw `succeeded` between the third run and the fourth).
        #expect(seen.withLock { $0.count } == 4, "succeeded only after the fourth run")
        try await running.stop()
        #expect(seen.withLock { $0.map(\.state) } == [nil, 1, 2, 3])
        #expect(seen.withLock { $0.map(\.attempt) } == [1, 1, 1, 1], "a continuation is not a failed attempt (max attempts 2)")
        await client.close()
    }

    @Test func aCallbackResumesTheJobOnceWithThePayload() async throws {
        let server = try WorkerTestServer()
        defer { server.stop() }
        let client = server.client("callback")
        try await client.createTopic("jobs", settings: topicSettings(partitions: 1))
        let id = try await client.enqueue(Step(name: "approve"), to: "jobs")

        let token = Mutex<String?>(nil)
        let outcomes = Mutex<[CallbackOutcome?]>([])
        let worker = makeWorker(client)
        worker.registerResumable(Step.self, retry: .never) { _, context in
            outcomes.withLock { $0.append(context.callback) }
            guard context.callback == nil else { return .done }
            return .awaitCallback(timeout: .seconds(3_600), state: Array("asked ana".utf8)) { t in token.withLock { $0 = t } }
        }
        worker.addPool(WorkerPool(group: "g", topics: ["jobs"], concurrency: 1))
        let running = RunningWorker(worker)
        #expect(await eventually { token.withLock { $0 } != nil })
        let t = try #require(token.withLock { $0 })
        #expect(try await client.jobStatus(id, group: "g").map(\.state.name) == ["awaiting-callback"])
        try await client.complete(callback: t, payload: Array("approved".utf8))
        do {
            try await client.complete(callback: t, payload: Array("again".utf8))
            Issue.record("a second completion went through")
        } catch let error as ClientError {
            #expect(error.wireCode == .callbackClosed, "\(error)")
        }
        #expect(await eventually { try await client.jobStatus(id, group: "g").map(\.state) == [.succeeded] })
        try await running.stop()
        #expect(outcomes.withLock { $0 } == [nil, .completed(payload: Array("approved".utf8))])
        await client.close()
    }

    @Test func aCallbackNobodyCompletesResumesTheJobAtItsTimeout() async throws {
        let server = try WorkerTestServer()
        defer { server.stop() }
        let client = server.client("timeout")
        try await client.createTopic("jobs", settings: topicSettings(partitions: 1))
        let id = try await client.enqueue(Step(name: "approve"), to: "jobs")

        let outcomes = Mutex<[CallbackOutcome?]>([])
        let worker = makeWorker(client)
        worker.registerResumable(Step.self, retry: .never) { _, context in
            outcomes.withLock { $0.append(context.callback) }
            return context.callback == nil ? .awaitCallback(timeout: .milliseconds(200)) { _ in } : .done
        }
        worker.addPool(WorkerPool(group: "g", topics: ["jobs"], concurrency: 1))
        let running = RunningWorker(worker)
        #expect(await eventually { try await client.jobStatus(id, group: "g").map(\.state) == [.succeeded] })
        try await running.stop()
        #expect(outcomes.withLock { $0 } == [nil, .timedOut])
        await client.close()
    }

    struct Report: ChimeJob {
        static let jobName = "report"
        var shards: Int
    }
    struct ReportShard: ChimeJob {
        static let jobName = "report-shard"
        var of: Int
    }
    struct ReportTotal: ChimeJob {
        static let jobName = "report-total"
    }

    @Test func aShardedJobSplitsRunsEveryShardOnceAndReducesTheirResultsOnce() async throws {
        let server = try WorkerTestServer()
        defer { server.stop() }
        let client = server.client("shards")
        try await client.createTopic("reports", settings: topicSettings(partitions: 3))
        try await client.enqueue(Report(shards: 50), to: "reports")

        let shardsRun = Mutex<[Int: Int]>([:])
        let totals = Mutex<[(sum: Int, count: Int, flow: String?)]>([])
        let worker = makeWorker(client)
        worker.registerResumable(Report.self) { report, _ in
            try .spawn(shards: 0..<report.shards, { _ in ReportShard(of: report.shards) }, then: ReportTotal())
        }
        worker.registerResumable(ReportShard.self) { _, context in
            let shard = try #require(context.flow?.index)
            shardsRun.withLock { $0[shard, default: 0] += 1 }
            return .done(result: "\(shard * shard)")
        }
        worker.register(ReportTotal.self) { _, context in
            let outcomes = try await context.childOutcomes()
            totals.withLock { $0.append((outcomes.compactMap { Int($0.detail) }.reduce(0, +), outcomes.count, context.continues)) }
        }
        worker.addPool(WorkerPool(group: "g", topics: ["reports"], concurrency: 4))
        let running = RunningWorker(worker)
        #expect(await eventually(within: .seconds(120)) { totals.withLock { !$0.isEmpty } })
        #expect(await eventually { try await client.groupIsDone("g", topic: "reports") })
        try await running.stop()
        #expect(shardsRun.withLock { $0 } == Dictionary(uniqueKeysWithValues: (0..<50).map { ($0, 1) }), "each shard ran once, with its index")
        let total = totals.withLock { $0 }
        #expect(total.count == 1, "the reducer ran once")
        #expect(total.first?.count == 50 && total.first?.sum == (0..<50).reduce(0) { $0 + $1 * $1 })
        let flow = try #require(total.first?.flow)
        let status = try await client.flow(flow)
        #expect(status.state == 1 && status.succeeded == 50)
        await client.close()
    }

    @Test func fencedPublishesAndAcksAreRefusedOnceANewerTokenWasGranted() async throws {
        let server = try WorkerTestServer()
        defer { server.stop() }
        let client = server.client("fence")
        try await client.createTopic("ledger", settings: topicSettings(partitions: 1))
        let old = try await client.acquire("ledger", ttl: .seconds(60))
        _ = try await client.publish([OutgoingRecord(body: Array("under the live token".utf8))], to: "ledger", fencedBy: old)
        // The holder loses the lock (taken by force: no timing involved); another takes it.
        try await client.forceRelease("ledger")
        let new = try await client.acquire("ledger", ttl: .seconds(60))
        #expect(new.token > old.token)
        do {
            _ = try await client.publish([OutgoingRecord(body: Array("stale".utf8))], to: "ledger", fencedBy: old)
            Issue.record("a publish under a stale token went through")
        } catch let error as ClientError {
            #expect(error.wireCode == .staleToken, "\(error)")
        }
        _ = try await client.publish([OutgoingRecord(body: Array("under the new token".utf8))], to: "ledger", fencedBy: new)
        #expect(try await client.peek(topic: "ledger", partition: 0).map(\.text) == ["under the live token", "under the new token"])

        var messages = client.consume(group: "g", topics: ["ledger"]).makeAsyncIterator()
        let first = try #require(try await messages.next())
        do {
            try await first.ack(fencedBy: old)
            Issue.record("an ack under a stale token went through")
        } catch let error as ClientError {
            #expect(error.wireCode == .staleToken, "\(error)")
        }
        try await first.ack(fencedBy: new)
        await messages.leave()
        await client.close()
    }
}
