import ChimeProtocol
import NIOCore
import NIOPosix

/// A TCP client that speaks raw bytes (what a test needs to send well-formed and malformed
/// frames alike and see exactly what comes back), async so that waiting for the server
/// never blocks a thread of the pool the server's requests run on.
final class RawClient: @unchecked Sendable {
    private let channel: NIOAsyncChannel<ByteBuffer, ByteBuffer>
    private var inbound: NIOAsyncChannelInboundStream<ByteBuffer>.AsyncIterator
    private var inbox = ByteBuffer()
    private var nextID: UInt32 = 1
    private var ended = false

    /// Connects; `firstBytes` are written from the event loop as the connection opens, so
    /// that a hello reaches the server however long this test's task then waits for a
    /// thread of a busy cooperative pool (a hello deadline counts from the connect).
    init(port: Int, firstBytes: [UInt8] = []) async throws {
        channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connect(host: "127.0.0.1", port: port) { ch in
                ch.eventLoop.makeCompletedFuture {
                    if !firstBytes.isEmpty { ch.writeAndFlush(ByteBuffer(bytes: firstBytes), promise: nil) }
                    return try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: ch)
                }
            }
        inbound = channel.inbound.makeAsyncIterator()
        if !firstBytes.isEmpty { nextID = 2 }
    }

    /// A connection that says hello as it opens, and its hello's answer read.
    static func authenticated(port: Int, token: String? = nil) async throws -> RawClient {
        var hello = ByteBuffer()
        Frame(opcode: .hello, correlationID: 1, payload: Hello(client: "test", token: token.map { Array($0.utf8) }).payload()).write(to: &hello)
        let c = try await RawClient(port: port, firstBytes: Array(hello.readableBytesView))
        guard let f = await c.readFrame() else { throw ErrorReply(code: 0, message: "connection closed") }
        guard f.correlationID == 1 && f.isResponse else { throw ErrorReply(code: 0, message: "expected the hello's answer, got frame \(f.correlationID)") }
        if f.isError { throw try ErrorReply(payload: f.payload) }
        _ = try HelloReply(payload: f.payload)
        return c
    }

    deinit {
        // An async channel's writer must be finished before it goes away.
        channel.outbound.finish()
        channel.channel.close(promise: nil)
    }

    /// Closes the connection from this side (the server sees the client go).
    func close() async {
        try? await channel.channel.close()
    }

    func send(_ bytes: [UInt8]) async {
        try? await channel.outbound.write(ByteBuffer(bytes: bytes))
    }

    /// Sends a request; returns its correlation id.
    @discardableResult
    func send<M: WireMessage>(_ opcode: Opcode, _ message: M, id: UInt32? = nil) async -> UInt32 {
        let correlation = id ?? nextID
        nextID = max(nextID, correlation) + 1
        var b = ByteBuffer()
        Frame(opcode: opcode, correlationID: correlation, payload: message.payload()).write(to: &b)
        await send(Array(b.readableBytesView))
        return correlation
    }

    /// The next frame, or nil once the server has closed the connection.
    func readFrame() async -> Frame? {
        while true {
            if let f = try? FrameDecoder.next(from: &inbox, maxFrameBytes: 64 << 20) { return f }
            guard !ended, let chunk = try? await inbound.next() else {
                ended = true
                return nil
            }
            var c = chunk
            inbox.writeBuffer(&c)
        }
    }

    /// True once the server has closed the connection (frames before that are skipped).
    func isClosedByServer() async -> Bool {
        while await readFrame() != nil {}
        return true
    }

    /// Request and response, the response decoded (an error response throws its ErrorReply).
    func call<M: WireMessage, R: WireMessage>(_ opcode: Opcode, _ message: M, as: R.Type) async throws -> R {
        let id = await send(opcode, message)
        guard let f = await readFrame() else { throw ErrorReply(code: 0, message: "connection closed") }
        guard f.correlationID == id && f.isResponse else {
            let detail = f.isError ? ((try? ErrorReply(payload: f.payload)).map { "\($0.code): \($0.message)" } ?? "?") : "not an error"
            throw ErrorReply(code: 0, message: "expected the answer to request \(id), got frame \(f.correlationID) (opcode \(f.opcode), \(detail))")
        }
        if f.isError { throw try ErrorReply(payload: f.payload) }
        return try R(payload: f.payload)
    }

    func handshake(token: String? = nil) async throws {
        _ = try await call(.hello, Hello(client: "test", token: token.map { Array($0.utf8) }), as: HelloReply.self)
    }
}
