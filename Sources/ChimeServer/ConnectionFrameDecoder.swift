import ChimeProtocol
import NIOCore

/// The frame decoder of one server connection, whose limit changes with the connection's
/// state: small (`maxHelloBytes`) until the hello is accepted, so an unauthenticated peer
/// cannot make the server buffer a 16 MiB frame, then `maxFrameBytes`. The connection
/// handler sets `limit.bytes` from its state machine; both run on the connection's event
/// loop, and the handler runs the hello before the decoder cuts the next frame.
struct ConnectionFrameDecoder: ByteToMessageDecoder {
    typealias InboundOut = Frame

    /// Shared by the decoder and the handler of one connection, used on its loop only.
    final class Limit {
        var bytes: Int

        init(bytes: Int) {
            precondition(bytes > 0, "a frame limit admits something")
            self.bytes = bytes
        }
    }

    let limit: Limit

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let frame = try FrameDecoder.next(from: &buffer, maxFrameBytes: limit.bytes) else { return .needMoreData }
        context.fireChannelRead(wrapInboundOut(frame))
        return .continue
    }

    mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        try decode(context: context, buffer: &buffer)
    }
}
