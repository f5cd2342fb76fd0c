import NIOCore

/// Cuts frames out of a byte stream. The length field is checked against `maxFrameBytes`
/// before anything is read or allocated for the frame, so a peer announcing 2 GiB costs
/// nothing; a frame too short, with an unknown opcode or unknown flags is refused too. Each
/// refusal is a `ProtocolError`: the stream cannot be trusted after it, and the server
/// closes the connection.
public struct FrameDecoder: ByteToMessageDecoder, Sendable {
    public typealias InboundOut = Frame
    public let maxFrameBytes: Int

    public init(maxFrameBytes: Int = 16 << 20) {
        self.maxFrameBytes = maxFrameBytes
    }

    public mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let frame = try Self.next(from: &buffer, maxFrameBytes: maxFrameBytes) else { return .needMoreData }
        context.fireChannelRead(wrapInboundOut(frame))
        return .continue
    }

    public mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        try decode(context: context, buffer: &buffer)
    }

    /// The next whole frame at the reader index, or nil if more bytes are needed (nothing
    /// is consumed then). Throws for a header that can never make a valid frame.
    public static func next(from buffer: inout ByteBuffer, maxFrameBytes: Int) throws -> Frame? {
        guard let length = buffer.getInteger(at: buffer.readerIndex, endianness: .little, as: UInt32.self) else { return nil }
        guard Int(length) <= maxFrameBytes else {
            throw ProtocolError(.frameTooLarge, "frame of \(length) bytes is over the limit of \(maxFrameBytes)")
        }
        guard Int(length) >= Frame.lengthCovered else {
            throw ProtocolError(.frameTooShort, "frame length \(length) is below the \(Frame.lengthCovered)-byte minimum")
        }
        // The header can be checked as soon as it is there, before the payload arrives.
        if buffer.readableBytes >= Frame.headerSize {
            let opcodeByte = buffer.getInteger(at: buffer.readerIndex + 4, as: UInt8.self)!
            let flagsByte = buffer.getInteger(at: buffer.readerIndex + 5, as: UInt8.self)!
            let reserved = buffer.getInteger(at: buffer.readerIndex + 6, endianness: .little, as: UInt16.self)!
            guard Opcode(rawValue: opcodeByte) != nil else { throw ProtocolError(.unknownOpcode, "unknown opcode \(opcodeByte)") }
            guard flagsByte & ~Frame.Flags.known.rawValue == 0, reserved == 0 else {
                throw ProtocolError(.badFlags, "unknown flags 0x\(String(flagsByte, radix: 16)) or reserved bits set")
            }
        }
        guard buffer.readableBytes >= 4 + Int(length) else { return nil }
        buffer.moveReaderIndex(forwardBy: 4)
        let opcode = Opcode(rawValue: buffer.readInteger(as: UInt8.self)!)!
        let flags = Frame.Flags(rawValue: buffer.readInteger(as: UInt8.self)!)
        buffer.moveReaderIndex(forwardBy: 2)
        let correlationID = buffer.readInteger(endianness: .little, as: UInt32.self)!
        let payload = buffer.readSlice(length: Int(length) - Frame.lengthCovered)!
        return Frame(opcode: opcode, flags: flags, correlationID: correlationID, payload: payload)
    }
}

/// Writes frames.
public struct FrameEncoder: MessageToByteEncoder, Sendable {
    public typealias OutboundIn = Frame
    public init() {}
    public func encode(data: Frame, out: inout ByteBuffer) throws {
        data.write(to: &out)
    }
}
