import ChimeProtocol
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// One TCP connection to the broker (over TLS when `tls` is given): frames out, responses
/// routed back to their request by correlation id, so any number of requests can be in
/// flight at once.
final class Connection: Sendable {
    private let channel: any Channel
    private let router: ResponseRouter
    /// The protocol version the hello settled on.
    let version = Mutex<UInt16>(1)

    private init(channel: any Channel, router: ResponseRouter) {
        self.channel = channel
        self.router = router
    }

    static func open(host: String, port: Int, hello: Hello, maxFrameBytes: Int, tls: ClientTLS? = nil) async throws -> Connection {
        let router = ResponseRouter(peer: "\(host):\(port)")
        // A trust file that cannot be used fails here, before any connection is made.
        let tlsContext = try tls.map { try $0.makeContext() }
        let serverHostname = tls?.sniName(host: host)
        let channel: any Channel
        do {
            channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .channelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
                .connectTimeout(.seconds(5))
                .channelInitializer { ch in
                    ch.eventLoop.makeCompletedFuture {
                        // TLS first; the hello written below waits in it until the handshake is done.
                        if let tlsContext {
                            try ch.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: tlsContext, serverHostname: serverHostname))
                        }
                        try ch.pipeline.syncOperations.addHandlers([
                            ByteToMessageHandler(FrameDecoder(maxFrameBytes: maxFrameBytes)), MessageToByteHandler(FrameEncoder()), router,
                        ])
                    }
                }
                .connect(host: host, port: port)
                .get()
        } catch {
            throw ClientError.disconnected("cannot reach the broker at \(host):\(port) (\(connectFailure(error)))")
        }
        let connection = Connection(channel: channel, router: router)
        do {
            let reply = try await connection.request(.hello, hello, as: HelloReply.self)
            connection.version.withLock { $0 = reply.version }
        } catch {
            try? await channel.close()
            throw error
        }
        return connection
    }

    /// Usable for new requests: a connection the broker has given up on (a connection-level
    /// error, the close not seen yet) is not, or the next request would fail with that
    /// error instead of going out on a new connection.
    var isOpen: Bool { channel.isActive && !router.isClosed }

    func request<M: WireMessage, R: WireMessage>(_ opcode: Opcode, _ message: M, as: R.Type) async throws -> R {
        let spoken = version.withLock { $0 }
        // An opcode the broker does not know would close the connection (a framing error):
        // refused here instead, with every other request on it left alone.
        guard opcode.sinceVersion <= spoken else {
            throw ClientError(
                code: WireErrorCode.unsupportedVersion.rawValue,
                message: "the broker speaks protocol version \(spoken); \(opcode) needs \(opcode.sinceVersion)")
        }
        var message = message
        if var versioned = message as? any VersionedRequest {
            // A fence is a promise not to write under a stale token: never dropped silently.
            if versioned.fence != nil && spoken < ProtocolVersion.fences {
                throw ClientError(
                    code: WireErrorCode.unsupportedVersion.rawValue,
                    message: "the broker speaks protocol version \(spoken); fenced writes need \(ProtocolVersion.fences)")
            }
            versioned.version = min(versioned.version, spoken)
            message = versioned as! M
        }
        let promise = channel.eventLoop.makePromise(of: Frame.self)
        let id = router.register(promise)
        let frame = Frame(opcode: opcode, correlationID: id, payload: message.payload(allocator: channel.allocator))
        channel.writeAndFlush(frame).whenFailure { [router] error in
            router.forget(id)  // no answer is coming: do not keep it waiting in the table
            promise.fail(ClientError.disconnected("write failed: \(error)"))
        }
        let response = try await promise.futureResult.get()
        if response.isError { throw ClientError(try ErrorReply(payload: response.payload)) }
        return try R(payload: response.payload)
    }

    func close() async {
        try? await channel.close()
    }
}

/// Matches responses to waiting requests; fails them all when the connection goes.
final class ResponseRouter: ChannelInboundHandler, Sendable {
    typealias InboundIn = Frame

    /// host:port, for error messages.
    private let peer: String
    /// `closed` keeps why the connection ended: a request registered after that (the TLS
    /// handshake can fail before the hello is even sent) gets the same error.
    private let state = Mutex<(next: UInt32, waiting: [UInt32: EventLoopPromise<Frame>], closed: (any Error)?)>((1, [:], nil))

    init(peer: String) { self.peer = peer }

    func register(_ promise: EventLoopPromise<Frame>) -> UInt32 {
        let (id, closed): (UInt32, (any Error)?) = state.withLock { s in
            let id = s.next
            s.next = s.next &+ 1 == 0 ? 1 : s.next &+ 1
            if s.closed == nil { s.waiting[id] = promise }
            return (id, s.closed)
        }
        if let closed { promise.fail(closed) }
        return id
    }

    /// The connection has ended (or the broker said it will end it): requests fail at once.
    var isClosed: Bool { state.withLock { $0.closed != nil } }

    func forget(_ id: UInt32) {
        _ = state.withLock { $0.waiting.removeValue(forKey: id) }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        let promise = state.withLock { $0.waiting.removeValue(forKey: frame.correlationID) }
        if let promise {
            promise.succeed(frame)
        } else if frame.isError, let reply = try? ErrorReply(payload: frame.payload) {
            // A connection-level error (id 0; a frame the broker could not read), then the
            // broker closes. Which request it was is unknown, and the others may have been
            // acted on: for every one waiting the connection was lost, with this reason.
            failAll(ClientError.disconnected("the broker closed the connection: \(reply.message) (code \(reply.code))"))
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        failAll(ClientError.disconnected("the broker closed the connection"))
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // A failed TLS handshake keeps its type: the connector does not try again for it.
        failAll(ClientTLSError.handshake(error, peer: peer) ?? ClientError.disconnected("\(error)"))
        context.close(promise: nil)
    }

    private func failAll(_ error: any Error) {
        let waiting = state.withLock { s -> [EventLoopPromise<Frame>] in
            if s.closed == nil { s.closed = error }  // the first reason is the real one
            defer { s.waiting = [:] }
            return Array(s.waiting.values)
        }
        for p in waiting { p.fail(error) }
    }
}

/// Why a connection attempt failed, in a few words ("connection refused"), not the
/// transport library's description of its attempts.
func connectFailure(_ error: any Error) -> String {
    if let e = error as? NIOConnectionError {
        if e.dnsAError != nil || e.dnsAAAAError != nil, e.connectionErrors.isEmpty { return "cannot resolve \(e.host)" }
        if let first = e.connectionErrors.first { return connectFailure(first.error) }
        return "no address to connect to"
    }
    if let e = error as? IOError { return String(cString: strerror(e.errnoCode)).lowercased() }
    if let e = error as? ChannelError, case .connectTimeout(let after) = e { return "no answer within \(after.nanoseconds / 1_000_000_000) s" }
    return "\(error)"
}
