import ChimeBroker
import Foundation
import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import Prometheus
import ServiceLifecycle
import Synchronization

/// The admin HTTP port (Hummingbird): health, topics, groups, Prometheus metrics, as JSON
/// described in docs/formats.md ("admin API v1"). Read-only: it changes nothing in the
/// engine beyond what any stats call does (expired leases and silent members are noticed).
///
/// A ServiceLifecycle `Service`: run it in a `ServiceGroup` (graceful shutdown stops
/// accepting and lets requests in progress finish), or use `start` and `stop`. Either
/// way `port()` returns the bound port once it listens.
public final class AdminServer: Service, Sendable {
    private let application: Application<RouterResponder<AdminRequestContext>>
    private let listening: Listening
    private let logger: Logger
    private let options: AdminOptions
    private let connections: AdminConnectionCount
    /// The overview chart's history, sampled while the server runs.
    private let sampler: ActivitySampler
    /// The group and task of `start`, for `stop`.
    private let started = Mutex<(group: ServiceGroup, task: Task<Void, any Error>)?>(nil)

    /// - Parameters:
    ///   - registry: what `/metrics` renders (see `ChimeMetrics.bootstrap()`); without
    ///     one, `/metrics` answers 404.
    ///   - connections: the broker-protocol connections' gauges, read at each scrape for
    ///     `chime_connections` and its neighbours (`ChimeServer.connectionGauges`).
    public init(
        broker: Broker, options: AdminOptions, registry: PrometheusCollectorRegistry?, connections: (@Sendable () -> ConnectionGauges)? = nil,
        logger: Logger
    ) {
        if options.tokens.isEmpty && !["127.0.0.1", "::1", "localhost"].contains(options.host) {
            logger.warning(
                "ADMIN PORT WITHOUT AUTHENTICATION on a non-loopback address: anyone who can reach \(options.host):\(options.port) can read topics, groups and metrics. Configure tokens.")
        }
        let listening = Listening()
        let routes = AdminRoutes(broker: broker, registry: registry, connections: connections)
        let router = Router(context: AdminRequestContext.self)
        let sessions = DashboardLogins()
        let gate = AdminGate(options: options, sessions: sessions)
        let sampler = ActivitySampler(registry: registry)
        router.add(middleware: gate)
        routes.register(on: router)
        Dashboard(routes: routes, sessions: sessions, configured: gate.configured, everyToken: gate.everyToken, sampler: sampler, overviewCache: OverviewCache()).register(on: router)
        // `run()` refuses invalid options before it binds: the server built here for them,
        // with the default limits, never runs.
        let limits = (try? options.validate()) == nil ? AdminOptions() : options
        let connections = AdminConnectionCount(limit: limits.maxConnections)
        application = Application(
            router: router,
            server: Self.limitedHTTP1(limits, connections: connections),
            configuration: ApplicationConfiguration(address: .hostname(options.host, port: options.port), serverName: "chime"),
            onServerRunning: { channel in listening.bound(channel.localAddress?.port ?? 0) },
            logger: logger)
        self.listening = listening
        self.sampler = sampler
        self.logger = logger
        self.options = options
        self.connections = connections
    }

    /// HTTP/1 with the options' limits: the connection limit around the channel, the idle
    /// timeout (Hummingbird's, from a connection's start or its last response to a request's
    /// head), the head limit (the HTTP decoder's), and the body limit and the timeout from a
    /// head to its request's end (`AdminRequestLimits`).
    private static func limitedHTTP1(_ options: AdminOptions, connections: AdminConnectionCount) -> HTTPServerBuilder {
        let timeout = TimeAmount(options.idleTimeout)
        let (headerBytes, bodyBytes) = (options.maxRequestHeaderBytes, options.maxRequestBodyBytes)
        let configuration = HTTP1Channel.Configuration(
            additionalChannelHandlers: [AdminRequestLimits(maxBodyBytes: bodyBytes, requestTimeout: timeout)],
            idleTimeout: timeout,
            httpDecoderConfiguration: .init(maxHeaderFieldSize: headerBytes, maxHeaderListSize: headerBytes, maxHeaderFieldCount: maxHeaderFields))
        return HTTPServerBuilder { responder in
            AdminChildChannel(http: HTTP1Channel(responder: responder, configuration: configuration), connections: connections)
        }
    }

