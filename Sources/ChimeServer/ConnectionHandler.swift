import ChimeBroker
import ChimeProtocol
import DequeModule
import Logging
import NIOCore

/// One client connection: the handshake first (version, token), then requests, each
/// handled in its own task so that requests pipeline and responses go out as they are
/// ready. Runs on the connection's event loop; the engine's work happens off it.
final class ConnectionHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = Frame
    typealias OutboundOut = Frame

    private let handler: RequestHandler
    private let options: ServerOptions
    private let logger: Logger
    private var handshook = false
    /// The protocol version chosen in the handshake.
    private var version: UInt16 = ProtocolVersion.oldest
    private var inFlight = 0
    /// Payload bytes of the requests in progress.
    private var inFlightBytes = 0
    private var reading = true
    private var closing = false
    private var draining = false
    /// Requests read while over budget, started in order as answers go out.
    private var held: Deque<Frame> = []

    /// The server is shutting down: read nothing more, answer what was read, close.
    struct Drain {}

    init(broker: Broker, options: ServerOptions, logger: Logger) {
        handler = RequestHandler(broker: broker, maxFrameBytes: options.maxFrameBytes)
        self.options = options
        self.logger = logger
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        // Frames already buffered when draining began are not started: the client sees the
        // connection close and sends them again elsewhere (or later).
        guard !closing, !draining else { return }
        guard !frame.isResponse else {
            return fail(context, ProtocolError(.badFlags, "a client sends requests, not responses"), opcode: frame.opcode, correlation: frame.correlationID)
        }
        guard handshook else {
            guard frame.opcode == .hello else {
                return fail(context, ProtocolError(.unauthenticated, "the first frame must be a hello"), opcode: frame.opcode, correlation: frame.correlationID)
            }
            return hello(context, frame)
        }
        // An opcode newer than the connection's version is unknown on it.
        guard version >= frame.opcode.sinceVersion else {
            return fail(
                context, ProtocolError(.unknownOpcode, "opcode \(frame.opcode.rawValue) needs protocol version \(frame.opcode.sinceVersion); this connection chose \(version)"),
                opcode: frame.opcode, correlation: frame.correlationID)
        }
        // Over budget: frames already read (one socket read can hold many) wait here, in
        // order; nothing more is read until enough requests have been answered.
        if !reading || (inFlight > 0 && overBudget) {
            held.append(frame)
            stopReading(context.channel)
            return
        }
        start(frame, channel: context.channel)
    }

    private var overBudget: Bool {
        inFlight >= options.maxInFlightPerConnection || inFlightBytes >= options.maxBufferedBytesPerConnection
    }

    private func stopReading(_ channel: any Channel) {
        guard reading else { return }
        reading = false
        channel.setOption(ChannelOptions.autoRead, value: false).whenComplete { _ in }
    }

    private func start(_ frame: Frame, channel: any Channel) {
        inFlight += 1
        let size = frame.payload.readableBytes
        inFlightBytes += size
        // Back-pressure: no more requests read until responses have gone out.
        if overBudget { stopReading(channel) }
        let allocator = channel.allocator
        let handler = self.handler
        let loop = channel.eventLoop
        Task {
            let response = await handler.respond(to: frame, allocator: allocator)
            loop.execute {
                channel.writeAndFlush(response, promise: nil)
                self.finished(channel, bytes: size)
            }
        }
    }

    private func finished(_ channel: any Channel, bytes: Int) {
        inFlight -= 1
        inFlightBytes -= bytes
        // Held requests were read: they are answered even while draining.
        while !held.isEmpty && (inFlight == 0 || !overBudget) {
            start(held.removeFirst(), channel: channel)
        }
        if draining {
            if inFlight == 0 { channel.close(promise: nil) }
            return
        }
        if !reading && held.isEmpty && inFlight < options.maxInFlightPerConnection / 2 + 1
            && inFlightBytes < options.maxBufferedBytesPerConnection / 2 + 1
        {
            reading = true
            channel.setOption(ChannelOptions.autoRead, value: true).whenComplete { _ in }
            channel.read()
        }
    }

    private func hello(_ context: ChannelHandlerContext, _ frame: Frame) {
        let hello: Hello
        do {
            hello = try Hello(payload: frame.payload)
        } catch {
            return fail(context, error, opcode: .hello, correlation: frame.correlationID)
        }
        let version = min(hello.maxVersion, ProtocolVersion.current)
        guard version >= max(hello.minVersion, ProtocolVersion.oldest) else {
            return fail(
                context,
                ProtocolError(.unsupportedVersion, "this server speaks versions \(ProtocolVersion.oldest)...\(ProtocolVersion.current), the client \(hello.minVersion)...\(hello.maxVersion)"),
                opcode: .hello, correlation: frame.correlationID)
        }
        if !options.tokens.isEmpty {
            let given = hello.token ?? []
            // Every configured token is compared, each in constant time.
            var matched = false
            for token in options.tokens where Self.constantTimeEqual(Array(token.utf8), given) { matched = true }
            guard matched else {
                logger.warning("authentication failed", metadata: ["client": "\(hello.client)", "remote": "\(context.remoteAddress.map { "\($0)" } ?? "?")"])
                return fail(context, ProtocolError(.unauthenticated, "wrong or missing token"), opcode: .hello, correlation: frame.correlationID)
            }
        }
        handshook = true
        self.version = version
        let reply = HelloReply(version: version, server: options.serverName)
        context.writeAndFlush(
            wrapOutboundOut(Frame(opcode: .hello, flags: .response, correlationID: frame.correlationID, payload: reply.payload(allocator: context.channel.allocator))),
            promise: nil)
    }

    /// Compares in time that depends on the lengths only, not on where the bytes differ.
    static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        var diff = UInt8(a.count == b.count ? 0 : 1)
        for i in 0..<max(a.count, b.count) {
            diff |= (i < a.count ? a[i] : 0) ^ (i < b.count ? b[i] : 0)
        }
        return diff == 0
    }

    /// An error frame, then the connection is closed: after a framing or handshake error
    /// the stream cannot be trusted.
    private func fail(_ context: ChannelHandlerContext, _ error: any Error, opcode: Opcode, correlation: UInt32) {
        guard !closing else { return }
        closing = true
        let reply = ErrorCodes.reply(error)
        logger.debug("closing a connection", metadata: ["error": "\(reply.message)"])
        let frame = Frame(opcode: opcode, flags: [.response, .error], correlationID: correlation, payload: reply.payload(allocator: context.channel.allocator))
        context.writeAndFlush(wrapOutboundOut(frame)).whenComplete { [channel = context.channel] _ in
            channel.close(promise: nil)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if let e = error as? ProtocolError {
            // From the frame decoder: answer on the connection-level opcode (hello), id 0.
            fail(context, e, opcode: .hello, correlation: 0)
        } else {
            logger.debug("connection error", metadata: ["error": "\(error)"])
            context.close(promise: nil)
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is Drain {
            draining = true
            reading = false
            context.channel.setOption(ChannelOptions.autoRead, value: false).whenComplete { _ in }
            if inFlight == 0 { context.close(promise: nil) }
            return
        }
        if event is IdleStateHandler.IdleStateEvent {
            logger.debug("closing an idle connection")
            context.close(promise: nil)
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }
}
