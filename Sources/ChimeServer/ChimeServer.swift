import ChimeBroker
import ChimeProtocol
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import ServiceLifecycle
import Synchronization

/// The broker protocol on TCP (SwiftNIO). `start` binds and returns; `shutdown` stops
/// accepting and closes every connection once the requests it has read are answered;
/// `stop` closes everything at once. As a lifecycle `Service`, `run()` waits for graceful
/// shutdown and then shuts down.
public final class ChimeServer: Service, Sendable {
    /// The open connections, shared with the accepting code.
    private final class Connections: Sendable {
        let open = Mutex<[ObjectIdentifier: any Channel]>([:])
    }

    private let channel: any Channel
    private let connections: Connections
    private let logger: Logger
    /// The bound port (the one asked for, or the one the system chose for port 0).
    public let port: Int

    private init(channel: any Channel, connections: Connections, logger: Logger) {
        self.channel = channel
        self.connections = connections
        self.logger = logger
        port = channel.localAddress?.port ?? 0
    }

    public static func start(broker: Broker, options: ServerOptions, logger: Logger) async throws -> ChimeServer {
        if options.tokens.isEmpty && options.host != "127.0.0.1" && options.host != "::1" && options.host != "localhost" {
            logger.warning(
                "SERVING WITHOUT AUTHENTICATION on a non-loopback address: anyone who can reach \(options.host):\(options.port) can publish and consume. Configure tokens.")
        }
        // Files are checked before binding: a bad certificate path stops the start.
        let tls = try options.tls.map { try $0.makeContext() }
        let connections = Connections()
        let maxConnections = options.maxConnections
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(ChannelOptions.backlog, value: 256)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { child in
                let admitted = connections.open.withLock { open -> Bool in
                    guard open.count < maxConnections else { return false }
                    open[ObjectIdentifier(child)] = child
                    return true
                }
                guard admitted else {
                    logger.warning("connection refused: \(maxConnections) connections open")
                    // Closed as soon as it is active (it is not registered yet here).
                    return child.pipeline.addHandler(CloseOnActive())
                }
                child.closeFuture.whenComplete { _ in _ = connections.open.withLock { $0.removeValue(forKey: ObjectIdentifier(child)) } }
                return child.eventLoop.makeCompletedFuture {
                    // TLS first: everything after it sees the same frames as on plain TCP.
                    if let tls { try child.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: tls)) }
                    try child.pipeline.syncOperations.addHandlers([
                        IdleStateHandler(readTimeout: .seconds(options.idleTimeoutSeconds)),
                        ByteToMessageHandler(FrameDecoder(maxFrameBytes: options.maxFrameBytes)),
                        MessageToByteHandler(FrameEncoder()),
                        ConnectionHandler(broker: broker, options: options, logger: logger),
                    ])
                }
            }
            .bind(host: options.host, port: options.port)
            .get()
        let server = ChimeServer(channel: channel, connections: connections, logger: logger)
        logger.info("serving the broker protocol", metadata: ["address": "\(options.host):\(server.port)", "tls": "\(tls != nil)"])
        return server
    }

    /// Connections open now.
    public var connectionCount: Int { connections.open.withLock { $0.count } }

    /// Stops accepting, then closes every connection.
    public func stop() async {
        try? await channel.close()
        let open = connections.open.withLock { Array($0.values) }
        for c in open { try? await c.close() }
    }

    /// Graceful: stops accepting; each connection stops reading, answers the requests it
    /// has read (a waiting fetch answers at its deadline, or with what arrives first), and
    /// closes. Connections still open after `gracePeriod` are closed anyway.
    public func shutdown(gracePeriod: Duration = .seconds(10)) async {
        try? await channel.close()
        let open = connections.open.withLock { Array($0.values) }
        logger.info("draining connections", metadata: ["connections": "\(open.count)"])
        for c in open {
            c.eventLoop.execute { c.pipeline.fireUserInboundEventTriggered(ConnectionHandler.Drain()) }
        }
        let connections = self.connections
        let logger = self.logger
        func closeLeft() async {
            let left = connections.open.withLock { Array($0.values) }
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

    public func run() async throws {
        try? await gracefulShutdown()
        await broker.close()
    }
}

/// Closes a connection the moment it becomes active: over the connection limit.
private final class CloseOnActive: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer
    func channelActive(context: ChannelHandlerContext) {
        context.close(promise: nil)
    }
}
