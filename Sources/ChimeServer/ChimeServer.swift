import ChimeBroker
import ChimeProtocol
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import ServiceLifecycle

/// The broker protocol on TCP (SwiftNIO). `start` binds and returns; `shutdown` stops
/// accepting and closes every connection once the requests it has read are answered;
/// `stop` closes everything at once. As a lifecycle `Service`, `run()` waits for graceful
/// shutdown and then shuts down.
public final class ChimeServer: Service, Sendable {
    /// When a connection's socket stops taking replies, the server stops reading from it
    /// (its replies are queued in the channel above the high mark) until the queue is back
    /// below the low mark. Large enough for a few fetch replies in flight, small beside a
    /// connection's byte budget.
    public static let writeBufferWaterMark = ChannelOptions.Types.WriteBufferWaterMark(low: 256 << 10, high: 1 << 20)

    private let channel: any Channel
    private let connections: ConnectionRegistry
    private let logger: Logger
    /// The bound port (the one asked for, or the one the system chose for port 0).
    public let port: Int

    private init(channel: any Channel, connections: ConnectionRegistry, logger: Logger) {
        self.channel = channel
        self.connections = connections
        self.logger = logger
        port = channel.localAddress?.port ?? 0
    }

    public static func start(broker: Broker, options: ServerOptions, logger: Logger) async throws -> ChimeServer {
        // An empty token or a limit that serves nobody is refused before anything binds.
        try options.validate()
        if options.tokens.isEmpty && options.host != "127.0.0.1" && options.host != "::1" && options.host != "localhost" {
            logger.warning(
                "SERVING WITHOUT AUTHENTICATION on a non-loopback address: anyone who can reach \(options.host):\(options.port) can publish and consume. Configure tokens.")
        }
        // Files are checked before binding: a bad certificate path stops the start.
        let tls = try options.tls.map { try $0.makeContext() }
        let connections = ConnectionRegistry(maxConnections: options.maxConnections, maxUnauthenticated: options.maxUnauthenticatedConnections)
        let troubles = TroubleLog(logger: logger)
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(ChannelOptions.backlog, value: 256)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
            .childChannelOption(ChannelOptions.writeBufferWaterMark, value: writeBufferWaterMark)
            .childChannelInitializer { child in
                // Every new connection awaits its hello; it counts against maxConnections
                // only once the hello is accepted (ConnectionHandler).
                guard connections.admit(child) else {
                    logger.warning("connection refused: \(options.maxUnauthenticatedConnections) connections awaiting their hello")
                    // Closed as soon as it is active (it is not registered yet here).
                    return child.pipeline.addHandler(CloseOnActive())
                }
                child.closeFuture.whenComplete { _ in connections.remove(child) }
                return child.eventLoop.makeCompletedFuture {
                    let limit = ConnectionFrameDecoder.Limit(bytes: options.maxHelloBytes)
                    // TLS first: everything after it sees the same frames as on plain TCP.
                    if let tls { try child.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: tls)) }
                    try child.pipeline.syncOperations.addHandler(IdleStateHandler(readTimeout: .seconds(options.idleTimeoutSeconds)))
                    try child.pipeline.syncOperations.addHandler(ByteToMessageHandler(ConnectionFrameDecoder(limit: limit)))
                    try child.pipeline.syncOperations.addHandler(MessageToByteHandler(FrameEncoder()))
                    try child.pipeline.syncOperations.addHandler(
                        ConnectionHandler(
                            broker: broker, options: options, registry: connections, frameLimit: limit, troubles: troubles, logger: logger))
                }
            }
            .bind(host: options.host, port: options.port)
            .get()
        let server = ChimeServer(channel: channel, connections: connections, logger: logger)
        logger.info("serving the broker protocol", metadata: ["address": "\(options.host):\(server.port)", "tls": "\(tls != nil)"])
        return server
    }

    /// Connections open now (awaiting their hello or not).
    public var connectionCount: Int { connections.count }

    /// Connections open now whose hello has not been accepted.
    public var unauthenticatedConnectionCount: Int { connections.unauthenticatedCount }

    /// Bytes of replies handed to connections and not yet written to their sockets (what
    /// clients that do not read their replies make the server hold).
    public var unwrittenReplyBytes: Int { connections.unwrittenReplyBytes.load(ordering: .relaxed) }

    /// Requests whose work has not finished, on every connection.
    public var requestsRunning: Int { connections.requestsRunning.load(ordering: .relaxed) }

    /// The four values above at once, for the admin port's `/metrics`.
    public var connectionGauges: ConnectionGauges {
        ConnectionGauges(
            open: connectionCount, unauthenticated: unauthenticatedConnectionCount, unwrittenReplyBytes: unwrittenReplyBytes,
            requestsRunning: requestsRunning)
    }

    /// Stops accepting, then closes every connection.
    public func stop() async {
        try? await channel.close()
        let open = connections.channels
        for c in open { try? await c.close() }
    }

    /// Graceful: stops accepting; each connection stops reading, answers the requests it
    /// has read (a waiting fetch answers at its deadline, or with what arrives first), and
    /// closes. Connections still open after `gracePeriod` are closed anyway.
    public func shutdown(gracePeriod: Duration = .seconds(10)) async {
        try? await channel.close()
        let open = connections.channels
        logger.info("draining connections", metadata: ["connections": "\(open.count)"])
        for c in open {
            c.eventLoop.execute { c.pipeline.fireUserInboundEventTriggered(ConnectionHandler.Drain()) }
        }
        let connections = self.connections
        let logger = self.logger
        func closeLeft() async {
            let left = connections.channels
            guard !left.isEmpty else { return }
            logger.warning("closing connections still busy after the grace period", metadata: ["connections": "\(left.count)"])
            for c in left { try? await c.close() }
        }
        await withTaskGroup(of: Bool.self) { group in
            group.addTask {
                for c in open { try? await c.closeFuture.get() }
                return true
            }
            group.addTask {
                try? await Task.sleep(for: gracePeriod)
                return false
            }
            // The group waits for both children: waiting for the closings does not end on
            // cancellation, so the grace period ends by closing what is left.
            if await group.next() == false { await closeLeft() }
            group.cancelAll()
        }
        // Accepted while the listener closed: never told to drain.
        await closeLeft()
    }

    /// Serves until graceful shutdown (or cancellation), then drains.
    public func run() async throws {
        try? await gracefulShutdown()
        await shutdown()
    }
}

/// The engine as a lifecycle service: closes it (every checkpoint written, files synced)
/// when graceful shutdown reaches it. Listed first in a service group, so it shuts down
/// last, after the servers in front of it have drained.
public struct BrokerService: Service {
    public let broker: Broker

    public init(_ broker: Broker) { self.broker = broker }

    /// Closes the broker at the graceful shutdown; throws when it could not write all its
    /// state, so that `chime serve` says so and exits non-zero.
    public func run() async throws {
        try? await gracefulShutdown()
        let problems = await broker.close()
        guard problems.isEmpty else {
            throw BrokerError(
                .storage, "the broker stopped without saving all its state (\(problems.count) failures; the next start replays more): "
                    + problems.prefix(3).joined(separator: "; "))
        }
    }
}

/// Closes a connection the moment it becomes active: over the connection limit.
final class CloseOnActive: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer
    func channelActive(context: ChannelHandlerContext) {
        context.close(promise: nil)
    }
}
