import ChimeClient
import ChimeProtocol
import ChimeTestSupport
import ChimeWorker
import Foundation
import Logging
import ServiceLifecycle
import Synchronization
import Testing

/// ChimeWorker in this process against a real `chime serve`: typed jobs, retries, dead
/// letters, timeouts, concurrency, leases of long jobs, middleware and graceful shutdown.
@Suite struct WorkerTests {
    struct Numbered: ChimeJob {
        static let jobName = "numbered"
        var n: Int
    }

    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    private func makeWorker(_ client: ChimeClient, name: String = "test-worker", grace: Duration = .seconds(2)) -> ChimeWorker {
        ChimeWorker(client: client, options: .init(gracePeriod: grace, name: name), logger: testLogger)
    }

    @Test func enqueuedJobsRunOnceEachAndAreAcked() async throws {
        let server = try WorkerTestServer()
        defer { server.stop() }
        let client = server.client("typed")
        try await client.createTopic("jobs", settings: topicSettings(partitions: 2))
        for n in 0..<50 { try await client.enqueue(Numbered(n: n), to: "jobs") }

        let runs = Mutex<[Int: Int]>([:])
        let names = Mutex<Set<String>>([])
        let worker = makeWorker(client)
        worker.register(Numbered.self, retry: .never) { job, context in
            runs.withLock { $0[job.n, default: 0] += 1 }
            names.withLock { _ = $0.insert(context.name) }
        }
        worker.addPool(WorkerPool(group: "g", topics: ["jobs"], concurrency: 4))
        let running = RunningWorker(worker)
        let done = await eventually { guard runs.withLock({ $0.count }) == 50 else { return false }; return try await client.groupIsDone("g", topic: "jobs") }
        try await running.stop()

        #expect(done, "every job ran and the group has nothing left")
        #expect(runs.withLock { $0 } == Dictionary(uniqueKeysWithValues: (0..<50).map { ($0, 1) }), "each job ran exactly once")
        #expect(names.withLock { $0 } == ["numbered"], "the context names the job")
        #expect(try await client.deadLetters(of: "g").isEmpty)
        await client.close()
    }

    @Test func aFailingJobIsRetriedByItsStrategyThenDeadLetteredWithItsError() async throws {
        let server = try WorkerTestServer()
        defer { server.stop() }
        let client = server.client("retry")
        try await client.createTopic("jobs", settings: topicSettings(partitions: 1))
        try await client.enqueue(Numbered(n: 7), to: "jobs")

        let attempts = Mutex<[(attempt: Int, lastError: String?)]>([])
        let worker = makeWorker(client)
        worker.register(Numbered.self, retry: .fixed(.milliseconds(50), maxAttempts: 3)) { job, context in
            attempts.withLock { $0.append((context.attempt, context.lastError)) }
            throw Failure(description: "the printer for job \(job.n) is on fire")
        }
        worker.addPool(WorkerPool(group: "g", topics: ["jobs"], concurrency: 2))
        let running = RunningWorker(worker)
        let lettered = await eventually { guard try await !client.deadLetters(of: "g").isEmpty else { return false }; return try await client.groupIsDone("g", topic: "jobs") }
        try await running.stop()

        #expect(lettered)
        let seen = attempts.withLock { $0 }
        #expect(seen.map(\.attempt) == [1, 2, 3], "three attempts, then no more")
        #expect(seen.first?.lastError == nil)
        #expect(seen.dropFirst().allSatisfy { $0.lastError?.contains("the printer for job 7 is on fire") == true }, "a retry knows the error before it")
        let letters = try await client.deadLetters(of: "g")
        #expect(letters.count == 1)
        #expect(letters.first?.header("chime-dlq-error")?.contains("the printer for job 7 is on fire") == true, "\(letters.first?.header("chime-dlq-error") ?? "no error")")
        #expect(letters.first?.header("chime-dlq-attempts") == "3")
        #expect(letters.first?.header("chime-job") == "numbered", "the letter is still the job")
        await client.close()
    }

