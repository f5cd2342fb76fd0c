import NIOCore
import NIOHTTPTypes

/// Closes an admin connection whose request body passes its limit, or whose request has not
/// arrived whole within the timeout of its head: a client trickling a body byte by byte
/// would otherwise hold its connection for as long as it likes. (Before a head, and after a
/// response, Hummingbird's idle timeout closes a connection that sends nothing whole.)
final class AdminRequestLimits: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart

    private let maxBodyBytes: Int
    private let requestTimeout: TimeAmount
    /// Body bytes of the request being read.
    private var bodyBytes = 0
    /// Closes the connection unless the request being read ends first.
    private var deadline: Scheduled<Void>?

    init(maxBodyBytes: Int, requestTimeout: TimeAmount) {
        precondition(maxBodyBytes >= 0 && requestTimeout > .zero)
        self.maxBodyBytes = maxBodyBytes
        self.requestTimeout = requestTimeout
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head:
            assert(deadline == nil, "a head before the previous request's end")
            bodyBytes = 0
            deadline = context.eventLoop.assumeIsolated().scheduleTask(in: requestTimeout) { [self, context] in
                deadline = nil
                context.close(promise: nil)
            }
        case .body(let bytes):
            bodyBytes += bytes.readableBytes
            guard bodyBytes <= maxBodyBytes else {
                cancelDeadline()
                context.close(promise: nil)
                return
            }
        case .end:
            cancelDeadline()
        }
        context.fireChannelRead(data)
    }

    func channelInactive(context: ChannelHandlerContext) {
        cancelDeadline()
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        cancelDeadline()
    }

    private func cancelDeadline() {
        deadline?.cancel()
        deadline = nil
    }
}

@available(*, unavailable)
extension AdminRequestLimits: Sendable {}