    /// Header fields one request may have: a GET to this API needs a handful.
    private static let maxHeaderFields = 100

    /// Admin connections open now (never more than `AdminOptions.maxConnections`).
    public var connectionCount: Int { connections.current }

    /// Serves until graceful shutdown (or cancellation). Throws when the port cannot be bound,
    /// or an `OptionsError` for options that cannot be served (before binding).
    public func run() async throws {
        do {
            try options.validate()
            let sampling = Task { [sampler] in await sampler.run { Int64(Date().timeIntervalSince1970 * 1_000) } }
            defer { sampling.cancel() }
            try await application.run()
            listening.ended(nil)
        } catch {
            listening.ended(error)
            throw error
        }
    }

    /// The bound port (the one asked for, or the one the system chose for port 0), once the
    /// server listens. Throws the reason it never did (the port is taken, or it was stopped).
    public func port() async throws -> Int {
        try await listening.port()
    }

    /// Starts the server in a service group of its own; returns once it listens.
    public static func start(
        broker: Broker, options: AdminOptions, registry: PrometheusCollectorRegistry?, connections: (@Sendable () -> ConnectionGauges)? = nil,
        logger: Logger
    ) async throws -> AdminServer {
        let server = AdminServer(broker: broker, options: options, registry: registry, connections: connections, logger: logger)
        let group = ServiceGroup(configuration: ServiceGroupConfiguration(services: [server], logger: logger))
        let task = Task { try await group.run() }
        server.started.withLock { $0 = (group, task) }
        do {
            let port = try await server.port()
            logger.info("serving the admin HTTP port", metadata: ["address": "\(options.host):\(port)"])
        } catch {
            _ = try? await task.value
            throw error
        }
        return server
    }

    /// Stops a server `start` started: no new connections, requests in progress finish.
    public func stop() async {
        guard let (group, task) = started.withLock({ s in defer { s = nil }; return s }) else { return }
        await group.triggerGracefulShutdown()
        _ = try? await task.value
    }
}

/// Whether the server listens yet, and the tasks waiting to learn its port.
private final class Listening: Sendable {
    private enum State {
        case waiting([CheckedContinuation<Int, any Error>])
        case bound(Int)
        case ended(any Error)
    }

    private let state = Mutex(State.waiting([]))

    func bound(_ port: Int) {
        let waiters = state.withLock { s -> [CheckedContinuation<Int, any Error>] in
            guard case .waiting(let w) = s else { return [] }
            s = .bound(port)
            return w
        }
        for w in waiters { w.resume(returning: port) }
    }

    func ended(_ error: (any Error)?) {
        let failure = error ?? AdminServerStopped()
        let waiters = state.withLock { s -> [CheckedContinuation<Int, any Error>] in
            let w: [CheckedContinuation<Int, any Error>]
            if case .waiting(let waiting) = s { w = waiting } else { w = [] }
            s = .ended(failure)
            return w
        }
        for w in waiters { w.resume(throwing: failure) }
    }

    func port() async throws -> Int {
        try await withCheckedThrowingContinuation { continuation in
            let now: Result<Int, any Error>? = state.withLock { s in
                switch s {
                case .waiting(var w):
                    w.append(continuation)
                    s = .waiting(w)
                    return nil
                case .bound(let port): return .success(port)
                case .ended(let error): return .failure(error)
                }
            }
            if let now { continuation.resume(with: now) }
        }
    }
}

/// The admin server stopped (or was never started) before it listened.
public struct AdminServerStopped: Error, CustomStringConvertible {
    public var description: String { "the admin server is not running" }
}
