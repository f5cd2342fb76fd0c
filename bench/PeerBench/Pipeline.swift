import DequeModule
import NIOCore
import NIOPosix

/// Parses one reply at the front of a buffer. Returns nil, consuming nothing, when the
/// buffer does not hold a whole reply yet.
protocol ReplyParser: Sendable {
    associatedtype Reply: Sendable
    static func parse(_ buffer: inout ByteBuffer) throws -> Reply?
}

struct PeerProtocolError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Cuts the byte stream into replies: every whole reply a read brought is passed on in
/// one array, so that the pipeline's per-message cost (wrapping, casting) is per read.
final class ReplyDecoder<P: ReplyParser>: ByteToMessageDecoder {
    typealias InboundOut = [P.Reply]
    func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        var replies: [P.Reply] = []
        while let reply = try P.parse(&buffer) { replies.append(reply) }
        if !replies.isEmpty { context.fireChannelRead(wrapInboundOut(replies)) }
        return .needMoreData
    }
    func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        try decode(context: context, buffer: &buffer)
    }
}

/// Hands replies, in order, to the requests waiting for them: each request is a run of
/// pipelined commands that waits for as many replies as it sent commands.
final class ReplyWaiters<Reply: Sendable>: ChannelInboundHandler {
    typealias InboundIn = [Reply]
    struct Waiter {
        var want: Int
        var got: [Reply]
        let promise: EventLoopPromise<[Reply]>
    }
    var queue: Deque<Waiter> = []
    var failure: (any Error)?

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var replies = unwrapInboundIn(data)[...]
        while !replies.isEmpty {
            guard !queue.isEmpty else {
                return failAll(PeerProtocolError("a reply nobody asked for"), context: context)
            }
            let take = Swift.min(queue[0].want - queue[0].got.count, replies.count)
            if take == queue[0].want && queue[0].got.isEmpty {
                queue[0].got = Array(replies.prefix(take))
            } else {
                queue[0].got.append(contentsOf: replies.prefix(take))
            }
            replies = replies.dropFirst(take)
            if queue[0].got.count == queue[0].want {
                let w = queue.removeFirst()
                w.promise.succeed(w.got)
            }
        }
    }
    func channelInactive(context: ChannelHandlerContext) {
        failAll(PeerProtocolError("the server closed the connection"), context: context)
    }
    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        failAll(error, context: context)
    }
    private func failAll(_ error: any Error, context: ChannelHandlerContext) {
        failure = failure ?? error
        while let w = queue.popFirst() { w.promise.fail(error) }
        context.close(promise: nil)
    }
}

/// One TCP connection to a peer, commands pipelined: `send` writes a run of commands
/// in one write and resolves with their replies; several runs may be in flight.
final class PipelinedConnection<P: ReplyParser>: Sendable {
    let channel: any Channel
    private let waiters: NIOLoopBound<ReplyWaiters<P.Reply>>

    private init(channel: any Channel, waiters: NIOLoopBound<ReplyWaiters<P.Reply>>) {
        self.channel = channel
        self.waiters = waiters
    }

    static func connect(port: Int, host: String = "127.0.0.1") async throws -> PipelinedConnection<P> {
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(ReplyDecoder<P>()))
                    try channel.pipeline.syncOperations.addHandler(ReplyWaiters<P.Reply>())
                }
            }
            .connect(host: host, port: port).get()
        let waiters = try await channel.eventLoop.submit {
            NIOLoopBound(try channel.pipeline.syncOperations.handler(type: ReplyWaiters<P.Reply>.self), eventLoop: channel.eventLoop)
        }.get()
        return PipelinedConnection(channel: channel, waiters: waiters)
    }

    /// Writes `bytes` (holding `replies` commands) and returns their replies in order.
    func send(_ bytes: ByteBuffer, replies: Int) async throws -> [P.Reply] {
        let channel = self.channel
        let waiters = self.waiters
        return try await channel.eventLoop.flatSubmit { () -> EventLoopFuture<[P.Reply]> in
            let w = waiters.value
            if let failure = w.failure { return channel.eventLoop.makeFailedFuture(failure) }
            let promise = channel.eventLoop.makePromise(of: [P.Reply].self)
            w.queue.append(.init(want: replies, got: [], promise: promise))
            channel.writeAndFlush(bytes, promise: nil)
            return promise.futureResult
        }.get()
    }

    func close() async {
        try? await channel.close()
    }
}

extension ByteBuffer {
    /// The index just past the next "\r\n" at or after `from`, or nil.
    func endOfLine(from start: Int) -> Int? {
        withUnsafeReadableBytes { p in
            var i = start
            while i + 1 < p.count {
                if p[i] == 13 && p[i + 1] == 10 { return i + 2 }
                i += 1
            }
            return nil
        }
    }

    /// The readable bytes in `range` (relative to the reader index) as a string.
    func text(_ range: Range<Int>) -> String {
        withUnsafeReadableBytes { String(decoding: UnsafeRawBufferPointer(rebasing: $0[range]), as: UTF8.self) }
    }
}