    @Test func aNonRetryableErrorIsDeadLetteredAfterOneAttempt() async throws {
        let server = try WorkerTestServer()
        defer { server.stop() }
        let client = server.client("nonretryable")
        try await client.createTopic("jobs", settings: topicSettings(partitions: 1))
        try await client.enqueue(Numbered(n: 1), to: "jobs")

        let attempts = Mutex<[Int]>([])
        let worker = makeWorker(client)
        worker.register(Numbered.self, retry: .fixed(.milliseconds(50), maxAttempts: 5)) { _, context in
            attempts.withLock { $0.append(context.attempt) }
            throw NonRetryableError(Failure(description: "no such customer"))
        }
        worker.addPool(WorkerPool(group: "g", topics: ["jobs"], concurrency: 2))
        let running = RunningWorker(worker)
        let lettered = await eventually { guard try await !client.deadLetters(of: "g").isEmpty else { return false }; return try await client.groupIsDone("g", topic: "jobs") }
        try await running.stop()

        #expect(lettered)
        #expect(attempts.withLock { $0 } == [1])
        let letters = try await client.deadLetters(of: "g")
        #expect(letters.count == 1)
        #expect(letters.first?.header("chime-dlq-error")?.contains("no such customer") == true)
        #expect(letters.first?.header("chime-dlq-attempts") == "1")
        await client.close()
    }

