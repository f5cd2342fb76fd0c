import ChimeClient
import ChimeProtocol
import DequeModule
import Foundation
import Logging
import Synchronization

/// One pool at work: a consumer in the pool's group fetching as slots free up, each message
/// run as a child task, the leases of running jobs extended together, and the shutdown.
/// A class: each job's task holds one reference to it, not a copy of its fields.
final class PoolRunner: Sendable {
    let pool: WorkerPool
    let client: ChimeClient
    let registrations: [String: ChimeWorker.Registration]
    let fallback: ChimeWorker.Registration?
    let middleware: [any JobMiddleware]
    let shutdown: WorkerShutdown
    let memberName: String
    /// The group's session timeout, when known: the heartbeat interval is a third of it.
    let sessionTimeoutMilliseconds: Int64?
    let logger: Logger

    init(
        pool: WorkerPool, client: ChimeClient, registrations: [String: ChimeWorker.Registration], fallback: ChimeWorker.Registration?,
        middleware: [any JobMiddleware], shutdown: WorkerShutdown, memberName: String, sessionTimeoutMilliseconds: Int64?, logger: Logger
    ) {
        self.sessionTimeoutMilliseconds = sessionTimeoutMilliseconds
        self.pool = pool
        self.client = client
        self.registrations = registrations
        self.fallback = fallback
        self.middleware = middleware
        self.shutdown = shutdown
        self.memberName = memberName
        self.logger = logger
    }

    func run() async throws {
        let running = HeldMessages()
        let work = Task { try await fetchAndRun(running) }
        // At the end of the grace period what still runs is cancelled: its messages are
        // handed back when the member leaves.
        let watcher = Task {
            while !Task.isCancelled && !shutdown.isGraceOver { try? await Task.sleep(for: .milliseconds(100)) }
            if shutdown.isGraceOver { work.cancel() }
        }
        let extender = Task { await extendLeases(running) }
        let aborts = Task { await watchAborts(running) }
        defer {
            watcher.cancel()
            extender.cancel()
            aborts.cancel()
        }
        try await withTaskCancellationHandler {
            try await work.value
        } onCancel: {
            work.cancel()
        }
    }

    /// One fetcher and `concurrency` runners, each runner taking the next fetched message
    /// and running it (no task per job); then the shutdown: what was fetched and not
    /// started goes back, acks are flushed, the member leaves.
    private func fetchAndRun(_ running: HeldMessages) async throws {
        let source = FetchedMessages(prefetch: pool.prefetch)
        var messages = client.consume(group: pool.group, topics: pool.topics, member: memberName, prefetch: pool.prefetch).makeAsyncIterator()
        var unstarted: [Fetched] = []
        await withDiscardingTaskGroup { tasks in
            for _ in 0..<pool.concurrency {
                tasks.addTask {
                    // Checked before each take too: once the shutdown began, a runner whose
                    // job just ended takes nothing more, even before the buffer is stopped.
                    while !self.shutdown.isStopping, let next = await source.take() { await self.execute(next.message, ticket: next.ticket, running) }
                }
            }
            // Shutdown (or cancellation) stops the runners and the fetcher; until then the
            // fetcher is woken for a heartbeat every third of the session timeout, so the
            // member stays in the group while long jobs keep the buffer full.
            tasks.addTask {
                var lastWake = ContinuousClock.now
                let heartbeat = Duration.milliseconds(max(100, (self.sessionTimeoutMilliseconds ?? 10_000) / 3))
                while !self.shutdown.isStopping && !Task.isCancelled {
                    try? await Task.sleep(for: .milliseconds(20))
                    if ContinuousClock.now - lastWake >= heartbeat {
                        source.wakeFetcher()
                        lastWake = .now
                    }
                }
                source.stop()
            }
            // The fetcher: a fetch whenever the buffer runs low; one fetch waits at most 2 s,
            // so a stop is noticed within that.
            loop: while true {
                switch await source.waitUntilWanted() {
                case .stopped:
                    break loop
                case .heartbeat:
                    try? await messages.heartbeat()
                    continue loop
                case .fetch:
                    break
                }
                do {
                    // Held from now on: their leases are kept while they wait, not only once
                    // they run. Their leases began after the fetch was sent, and they count
                    // from then (a fetch that waited on the broker only makes the first
                    // extension come sooner).
                    let sent = ContinuousClock.now
                    source.deliver(try await messages.fetchBatch().map { Fetched(ticket: running.add($0, leasedAfter: sent), message: $0) })
                } catch {
                    if Task.isCancelled || shutdown.isStopping { break loop }
                    logger.warning("fetching failed; trying again in a second", metadata: ["group": "\(pool.group)", "error": "\(error)"])
                    try? await Task.sleep(for: .seconds(1))
                }
            }
            unstarted = source.stop()
        }
        unstarted += source.stop()
        for f in unstarted { running.remove(f.ticket) }
        // Fetched and not started: back to the group at once, not counted as attempts.
        if !unstarted.isEmpty {
            do {
                try await client.release(unstarted.map(\.message))
                logger.info("gave back messages not started", metadata: ["group": "\(pool.group)", "messages": "\(unstarted.count)"])
            } catch {
                logger.warning("giving back messages not started failed; they come again when their leases end", metadata: ["error": "\(error)"])
            }
        }
        // Every job has ended (or was cancelled at the end of the grace period): acks are
        // flushed, and leaving hands back whatever is still leased.
        await messages.leave()
    }

