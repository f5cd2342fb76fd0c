import ChimeBroker
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import ServiceLifecycle

/// beanstalkd's text protocol on TCP or a Unix socket (SwiftNIO), served by a
/// `BeanstalkEngine`. Each connection's bytes are cut into inputs by `BeanstalkFraming`
/// on its event loop and run by the engine a batch at a time, in order; a connection with
/// more inputs waiting than `maxQueuedInputs` is not read until they are answered.
public final class BeanstalkListener: Service, Sendable {
    /// Where to listen: a host and port, or a Unix socket path (`-l unix:PATH`).
    public enum Address: Sendable, Equatable, CustomStringConvertible {
        case tcp(host: String, port: Int)
        case unix(path: String)
        public var description: String {
            switch self {
            case .tcp(let host, let port): "\(host):\(port)"
            case .unix(let path): "unix:\(path)"
            }
        }
    }

    public struct Options: Sendable {
        public var address: Address
        /// Largest job body (`-z`).
        public var maxJobBytes: Int
        /// Connections at once; more are closed as they come.
        public var maxConnections: Int
        public init(address: Address, maxJobBytes: Int = 65_535, maxConnections: Int = 10_000) {
            self.address = address
            self.maxJobBytes = maxJobBytes
            self.maxConnections = maxConnections
        }

        /// The largest job `-z` may allow: a job is one record of the journal topic, whose
        /// records the broker bounds at 16 MiB (a little is the record's own).
        public static let maxJobBytesLimit = (16 << 20) - 512
    }

    /// Inputs a connection may have read and not had answered before reading stops.
    static let maxQueuedInputs = 4_096

    private let channel: any Channel
    private let engine: BeanstalkEngine
    private let open: NIOLockedValueBox<[ObjectIdentifier: any Channel]>
    private let logger: Logger
    /// The bound port (0 for a Unix socket).
    public let port: Int

    private init(channel: any Channel, engine: BeanstalkEngine, open: NIOLockedValueBox<[ObjectIdentifier: any Channel]>, logger: Logger) {
        self.channel = channel
        self.engine = engine
        self.open = open
        self.logger = logger
        port = channel.localAddress?.port ?? 0
    }

    /// Opens the engine on `broker` (reading its journal back) and starts listening.
    public static func start(broker: Broker, options: Options, logger: Logger) async throws -> BeanstalkListener {
        guard (0...Options.maxJobBytesLimit).contains(options.maxJobBytes) else {
            throw OptionsError.outOfRange("the largest job in bytes (-z)", 0...Options.maxJobBytesLimit, options.maxJobBytes)
        }
        guard options.maxConnections > 0 else { throw OptionsError.belowMinimum("maxConnections", 1) }
        let engine = try await BeanstalkEngine.open(broker: broker, options: .init(maxJobBytes: options.maxJobBytes), logger: logger)
        let open = NIOLockedValueBox<[ObjectIdentifier: any Channel]>([:])
        let bootstrap = ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(ChannelOptions.backlog, value: 256)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(ChannelOptions.writeBufferWaterMark, value: ChimeServer.writeBufferWaterMark)
            .childChannelInitializer { child in
                let admitted = open.withLockedValue { o -> Bool in
                    guard o.count < options.maxConnections else { return false }
                    o[ObjectIdentifier(child)] = child
                    return true
                }
                guard admitted else {
                    logger.warning("beanstalkd connection refused: \(options.maxConnections) connections open")
                    return child.pipeline.addHandler(CloseOnActive())
                }
                child.closeFuture.whenComplete { _ in _ = open.withLockedValue { $0.removeValue(forKey: ObjectIdentifier(child)) } }
                return child.eventLoop.makeCompletedFuture {
                    try child.pipeline.syncOperations.addHandler(BeanstalkConnectionHandler(engine: engine, maxJobBytes: options.maxJobBytes))
                }
            }
        let channel: any Channel
        switch options.address {
        case .tcp(let host, let port):
            channel = try await bootstrap.childChannelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1).bind(host: host, port: port).get()
        case .unix(let path):
            channel = try await bootstrap.bind(unixDomainSocketPath: path, cleanupExistingSocketFile: true).get()
        }
        let listener = BeanstalkListener(channel: channel, engine: engine, open: open, logger: logger)
        logger.info("serving the beanstalkd protocol", metadata: ["address": "\(Self.describe(options.address, port: listener.port))"])
        return listener
    }

    private static func describe(_ address: Address, port: Int) -> String {
        if case .tcp(let host, _) = address { return "\(host):\(port)" }
        return address.description
    }

    /// Connections open now.
    public var connectionCount: Int { open.withLockedValue { $0.count } }

    /// Drain mode (beanstalkd's SIGUSR1): puts are answered DRAINING; the rest goes on.
    public func drain() async {
        await engine.drain()
        logger.info("beanstalkd listener draining: puts are refused from now on")
    }

    /// Stops accepting, then closes every connection.
    public func stop() async {
        try? await channel.close()
        for c in open.withLockedValue({ Array($0.values) }) { try? await c.close() }
        await engine.close()
    }

    /// Serves until graceful shutdown (or cancellation), then closes its connections
    /// (every answer it gave was journaled first: nothing is left to write).
    public func run() async throws {
        try? await gracefulShutdown()
        await stop()
    }

    /// Jobs held now (ready, reserved, delayed or buried), for tests.
    public func jobCount() async -> Int { await engine.jobCount() }
}

