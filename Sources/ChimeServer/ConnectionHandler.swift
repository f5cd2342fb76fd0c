import ChimeBroker
import ChimeProtocol
import Logging
import NIOCore

/// One client connection on the channel: maps channel events into its
/// `ConnectionStateMachine` and runs the actions that come out. Requests run each in
/// their own task (off the event loop), so they pipeline and replies go out as they are
/// ready. Back-pressure is by holding `read(context:)`: the machine says when a read may
/// be passed on.
final class ConnectionHandler: ChannelDuplexHandler {
    typealias InboundIn = Frame
    typealias OutboundIn = Frame
    typealias OutboundOut = Frame

    private var machine: ConnectionStateMachine
    private let requests: RequestHandler
    private let registry: ConnectionRegistry
    private let frameLimit: ConnectionFrameDecoder.Limit
    private let helloTimeoutMilliseconds: Int64
    private let serverName: String
    private let logger: Logger
    /// The work of each request still running, cancelled if the connection goes.
    private var tasks: [ConnectionStateMachine.RequestID: Task<Void, Never>] = [:]
    private var helloDeadline: Scheduled<Void>?
    /// What the hello's token grants; set when the hello is accepted, before any request.
    private var grant: AccessGrant?
    private var context: ChannelHandlerContext?

    /// The server is shutting down: read nothing more, answer what was read, close.
    struct Drain {}

    init(
        broker: Broker, options: ServerOptions, registry: ConnectionRegistry, frameLimit: ConnectionFrameDecoder.Limit, troubles: TroubleLog,
        logger: Logger
    ) {
        machine = ConnectionStateMachine(limits: .init(options))
        requests = RequestHandler(broker: broker, maxFrameBytes: options.maxFrameBytes, troubles: troubles)
        self.registry = registry
        self.frameLimit = frameLimit
        helloTimeoutMilliseconds = options.helloTimeoutMilliseconds
        serverName = options.serverName
        self.logger = logger
        precondition(frameLimit.bytes == machine.frameLimit, "the decoder starts at the hello limit")
    }

    // MARK: - Events in

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        if context.channel.isActive { scheduleHelloDeadline(context) }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    func channelActive(context: ChannelHandlerContext) {
        scheduleHelloDeadline(context)
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        run(machine.frameRead(unwrapInboundIn(data)), context)
    }

    func read(context: ChannelHandlerContext) {
        if machine.readRequested() { context.read() }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        run(machine.writabilityChanged(context.channel.isWritable), context)
        context.fireChannelWritabilityChanged()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if let e = error as? ProtocolError {
            run(machine.decoderFailed(e), context)
        } else {
            logger.debug("connection error", metadata: ["error": "\(error)"])
            context.close(promise: nil)
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is Drain {
            run(machine.drain(), context)
        } else if event is IdleStateHandler.IdleStateEvent {
            logger.debug("closing an idle connection")
            run(machine.idleTimedOut(), context)
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        helloDeadline?.cancel()
        helloDeadline = nil
        run(machine.channelInactive(), context)
        context.fireChannelInactive()
    }

    private func scheduleHelloDeadline(_ context: ChannelHandlerContext) {
        guard helloDeadline == nil, !machine.isAuthenticated else { return }
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        let timeout = helloTimeoutMilliseconds
        helloDeadline = context.eventLoop.scheduleTask(in: .milliseconds(timeout)) {
            let handler = handler.value
            guard let context = handler.context else { return }
            handler.run(handler.machine.helloDeadlinePassed(afterMilliseconds: timeout), context)
        }
    }

    /// The request's work is done (on the loop again).
    private func responseReady(_ id: ConnectionStateMachine.RequestID, _ response: Frame) {
        tasks[id] = nil
        guard let context else { return }
        run(machine.responseReady(id, response), context)
    }

    private func writeCompleted(_ id: ConnectionStateMachine.RequestID, bytes: Int) {
        registry.unwrittenReplyBytes.subtract(bytes, ordering: .relaxed)
        guard let context else { return }
        run(machine.writeCompleted(id), context)
    }

    // MARK: - Actions out

    private func run(_ actions: [ConnectionStateMachine.Action], _ context: ChannelHandlerContext) {
        for action in actions { run(action, context) }
    }

    private func run(_ action: ConnectionStateMachine.Action?, _ context: ChannelHandlerContext) {
        guard let action else { return }
        switch action {
        case .read:
            context.read()
        case .start(let request):
            start(request, context)
        case .acceptHello(let accepted):
            acceptHello(accepted, context)
        case .write(let id, let response):
            let bytes = Frame.headerSize + response.payload.readableBytes
            registry.unwrittenReplyBytes.add(bytes, ordering: .relaxed)
            let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
            let written = context.eventLoop.makePromise(of: Void.self)
            written.futureResult.whenComplete { _ in handler.value.writeCompleted(id, bytes: bytes) }
            context.writeAndFlush(wrapOutboundOut(response), promise: written)
        case .fail(let failure):
            fail(failure, context)
        case .close:
            context.close(promise: nil)
        case .cancel(let ids):
            for id in ids { tasks.removeValue(forKey: id)?.cancel() }
        }
    }

    private func start(_ request: ConnectionStateMachine.Request, _ context: ChannelHandlerContext) {
        guard let grant else { preconditionFailure("a request started before its connection's hello was accepted") }
        let requests = self.requests
        let registry = self.registry
        let allocator = context.channel.allocator
        let loop = context.eventLoop
        let handler = NIOLoopBound(self, eventLoop: loop)
        registry.requestsRunning.add(1, ordering: .relaxed)
        tasks[request.id] = Task {
            let response = await requests.respond(to: request.frame, version: request.version, grant: grant, allocator: allocator)
            registry.requestsRunning.subtract(1, ordering: .relaxed)
            loop.execute { handler.value.responseReady(request.id, response) }
        }
    }

    private func acceptHello(_ accepted: ConnectionStateMachine.HelloAccepted, _ context: ChannelHandlerContext) {
        helloDeadline?.cancel()
        helloDeadline = nil
        guard registry.authenticate(context.channel) else {
            logger.warning("connection refused: \(registry.maxConnections) authenticated connections open", metadata: ["client": "\(accepted.client)"])
            return run(machine.connectionLimitReached(), context)
        }
        grant = accepted.grant
        // Raised before the decoder cuts the next frame: it calls this handler synchronously.
        frameLimit.bytes = machine.frameLimit
        let reply = HelloReply(version: accepted.version, server: serverName)
        context.writeAndFlush(
            wrapOutboundOut(Frame(opcode: .hello, flags: .response, correlationID: accepted.correlationID, payload: reply.payload(allocator: context.channel.allocator))),
            promise: nil)
    }

    /// An error frame, then the connection is closed: after a framing or handshake error
    /// the stream cannot be trusted.
    private func fail(_ failure: ConnectionStateMachine.Failure, _ context: ChannelHandlerContext) {
        if failure.code == .unauthenticated {
            logger.warning("authentication failed: \(failure.message)", metadata: ["remote": "\(context.remoteAddress.map { "\($0)" } ?? "?")"])
        } else {
            logger.debug("closing a connection", metadata: ["error": "\(failure.message)"])
        }
        let reply = ErrorReply(failure.code, message: failure.message)
        let frame = Frame(
            opcode: failure.opcode, flags: [.response, .error], correlationID: failure.correlationID, payload: reply.payload(allocator: context.channel.allocator))
        context.writeAndFlush(wrapOutboundOut(frame)).whenComplete { [channel = context.channel] _ in
            channel.close(promise: nil)
        }
    }
}