    @Test func unknownAndUndecodableJobsAreDeadLetteredWithTheReasonAndNeverRetried() async throws {
        let server = try WorkerTestServer()
        defer { server.stop() }
        let client = server.client("unknown")
        try await client.createTopic("jobs", settings: topicSettings(partitions: 1))
        try await client.publish(Array(#"{"n":1}"#.utf8), to: "jobs", headers: [WireHeader(name: "chime-job", value: Array("nope".utf8))])
        try await client.publish(Array("not json".utf8), to: "jobs", headers: [WireHeader(name: "chime-job", value: Array("numbered".utf8))])
        try await client.publish(Array("no header at all".utf8), to: "jobs")

        let calls = Mutex(0)
        let worker = makeWorker(client)
        worker.register(Numbered.self, retry: .fixed(.milliseconds(50), maxAttempts: 5)) { _, _ in calls.withLock { $0 += 1 } }
        worker.addPool(WorkerPool(group: "g", topics: ["jobs"], concurrency: 2))
        let running = RunningWorker(worker)
        let lettered = await eventually { guard try await client.deadLetters(of: "g").count == 3 else { return false }; return try await client.groupIsDone("g", topic: "jobs") }
        try await running.stop()

        #expect(lettered)
        #expect(calls.withLock { $0 } == 0, "no handler ran")
        let letters = Dictionary(try await client.deadLetters(of: "g").map { ($0.text, $0) }, uniquingKeysWith: { a, _ in a })
        #expect(letters.count == 3, "each message dead-lettered once")
        let unknown = letters[#"{"n":1}"#]?.header("chime-dlq-error") ?? ""
        #expect(unknown.contains("unknown job nope"), "\(unknown)")
        let undecodable = letters["not json"]?.header("chime-dlq-error") ?? ""
        #expect(undecodable.contains("the body is not a numbered job"), "\(undecodable)")
        let plain = letters["no header at all"]?.header("chime-dlq-error") ?? ""
        #expect(plain.contains("no chime-job header"), "\(plain)")
        #expect(letters.values.allSatisfy { $0.header("chime-dlq-attempts") == "1" }, "never retried")
        await client.close()
    }

    @Test func aTimeoutCancelsTheJobAndCountsAsAFailedAttempt() async throws {
        let server = try WorkerTestServer()
        defer { server.stop() }
        let client = server.client("timeout")
        try await client.createTopic("jobs", settings: topicSettings(partitions: 1))
        try await client.enqueue(Numbered(n: 1), to: "jobs")

        let started = Mutex<[Int]>([])
        let cancelled = Mutex<[Int]>([])
        let completed = Mutex(0)
        let worker = makeWorker(client)
        worker.register(Numbered.self, retry: .fixed(.milliseconds(50), maxAttempts: 2), timeout: .milliseconds(300)) { _, context in
            started.withLock { $0.append(context.attempt) }
            do {
                try await Task.sleep(for: .seconds(120))
            } catch {
                cancelled.withLock { $0.append(context.attempt) }
                throw error
            }
            completed.withLock { $0 += 1 }
        }
        worker.addPool(WorkerPool(group: "g", topics: ["jobs"], concurrency: 1))
        let running = RunningWorker(worker)
        let lettered = await eventually { guard try await !client.deadLetters(of: "g").isEmpty else { return false }; return try await client.groupIsDone("g", topic: "jobs") }
        try await running.stop()

        #expect(lettered)
        #expect(started.withLock { $0 } == [1, 2], "the timed-out attempt counted: a second one, then no more")
        #expect(cancelled.withLock { $0 } == [1, 2], "each attempt saw its task cancelled")
        #expect(completed.withLock { $0 } == 0)
        let letter = try await client.deadLetters(of: "g").first
        #expect(letter?.header("chime-dlq-error")?.contains("timed out") == true, "\(letter?.header("chime-dlq-error") ?? "no error")")
        #expect(letter?.header("chime-dlq-attempts") == "2")
        await client.close()
    }

    @Test func aPoolNeverRunsMoreJobsAtOnceThanItsConcurrency() async throws {
        let server = try WorkerTestServer()
        defer { server.stop() }
        let client = server.client("concurrency")
        try await client.createTopic("jobs", settings: topicSettings(partitions: 2))
        for n in 0..<30 { try await client.enqueue(Numbered(n: n), to: "jobs") }

        struct Gauge {
            var now = 0
            var most = 0
            var done = 0
        }
        let gauge = Mutex(Gauge())
        let worker = makeWorker(client)
        worker.register(Numbered.self, retry: .never) { _, _ in
            gauge.withLock {
                $0.now += 1
                $0.most = max($0.most, $0.now)
            }
            try? await Task.sleep(for: .milliseconds(40))
            gauge.withLock {
                $0.now -= 1
                $0.done += 1
            }
        }
        // Twice the concurrency prefetched: more than 3 jobs are in this process at once.
        worker.addPool(WorkerPool(group: "g", topics: ["jobs"], concurrency: 3, prefetch: 6))
        let running = RunningWorker(worker)
        let done = await eventually { guard gauge.withLock({ $0.done }) == 30 else { return false }; return try await client.groupIsDone("g", topic: "jobs") }
        try await running.stop()

        #expect(done)
        let most = gauge.withLock { $0.most }
        #expect(most <= 3, "at most 3 at once, saw \(most)")
        #expect(most == 3, "the pool does use its 3 slots (saw at most \(most) at once)")
        await client.close()
    }

    @Test func twoWorkersShareAOnePartitionTopicInASharedGroup() async throws {
        let server = try WorkerTestServer()
        defer { server.stop() }
        let producer = server.client("producer")
        try await producer.createTopic("jobs", settings: topicSettings(partitions: 1))
        try await producer.createGroup("g", settings: WireGroupSettings(mode: .shared))

        let ranBy = Mutex<[Int: [String]]>([:])
        var clients: [ChimeClient] = []
        var workers: [RunningWorker] = []
        for name in ["w1", "w2"] {
            let client = server.client(name)
            let worker = makeWorker(client, name: name)
            worker.register(Numbered.self, retry: .never) { job, _ in
                ranBy.withLock { $0[job.n, default: []].append(name) }
                try? await Task.sleep(for: .milliseconds(25))
            }
            worker.addPool(WorkerPool(group: "g", topics: ["jobs"], concurrency: 2))
            clients.append(client)
            workers.append(RunningWorker(worker))
        }
        // Both members in before the jobs come, so that neither has taken them all.
        let joined = await eventually { try await producer.groupStats("g")?.memberCount == 2 }
        #expect(joined)
        for n in 0..<40 { try await producer.enqueue(Numbered(n: n), to: "jobs") }
        let done = await eventually { guard ranBy.withLock({ $0.count }) == 40 else { return false }; return try await producer.groupIsDone("g", topic: "jobs") }
        for w in workers { try await w.stop() }

        #expect(done)
        let runs = ranBy.withLock { $0 }
        #expect(runs.values.allSatisfy { $0.count == 1 }, "each job ran once")
        let byWorker = Dictionary(grouping: runs.values.flatMap { $0 }, by: { $0 }).mapValues(\.count)
        #expect((byWorker["w1"] ?? 0) > 0 && (byWorker["w2"] ?? 0) > 0, "both workers ran jobs: \(byWorker)")
        for c in clients { await c.close() }
        await producer.close()
    }

    /// A long job (`seconds`) and `quick` quick ones behind it under `settings`, in a pool of one
    /// slot that prefetches `prefetch`. Returns the attempts each job's handler saw, whether
    /// the group ended with nothing left, how many acks the broker refused and how many
    /// dead letters there are.
    private func runLongJob(_ settings: WireGroupSettings, seconds: Int, prefetch: Int, quick: Int) async throws -> (
        attempts: [Int: [Int]], done: Bool, ackFailures: Int, deadLetters: Int
    ) {
        let server = try WorkerTestServer()
        defer { server.stop() }
        let client = server.client("long")
        // Two attempts at most: a job delivered again is seen again, then dead-lettered.
        try await client.createTopic("jobs", settings: topicSettings(partitions: 1, maxAttempts: 2))
        try await client.createGroup("g", settings: settings)
        for n in 0...quick { try await client.enqueue(Numbered(n: n), to: "jobs") }

        let runs = Mutex<[Int: [Int]]>([:])
        let finished = Mutex(0)
        let worker = makeWorker(client)
        worker.register(Numbered.self, retry: .fixed(.milliseconds(50), maxAttempts: 2)) { job, context in
            runs.withLock { $0[job.n, default: []].append(context.attempt) }
            if job.n == 0 { try await Task.sleep(for: .seconds(seconds)) }
            finished.withLock { $0 += 1 }
        }
        worker.addPool(WorkerPool(group: "g", topics: ["jobs"], concurrency: 1, prefetch: prefetch))
        let running = RunningWorker(worker)
        let done = await eventually(within: .seconds(Int64(seconds) + 60)) {
            guard finished.withLock({ $0 }) >= quick + 1 else { return false }
            return try await client.groupIsDone("g", topic: "jobs")
        }
        await client.flushAcks()
        let ackFailures = await client.ackFailures.count
        let letters = try await client.deadLetters(of: "g").count
        try await running.stop()
        await client.close()
        return (runs.withLock { $0 }, done, ackFailures, letters)
    }

    @Test func aJobLongerThanTheLeaseIsNotDeliveredTwice() async throws {
        // Timings that leave 5 s of slack for a test process that is slow to be scheduled
        // (the whole suite runs at once on two cores; 3 s was once too little): a lease is
        // renewed half way through at the latest.
        let r = try await runLongJob(WireGroupSettings(mode: .shared, leaseMilliseconds: 10_000, sessionTimeoutMilliseconds: 15_000), seconds: 22, prefetch: 1, quick: 0)
        #expect(r.done)
        #expect(r.attempts == [0: [1]], "delivered once, its lease extended while it ran")
        #expect(r.ackFailures == 0, "the ack came within the lease")
        #expect(r.deadLetters == 0)
    }

    @Test func messagesPrefetchedBehindALongJobAreNotRunTwice() async throws {
        // Three more fetched while the long job runs in the only slot, for longer than the
        // lease: they must not be delivered again meanwhile and then run from a stale lease.
        let r = try await runLongJob(WireGroupSettings(mode: .shared, leaseMilliseconds: 10_000, sessionTimeoutMilliseconds: 15_000), seconds: 22, prefetch: 4, quick: 3)
        #expect(r.done)
        #expect(r.attempts == [0: [1], 1: [1], 2: [1], 3: [1]], "each delivered once")
        #expect(r.ackFailures == 0, "every ack was accepted")
        #expect(r.deadLetters == 0)
    }

    @Test func aJobLongerThanTheSessionTimeoutKeepsItsMemberInTheGroup() async throws {
        // The default lease and a session shorter than a third of it (with the defaults,
        // 30 s and 10 s, a third of the lease is the session timeout). The slot is busy and
        // the prefetched messages fill the buffer, so nothing is fetched: the extensions must
        // come often enough for the session too.
        // A heartbeat every third of the session timeout leaves 4 s of slack.
        let r = try await runLongJob(WireGroupSettings(mode: .shared, leaseMilliseconds: 30_000, sessionTimeoutMilliseconds: 6_000), seconds: 14, prefetch: 4, quick: 3)
        #expect(r.done)
        #expect(r.attempts == [0: [1], 1: [1], 2: [1], 3: [1]], "each delivered once: the member was not timed out while its only slot was busy")
        #expect(r.ackFailures == 0, "every ack was accepted")
        #expect(r.deadLetters == 0)
    }

    @Test func middlewareRunsAroundEveryJobInTheOrderAdded() async throws {
        struct Recorder: JobMiddleware {
            let label: String
            let log: Locked<[String: [String]]>
            func run(_ context: JobContext, next: @Sendable (JobContext) async throws -> Void) async throws {
                log.withLock { $0[context.id, default: []].append("\(label) before") }
                do {
                    try await next(context)
                    log.withLock { $0[context.id, default: []].append("\(label) after") }
                } catch {
                    log.withLock { $0[context.id, default: []].append("\(label) saw \(error)") }
                    throw error
                }
            }
        }
        let server = try WorkerTestServer()
        defer { server.stop() }
        let client = server.client("middleware")
        try await client.createTopic("jobs", settings: topicSettings(partitions: 1))
        var ids: [Int: String] = [:]
        for n in 0..<4 { ids[n] = try await client.enqueue(Numbered(n: n), to: "jobs").text }

        let log = Locked<[String: [String]]>([:])
        let worker = makeWorker(client)
        worker.use(Recorder(label: "outer", log: log))
        worker.use(Recorder(label: "inner", log: log))
        worker.register(Numbered.self, retry: .never) { job, context in
            log.withLock { $0[context.id, default: []].append("job") }
            if job.n == 3 { throw Failure(description: "three fails") }
        }
        worker.addPool(WorkerPool(group: "g", topics: ["jobs"], concurrency: 2))
        let running = RunningWorker(worker)
        let done = await eventually { guard log.withLock({ $0.count }) == 4 else { return false }; return try await client.groupIsDone("g", topic: "jobs") }
        try await running.stop()

        #expect(done)
        let seen = log.withLock { $0 }
        for n in 0..<3 {
            #expect(seen[ids[n]!] == ["outer before", "inner before", "job", "inner after", "outer after"], "job \(n)")
        }
        #expect(seen[ids[3]!] == ["outer before", "inner before", "job", "inner saw three fails", "outer saw three fails"], "a failing job")
        await client.close()
    }

    @Test func gracefulShutdownFinishesTheRunningJobAndGivesBackTheUnstartedOnesWithoutAnAttempt() async throws {
        let server = try WorkerTestServer()
        defer { server.stop() }
        let producer = server.client("producer")
        try await producer.createTopic("jobs", settings: topicSettings(partitions: 1))
        try await producer.createGroup("g", settings: WireGroupSettings(mode: .shared))
        for n in 0..<4 { try await producer.enqueue(Numbered(n: n), to: "jobs") }

        // The first worker: one slot, four prefetched; job 0 runs until the shutdown has
        // begun (a fixed second was too short for a test process starved by the whole suite).
        struct Run: Equatable {
            var n: Int
            var attempt: Int
        }
        let firstRuns = Mutex<[Run]>([])
        let firstFinished = Mutex<[Int]>([])
        let firstClient = server.client("first")
        let first = makeWorker(firstClient, name: "first", grace: .seconds(20))
        first.register(Numbered.self, retry: .fixed(.milliseconds(50), maxAttempts: 5)) { job, context in
            firstRuns.withLock { $0.append(Run(n: job.n, attempt: context.attempt)) }
            let deadline = ContinuousClock.now + .seconds(20)
            while !Task.isShuttingDownGracefully && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(10)) }
            try await Task.sleep(for: .milliseconds(100))
            firstFinished.withLock { $0.append(job.n) }
        }
        first.addPool(WorkerPool(group: "g", topics: ["jobs"], concurrency: 1, prefetch: 4))
        let firstRunning = RunningWorker(first)
        let started = await eventually { !firstRuns.withLock { $0 }.isEmpty }
        #expect(started)
        // Shut down while job 0 runs and 1...3 wait in the buffer.
        let inFlightBefore = try await producer.groupStats("g")?.inFlight ?? 0
        try await firstRunning.stop()
        #expect(inFlightBefore == 4, "all four were fetched before the shutdown")
        #expect(firstRuns.withLock { $0 } == [Run(n: 0, attempt: 1)], "nothing else started")
        #expect(firstFinished.withLock { $0 } == [0], "the running job finished")
        let afterFirst = try await producer.groupStats("g")
        #expect(afterFirst?.lag == 3, "job 0 acked, the other three waiting")
        #expect(afterFirst?.inFlight == 0, "none of them still held")
        #expect(afterFirst?.memberCount == 0, "the worker left")
        await firstClient.close()

        // A second worker gets the three given back, each as a first attempt.
        let secondRuns = Mutex<[Run]>([])
        let secondClient = server.client("second")
        let second = makeWorker(secondClient, name: "second")
        second.register(Numbered.self, retry: .never) { job, context in
            secondRuns.withLock { $0.append(Run(n: job.n, attempt: context.attempt)) }
        }
        second.addPool(WorkerPool(group: "g", topics: ["jobs"], concurrency: 2))
        let secondRunning = RunningWorker(second)
        let done = await eventually { guard secondRuns.withLock({ $0.count }) == 3 else { return false }; return try await producer.groupIsDone("g", topic: "jobs") }
        try await secondRunning.stop()

        #expect(done)
        #expect(Set(secondRuns.withLock { $0 }.map(\.n)) == [1, 2, 3], "job 0 was not delivered again")
        #expect(secondRuns.withLock { $0 }.allSatisfy { $0.attempt == 1 }, "given back without counting an attempt: \(secondRuns.withLock { $0 })")
        await secondClient.close()
        await producer.close()
    }
}