/// One beanstalkd connection: framing on the event loop, the engine off it. A batch's
/// replies wait for the journal in a chain of reply tasks (each writes after the one
/// before), so that the connection's next batch runs while the last one is being synced;
/// at most `maxBatchesUnsynced` batches wait so.
final class BeanstalkConnectionHandler: ChannelInboundHandler, @unchecked Sendable {
    static let maxBatchesUnsynced = 4

    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let engine: BeanstalkEngine
    private var framing: BeanstalkFraming
    private var inputs: [BeanstalkEngine.Input] = []
    private var id: UInt64?
    private var busy = false
    private var closed = false
    private var paused = false
    private var channel: (any Channel)?
    /// The reply tasks not yet done, oldest first (touched on the event loop only).
    private var replying: [Task<Void, Never>] = []

    init(engine: BeanstalkEngine, maxJobBytes: Int) {
        self.engine = engine
        self.framing = BeanstalkFraming(maxJobBytes: maxJobBytes)
    }

    func channelActive(context: ChannelHandlerContext) {
        let channel = context.channel
        self.channel = channel
        let loop = context.eventLoop
        Task {
            let id = await engine.connect()
            loop.execute {
                self.id = id
                if self.closed {
                    Task { await self.engine.disconnect(id) }
                } else {
                    self.process()
                }
            }
        }
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        buffer.withUnsafeReadableBytes { framing.feed($0, into: &inputs) }
        if inputs.count >= BeanstalkListener.maxQueuedInputs && !paused {
            paused = true
            context.channel.setOption(ChannelOptions.autoRead, value: false).whenFailure { _ in }
        }
        process()
    }

    func channelInactive(context: ChannelHandlerContext) {
        closed = true
        // Also ends a waiting reserve: its task then finds the connection gone.
        if let id { Task { await engine.disconnect(id) } }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    /// Runs the inputs read so far, one batch at a time, on a task off the event loop.
    private func process() {
        guard !busy, !closed, let id, !inputs.isEmpty, let channel else { return }
        busy = true
        let batch = inputs
        inputs.removeAll(keepingCapacity: true)
        let engine = self.engine
        var chain = replying
        Task {
            var rest = batch[...]
            var quit = false
            while !rest.isEmpty && !quit {
                if chain.count >= Self.maxBatchesUnsynced { await chain.removeFirst().value }
                let progress = await engine.execute(id, rest)
                rest = rest.dropFirst(progress.consumed)
                let before = chain.last
                let replies = progress.replies
                let reply = Task {
                    await before?.value
                    let ok = await engine.written(after: progress.syncAfter, upTo: progress.syncUpTo)
                    guard !replies.isEmpty else { return }
                    var out = channel.allocator.buffer(capacity: replies.count * 16)
                    for r in replies { (ok ? r : .internalError).write(into: &out) }
                    channel.writeAndFlush(out, promise: nil)
                }
                chain.append(reply)
                switch progress.then {
                case .next: break
                case .wait:
                    await reply.value
                    var out = channel.allocator.buffer(capacity: 64)
                    await engine.answer(id).write(into: &out)
                    channel.writeAndFlush(out, promise: nil)
                case .quit: quit = true
                }
            }
            if quit {
                await chain.last?.value
                // Gone from the engine before the client sees the close.
                await engine.disconnect(id)
                channel.close(promise: nil)
            }
            let pending = chain
            channel.eventLoop.execute {
                self.replying = pending
                self.busy = false
                guard !self.closed else { return }
                if self.paused && self.inputs.count < BeanstalkListener.maxQueuedInputs {
                    self.paused = false
                    channel.setOption(ChannelOptions.autoRead, value: true).whenFailure { _ in }
                }
                self.process()
            }
        }
    }
}
