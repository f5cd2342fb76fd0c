import NIOCore
import NIOPosix
import Synchronization

/// A TCP proxy on 127.0.0.1 between a client and the server that can lose a response:
/// armed, it closes both sides the moment the server's next bytes arrive, instead of
/// passing them on. The request got through and was acted on; the client only learns that
/// the connection went. Fault injection for what a client must do about a lost answer.
final class CuttingProxy: Sendable {
    private let listener: any Channel
    private let state = CutState()
    let port: Int

    init(to targetPort: Int) async throws {
        let state = self.state
        listener = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(ChannelOptions.autoRead, value: false)
            .childChannelInitializer { downstream in
                let fromClient = ProxyHalf(cut: nil)
                return downstream.pipeline.addHandler(fromClient).flatMap {
                    ClientBootstrap(group: downstream.eventLoop)
                        .channelInitializer { upstream in
                            upstream.pipeline.addHandler(ProxyHalf(cut: .init(state: state, downstream: downstream)))
                        }
                        .connect(host: "127.0.0.1", port: targetPort)
                }.flatMap { upstream in
                    upstream.pipeline.handler(type: ProxyHalf.self).map { fromServer in
                        fromServer.peer.withLock { $0 = downstream }
                        fromClient.peer.withLock { $0 = upstream }
                    }
                }.flatMap {
                    downstream.setOption(ChannelOptions.autoRead, value: true)
                }
            }
            .bind(host: "127.0.0.1", port: 0)
            .get()
        port = listener.localAddress!.port!
    }

    /// The next `count` server-to-client chunks are lost with their connections.
    func cutNextResponses(_ count: Int = 1) { state.armed.withLock { $0 = count } }

    /// Responses lost so far.
    var cuts: Int { state.cuts.withLock { $0 } }

    func close() async { try? await listener.close() }
}

private final class ProxyHalf: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer

    struct Cut: Sendable {
        let state: CutState
        let downstream: any Channel
    }

    let peer = Mutex<(any Channel)?>(nil)
    private let cut: Cut?

    init(cut: Cut?) { self.cut = cut }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if let cut, cut.state.take() {
            context.close(promise: nil)
            cut.downstream.close(promise: nil)
            return
        }
        peer.withLock { $0 }?.writeAndFlush(unwrapInboundIn(data), promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        peer.withLock { $0 }?.close(promise: nil)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}

private final class CutState: Sendable {
    let armed = Mutex(0)
    let cuts = Mutex(0)

    /// Whether to lose this chunk (and count it).
    func take() -> Bool {
        let lose = armed.withLock { a -> Bool in
            guard a > 0 else { return false }
            a -= 1
            return true
        }
        if lose { cuts.withLock { $0 += 1 } }
        return lose
    }
}
