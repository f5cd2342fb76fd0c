import ChimeProtocol
import ChimeStore
import NIOCore
import NIOEmbedded
import Testing

/// The frame decoder: limits before allocation, every refusal typed, frames cut right
/// whatever the pieces the stream arrives in.
@Suite struct FrameDecoderTests {
    private func frameBytes(_ opcode: Opcode = .fetch, flags: UInt8 = 0, correlation: UInt32 = 7, payload: [UInt8] = [1, 2, 3]) -> [UInt8] {
        var b = ByteBuffer()
        Frame(opcode: opcode, flags: Frame.Flags(rawValue: flags), correlationID: correlation, payload: ByteBuffer(bytes: payload)).write(to: &b)
        return Array(b.readableBytesView)
    }

    private func header(length: UInt32, opcode: UInt8 = 11, flags: UInt8 = 0) -> [UInt8] {
        var b = ByteBuffer()
        b.writeInteger(length, endianness: .little)
        b.writeInteger(opcode)
        b.writeInteger(flags)
        b.writeInteger(UInt16(0), endianness: .little)
        b.writeInteger(UInt32(1), endianness: .little)
        return Array(b.readableBytesView)
    }

    private func refusal(_ bytes: [UInt8], maxFrameBytes: Int = 1 << 20) -> ProtocolError.Code? {
        var b = ByteBuffer(bytes: bytes)
        do {
            _ = try FrameDecoder.next(from: &b, maxFrameBytes: maxFrameBytes)
            return nil
        } catch let e as ProtocolError {
            return e.code
        } catch {
            return nil
        }
    }

    @Test func framesArrivingInAnyPiecesAreCutExactly() throws {
        let frames = (0..<5).map { frameBytes(.publish, correlation: UInt32($0), payload: Array(repeating: UInt8($0), count: $0 * 37)) }
        let stream = frames.flatMap { $0 }
        for piece in [1, 2, 5, 13, stream.count] {
            let channel = EmbeddedChannel(handler: ByteToMessageHandler(FrameDecoder(maxFrameBytes: 1 << 20)))
            var at = 0
            while at < stream.count {
                let end = min(stream.count, at + piece)
                try channel.writeInbound(ByteBuffer(bytes: stream[at..<end]))
                at = end
            }
            var got: [Frame] = []
            while let f = try channel.readInbound(as: Frame.self) { got.append(f) }
            #expect(got.map(\.correlationID) == [0, 1, 2, 3, 4])
            #expect(got.map { $0.payload.readableBytes } == [0, 37, 74, 111, 148])
            #expect(got.allSatisfy { $0.opcode == .publish && $0.flags == [] })
            _ = try channel.finish()
        }
    }

    @Test func theLengthIsCheckedBeforeAnythingElse() {
        // Over the limit: refused from the 4 length bytes alone, nothing more is awaited.
        #expect(refusal(Array(header(length: UInt32(Int32.max)).prefix(4))) == .frameTooLarge)
        #expect(refusal(Array(header(length: UInt32.max).prefix(4))) == .frameTooLarge)
        #expect(refusal(header(length: 1 << 20 + 1)) == .frameTooLarge)
        #expect(refusal(header(length: 0)) == .frameTooShort)
        #expect(refusal(header(length: 7)) == .frameTooShort)
        #expect(refusal(header(length: 8)) == nil)
    }

    @Test func unknownOpcodesAndFlagsAreRefusedAtTheHeader() {
        #expect(refusal(header(length: 100, opcode: 0)) == .unknownOpcode)
        #expect(refusal(header(length: 100, opcode: 200)) == .unknownOpcode)
        #expect(refusal(header(length: 100, flags: 4)) == .badFlags)
        #expect(refusal(header(length: 100, flags: 3)) == nil, "response + error is a valid pair of flags")
    }

    @Test func aTruncatedFrameWaitsAndConsumesNothing() throws {
        let bytes = frameBytes(payload: Array(repeating: 9, count: 50))
        for cut in [0, 3, 4, 11, 12, bytes.count - 1] {
            var b = ByteBuffer(bytes: bytes.prefix(cut))
            #expect(try FrameDecoder.next(from: &b, maxFrameBytes: 1 << 20) == nil)
            #expect(b.readableBytes == cut)
        }
    }

    /// Seeded random bytes: the decoder returns frames, asks for more, or throws a
    /// ProtocolError; it never traps.
    @Test(arguments: [1, 2, 3] as [UInt64]) func randomBytesNeverCrashTheDecoder(seed: UInt64) {
        var rng = SplitMix64(seed: seed)
        for _ in 0..<2_000 {
            let n = Int(rng.next() % 64)
            var bytes = (0..<n).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            if n >= 4 && rng.next() % 2 == 0 {  // plausible lengths more often
                let length = UInt32(rng.next() % 80)
                bytes.replaceSubrange(0..<4, with: withUnsafeBytes(of: length.littleEndian, Array.init))
            }
            var b = ByteBuffer(bytes: bytes)
            while let frame = try? FrameDecoder.next(from: &b, maxFrameBytes: 64), frame.payload.readableBytes >= 0 {}
        }
    }
}
