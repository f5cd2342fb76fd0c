import ChimeClient
import ChimeProtocol
import ChimeSchedule
import Foundation
import Logging
import ServiceLifecycle
import Synchronization

/// Runs jobs: registered job types, served from pools of topics in shared groups, with
/// bounded concurrency, leases kept while a job runs, retries through the broker's wheel,
/// dead letters for what cannot succeed, and a graceful shutdown. A swift-service-lifecycle
/// `Service`:
///
///     let worker = ChimeWorker(client: client, logger: logger)
///     worker.register(SendEmail.self, retry: .exponentialJitter(maxAttempts: 5), timeout: .seconds(30)) { job, context in
///         try await mailer.send(to: job.to)
///     }
///     worker.addPool(WorkerPool(group: "mailers", topics: ["emails"], concurrency: 16))
///     try await worker.run()
///
/// A job that returns is acked; one that throws is tried again after the strategy's wait
/// (a nack with a delay, through the wheel), and dead-lettered with the error's text once
/// its attempts are used up or at once for a `NonRetryableError`. A message without a
/// registered job name, or whose body does not decode as the job, is dead-lettered with the
/// reason, never retried.
public final class ChimeWorker: Service, Sendable {
    public struct Options: Sendable {
        /// At graceful shutdown: how long running jobs may take to finish before they are
        /// cancelled.
        public var gracePeriod: Duration
        /// The member name in the groups (shows in `chime groups show`).
        public var name: String

        public init(gracePeriod: Duration = .seconds(30), name: String = "chime-worker") {
            self.gracePeriod = gracePeriod
            self.name = name
        }
    }

    /// A class: looked up and held for every job, never copied field by field.
    final class Registration: Sendable {
        let retry: RetryStrategy
        let timeout: Duration?
        let metrics: JobMetrics
        /// Decodes the body (throwing `UndecodableJob`) and runs the handler.
        let run: @Sendable ([UInt8], JobContext) async throws -> JobResult

        init(retry: RetryStrategy, timeout: Duration?, metrics: JobMetrics, run: @escaping @Sendable ([UInt8], JobContext) async throws -> JobResult) {
            self.retry = retry
            self.timeout = timeout
            self.metrics = metrics
            self.run = run
        }
    }

    private struct Setup {
        var registrations: [String: Registration] = [:]
        var pools: [WorkerPool] = []
        var middleware: [any JobMiddleware] = []
        var fallback: Registration?
        var schedules: [Schedule] = []
        var started = false
    }

    let client: ChimeClient
    let options: Options
    let logger: Logger
    private let setup = Mutex(Setup())

    public init(client: ChimeClient, options: Options = Options(), logger: Logger) {
        self.client = client
        self.options = options
        self.logger = logger
    }

    /// Registers the handler of job type `J` (by `J.jobName`; registering a name twice
    /// replaces the first). Call before `run`.
    public func register<J: ChimeJob>(
        _ type: J.Type, retry: RetryStrategy = .exponentialJitter(), timeout: Duration? = nil,
        _ handler: @escaping @Sendable (J, JobContext) async throws -> Void
    ) {
        registerResumable(type, retry: retry, timeout: timeout) { job, context in
            try await handler(job, context)
            return .done
        }
    }

    /// Registers a handler of job type `J` that returns a `JobResult`: done, run again
    /// later with a state (a continuation), or wait for a callback. Call before `run`.
    public func registerResumable<J: ChimeJob>(
        _ type: J.Type, retry: RetryStrategy = .exponentialJitter(), timeout: Duration? = nil,
        _ handler: @escaping @Sendable (J, JobContext) async throws -> JobResult
    ) {
        let registration = Registration(retry: retry, timeout: timeout, metrics: JobMetrics(job: J.jobName)) { body, context in
            let job: J
            do {
                job = try JobCoding.decoder.decode(J.self, from: Data(body))
            } catch {
                throw UndecodableJob(name: J.jobName, error: error)
            }
            return try await handler(job, context)
        }
        setup.withLock { s in
            precondition(!s.started, "register jobs before the worker runs")
            s.registrations[J.jobName] = registration
        }
    }

    /// Registers the handler of every message no registered job name claims — without a
    /// `chime-job` header, or with a name nothing registered — with its raw body (the shell
    /// adapter `chime work` runs a command for each). Call before `run`.
    public func registerFallback(
        retry: RetryStrategy = .exponentialJitter(), timeout: Duration? = nil, _ handler: @escaping @Sendable ([UInt8], JobContext) async throws -> Void
    ) {
        registerResumableFallback(retry: retry, timeout: timeout) { body, context in
            try await handler(body, context)
            return .done
        }
    }