    /// Runs one message's job and settles it.
    private func execute(_ message: ConsumedMessage, ticket: Int, _ running: HeldMessages) async {
        defer { running.remove(ticket) }
        let d = message.delivery
        let named = JobHeader.jobName(of: d)
        guard let registration = named.flatMap({ registrations[$0] }) ?? fallback else {
            await deadLetter(message, reason: named.map { "unknown job \($0): no worker registered for it" } ?? "no \(JobHeader.name) header: not a job")
            return
        }
        let name = named ?? ""
        let metrics = registration.metrics
        let context = JobContext(d, name: name, logger: logger, client: client)
        // Aborted while it waited in the buffer: the broker has ended it already.
        guard !running.isAborted(ticket) else {
            context.logger.info("job aborted before it started")
            return
        }
        metrics.started()
        let start = ContinuousClock.now
        // Its own task, so that an abort cancels this job alone.
        let job = Task {
            try await self.withTimeout(registration.timeout, ticket: ticket, running: running) {
                let result = ResultBox()
                try await self.runThroughMiddleware(context) { result.set(try await registration.run(d.body, $0)) }
                return result.value
            }
        }
        running.attach(ticket, job)
        let outcome = await withTaskCancellationHandler { await job.result } onCancel: { job.cancel() }
        metrics.finished(after: ContinuousClock.now - start)
        if running.isAborted(ticket) {
            context.logger.info("job aborted while it ran; its task was cancelled", metadata: ["outcome": "\(outcome)"])
            return
        }
        switch outcome {
        case .success(let result):
            await settle(message, result, context, metrics)
        case .failure(let error) where Task.isCancelled && !(error is JobTimedOut):
            // The grace period ended: the member's leave hands it back, not as an attempt.
            context.logger.info("cancelled at shutdown; delivered again", metadata: ["error": "\(error)"])
        case .failure(let error as UndecodableJob):
            metrics.failed()
            metrics.deadLettered()
            await deadLetter(message, reason: error.description)
        case .failure(let error as NonRetryableError):
            metrics.failed()
            metrics.deadLettered()
            await deadLetter(message, reason: "\(error)")
        case .failure(let error):
            metrics.failed()
            if let delay = registration.retry.delay(afterAttempt: context.attempt, random: Double.random(in: 0..<1)) {
                metrics.retried()
                context.logger.info("job failed; tried again later", metadata: ["error": "\(error)", "delay-ms": "\(milliseconds(delay))"])
                do {
                    try await message.nack(delay: milliseconds(delay), reason: "\(error)")
                } catch {
                    context.logger.warning("nack failed; delivered again when its lease ends", metadata: ["error": "\(error)"])
                }
            } else {
                metrics.deadLettered()
                await deadLetter(message, reason: "failed \(context.attempt) time(s), the last: \(error)")
            }
        }
    }