    /// `registerFallback` for a handler that returns a `JobResult` (a result for its flow,
    /// a split, a continuation, a callback). Call before `run`.
    public func registerResumableFallback(
        retry: RetryStrategy = .exponentialJitter(), timeout: Duration? = nil, _ handler: @escaping @Sendable ([UInt8], JobContext) async throws -> JobResult
    ) {
        let registration = Registration(retry: retry, timeout: timeout, metrics: JobMetrics(job: "*"), run: handler)
        setup.withLock { s in
            precondition(!s.started, "register jobs before the worker runs")
            s.fallback = registration
        }
    }

    /// A schedule the worker creates or updates on the broker when it runs. Call before `run`.
    func addSchedule(_ schedule: Schedule) {
        setup.withLock { s in
            precondition(!s.started, "add schedules before the worker runs")
            s.schedules.removeAll { $0.name == schedule.name }
            s.schedules.append(schedule)
        }
    }

    /// Adds a pool. Call before `run`.
    public func addPool(_ pool: WorkerPool) {
        setup.withLock { s in
            precondition(!s.started, "add pools before the worker runs")
            s.pools.append(pool)
        }
    }

    /// Adds middleware around every job; the first added is the outermost. Call before `run`.
    public func use(_ middleware: any JobMiddleware) {
        setup.withLock { s in
            precondition(!s.started, "add middleware before the worker runs")
            s.middleware.append(middleware)
        }
    }

    /// Serves every pool until graceful shutdown (or cancellation): then fetching stops,
    /// messages fetched and not started are given back at once (not counted as attempts),
    /// running jobs get the grace period to finish, and what still runs after it is
    /// cancelled (and delivered again, not counted as an attempt).
    public func run() async throws {
        let (registrations, fallback, pools, middleware, schedules) = setup.withLock { s in
            s.started = true
            return (s.registrations, s.fallback, s.pools, s.middleware, s.schedules)
        }
        guard !pools.isEmpty else { throw WorkerError("the worker has no pool: call addPool before run") }
        guard !registrations.isEmpty || fallback != nil else { throw WorkerError("the worker has no job registered: call register before run") }
        try await ensureSchedules(schedules)
        var sessionTimeouts: [String: Int64] = [:]
        for group in Set(pools.map(\.group)) {
            let settings = try await client.createGroup(group, settings: WireGroupSettings(mode: .shared), ifAbsent: true)
            sessionTimeouts[group] = settings.sessionTimeoutMilliseconds
            if settings.mode != .shared {
                logger.warning(
                    "group is partitioned: workers beyond its partition count stay idle (chime groups configure \(group) --mode shared)",
                    metadata: ["group": "\(group)"])
            }
        }
        let shutdown = WorkerShutdown()
        let runners = pools.map {
            PoolRunner(
                pool: $0, client: client, registrations: registrations, fallback: fallback, middleware: middleware, shutdown: shutdown,
                memberName: options.name, sessionTimeoutMilliseconds: sessionTimeouts[$0.group],
                logger: logger)
        }
        let grace = options.gracePeriod
        try await withGracefulShutdownHandler {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for runner in runners { group.addTask { try await runner.run() } }
                try await group.waitForAll()
            }
        } onGracefulShutdown: {
            shutdown.begin(gracePeriod: grace)
        }
    }
}

/// Why a worker cannot run.
public struct WorkerError: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}

/// A body that is not the registered job's JSON: dead-lettered, never retried.
struct UndecodableJob: Error, CustomStringConvertible {
    let name: String
    let error: any Error
    var description: String { "the body is not a \(name) job: \(error)" }
}

/// A job that ran past its registration's timeout.
struct JobTimedOut: Error, CustomStringConvertible {
    let timeout: Duration
    var description: String { "timed out after \(timeout)" }
}

/// The worker's shutdown, shared by its pools: whether it began, and whether the grace
/// period for running jobs is over.
final class WorkerShutdown: Sendable {
    private struct State {
        var stopping = false
        var graceOver = false
    }
    private let state = Mutex(State())

    var isStopping: Bool { state.withLock { $0.stopping } }
    var isGraceOver: Bool { state.withLock { $0.graceOver } }

    func begin(gracePeriod: Duration) {
        let first = state.withLock { s -> Bool in
            defer { s.stopping = true }
            return !s.stopping
        }
        guard first else { return }
        Task {
            try? await Task.sleep(for: gracePeriod)
            self.state.withLock { $0.graceOver = true }
        }
    }
}