    /// A job returned: done (acked), or parked in the broker's wheel (a continuation, a
    /// callback). A park that fails leaves the message leased: delivered again when its
    /// lease ends.
    private func settle(_ message: ConsumedMessage, _ result: JobResult, _ context: JobContext, _ metrics: JobMetrics) async {
        switch result.kind {
        case .done:
            metrics.succeeded()
            do {
                if pool.durableAcks { try await message.ackDurably() } else { try await message.ack() }
            } catch {
                context.logger.warning("ack failed; the job may run again", metadata: ["error": "\(error)"])
            }
        case .result(let result):
            metrics.succeeded()
            do {
                try await message.ack(result: result)
            } catch {
                context.logger.warning("ack failed; the job may run again", metadata: ["error": "\(error)"])
            }
        case .spawn(let children, let childTopic, let continuation, let continuationTopic, let policy):
            metrics.succeeded()
            do {
                let flow = try await message.spawn(
                    children, on: childTopic ?? context.topic, then: continuation, on: continuationTopic ?? context.topic, policy: policy)
                context.logger.info("job split", metadata: ["flow": "\(flow)", "children": "\(children.count)"])
            } catch {
                context.logger.warning("spawning the job's flow failed; it runs again when its lease ends", metadata: ["error": "\(error)"])
            }
        case .snooze(let delay, let state):
            metrics.parked()
            do {
                try await message.snooze(for: delay, state: state)
            } catch {
                context.logger.warning("continuing the job later failed; it runs again when its lease ends", metadata: ["error": "\(error)"])
            }
        case .callback(let timeout, let state, let parked):
            metrics.parked()
            let token: String
            do {
                token = try await message.awaitCallback(timeout: timeout, state: state)
            } catch {
                context.logger.warning("parking the job for its callback failed; it runs again when its lease ends", metadata: ["error": "\(error)"])
                return
            }
            do {
                try await parked(token)
            } catch {
                context.logger.warning("the job parked for its callback, but handing out its token failed; it waits until its timeout", metadata: ["token": "\(token)", "error": "\(error)"])
            }
        }
    }

    private func deadLetter(_ message: ConsumedMessage, reason: String) async {
        logger.warning("job dead-lettered", metadata: ["id": "\(message.id.text)", "reason": "\(reason)"])
        do {
            try await message.term(reason: reason)
        } catch {
            logger.warning("dead-lettering failed; delivered again when its lease ends", metadata: ["error": "\(error)"])
        }
    }

    private func runThroughMiddleware(_ context: JobContext, _ job: @escaping @Sendable (JobContext) async throws -> Void) async throws {
        var next = job
        for m in middleware.reversed() {
            let inner = next
            next = { context in try await m.run(context, next: inner) }
        }
        try await next(context)
    }

    /// Runs `body`; past `timeout`, cancels it and throws `JobTimedOut`. The lease stops
    /// being extended at the timeout, so a job that ignores its cancellation is delivered
    /// again once its lease ends, while its slot stays taken until it returns.
    private func withTimeout<T: Sendable>(
        _ timeout: Duration?, ticket: Int, running: HeldMessages, _ body: @escaping @Sendable () async throws -> T
    ) async throws -> T {
        guard let timeout else { return try await body() }
        return try await withThrowingTaskGroup(of: T?.self) { group in
            group.addTask { try await body() }
            group.addTask {
                try await Task.sleep(for: timeout)
                running.remove(ticket)
                throw JobTimedOut(timeout: timeout)
            }
            defer { group.cancelAll() }
            guard let first = try await group.next(), let value = first else { throw CancellationError() }
            return value
        }
    }

    /// Asks the broker for aborted leases every quarter second while the pool holds any,
    /// and cancels those jobs' tasks (one request per member, whatever it holds).
    private func watchAborts(_ running: HeldMessages) async {
        while !Task.isCancelled {
            try? await Task.sleep(for: .milliseconds(250))
            let held = running.all()
            guard !held.isEmpty else { continue }
            // Matched against what is held when the answer comes (a message fetched since
            // the question counts too), and kept a while for one not held yet.
            running.abort(Set(await client.abortNotices(for: held.map(\.message))))
        }
    }

    /// Keeps the leases of held messages: every sixth of the lease, those renewed more than
    /// a third of a lease ago are extended by a whole lease, in one request for all of them.
    /// A lease is so renewed at the latest half way through, which leaves half a lease for a
    /// process (or a broker) that is slow to be scheduled.
    private func extendLeases(_ running: HeldMessages) async {
        while !Task.isCancelled {
            // The group's lease is known from the first job; until then, look often (a first
            // sleep of a third of some default lease would outlast a short real one).
            guard let lease = running.leaseMilliseconds else {
                try? await Task.sleep(for: .milliseconds(50))
                continue
            }
            try? await Task.sleep(for: .milliseconds(max(50, lease / 6)))
            let now = ContinuousClock.now
            let due = running.dueForExtension(now: now, leaseMilliseconds: lease)
            guard !due.isEmpty else { continue }
            do {
                let results = try await client.extend(due.map(\.message), by: lease)
                // Counted from before the request: the broker renewed them no earlier.
                running.extended(due.map(\.ticket), at: now, results: results)
            } catch {
                logger.warning("extending leases failed", metadata: ["group": "\(pool.group)", "jobs": "\(due.count)", "error": "\(error)"])
            }
        }
    }
}

func milliseconds(_ d: Duration) -> Int64 {
    max(0, d.components.seconds * 1_000 + d.components.attoseconds / 1_000_000_000_000_000)
}

/// The messages a pool holds — waiting in its buffer or running — and when each lease was
/// last renewed: all of them are extended, so a message waiting behind long jobs keeps its
/// lease too.
final class HeldMessages: Sendable {
    struct Entry {
        var message: ConsumedMessage
        var renewedAt: ContinuousClock.Instant
        /// The job's task, once it runs.
        var task: Task<JobResult, any Error>?
        var aborted = false
    }
    private struct State {
        var next = 0
        var entries: [Int: Entry] = [:]
        var leaseMilliseconds: Int64?
        /// Aborted leases told before their messages were held.
        var earlyAborts: Set<WireReceipt> = []
        var earlyAbortOrder: Deque<WireReceipt> = []
    }
    private let state = Mutex(State())

    /// The group's lease, as the first delivery showed it.
    var leaseMilliseconds: Int64? { state.withLock { $0.leaseMilliseconds } }

    /// Holds `message`, whose lease the broker began no earlier than `leasedAfter`.
    func add(_ message: ConsumedMessage, leasedAfter: ContinuousClock.Instant) -> Int {
        let lease = message.delivery.leaseDeadline - message.delivery.deliveredAt
        return state.withLock { s in
            s.next += 1
            let aborted = s.earlyAborts.remove(message.delivery.receipt) != nil
            s.entries[s.next] = Entry(message: message, renewedAt: leasedAfter, aborted: aborted)
            if s.leaseMilliseconds == nil && lease > 0 { s.leaseMilliseconds = lease }
            return s.next
        }
    }

    func remove(_ ticket: Int) { _ = state.withLock { $0.entries.removeValue(forKey: ticket) } }

    /// Every message held, with its ticket.
    func all() -> [(ticket: Int, message: ConsumedMessage)] {
        state.withLock { s in s.entries.map { ($0.key, $0.value.message) } }
    }

    /// The job of `ticket` runs as `task` (cancelled at once if it was aborted meanwhile).
    func attach(_ ticket: Int, _ task: Task<JobResult, any Error>) {
        let aborted = state.withLock { s -> Bool in
            s.entries[ticket]?.task = task
            return s.entries[ticket]?.aborted ?? false
        }
        if aborted { task.cancel() }
    }

    /// The broker aborted these leases: the jobs holding them have their tasks cancelled (or
    /// never start), their leases are no longer extended. Receipts that match nothing held
    /// are kept (the last 10,000) for a message added later.
    func abort(_ receipts: Set<WireReceipt>) {
        guard !receipts.isEmpty else { return }
        let tasks = state.withLock { s -> [Task<JobResult, any Error>] in
            var tasks: [Task<JobResult, any Error>] = []
            var unmatched = receipts
            for (ticket, e) in s.entries where receipts.contains(e.message.delivery.receipt) {
                s.entries[ticket]?.aborted = true
                unmatched.remove(e.message.delivery.receipt)
                if let t = e.task { tasks.append(t) }
            }
            for r in unmatched where s.earlyAborts.insert(r).inserted { s.earlyAbortOrder.append(r) }
            while s.earlyAbortOrder.count > 10_000, let old = s.earlyAbortOrder.popFirst() { s.earlyAborts.remove(old) }
            return tasks
        }
        for t in tasks { t.cancel() }
    }

    func isAborted(_ ticket: Int) -> Bool { state.withLock { $0.entries[ticket]?.aborted ?? false } }

    /// Messages whose lease was last renewed more than a third of a lease ago.
    func dueForExtension(now: ContinuousClock.Instant, leaseMilliseconds: Int64) -> [(ticket: Int, message: ConsumedMessage)] {
        let third = Duration.milliseconds(leaseMilliseconds / 3)
        return state.withLock { s in s.entries.compactMap { !$0.value.aborted && now - $0.value.renewedAt >= third ? ($0.key, $0.value.message) : nil } }
    }

    func extended(_ tickets: [Int], at time: ContinuousClock.Instant, results: [ClientError?]) {
        state.withLock { s in
            for (ticket, result) in zip(tickets, results) where result == nil { s.entries[ticket]?.renewedAt = time }
        }
    }
}

/// The value a job returned, carried out through the middleware (whose `next` returns nothing).
final class ResultBox: Sendable {
    private let result = Mutex(JobResult.done)
    func set(_ value: JobResult) { result.withLock { $0 = value } }
    var value: JobResult { result.withLock { $0 } }
}
