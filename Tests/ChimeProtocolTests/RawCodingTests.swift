import NIOCore
import Testing

@testable import ChimeProtocol

/// The raw codecs of the hot payloads (a fetch's deliveries, a settle's receipts) write the
/// bytes the field-by-field layout of docs/formats.md gives, and read them back; seeded
/// random deliveries cover every optional field.
@Suite struct RawCodingTests {
    /// SplitMix64: the same deliveries on every run of a seed.
    struct Seeded: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    private func bytes(_ n: Int, _ rng: inout Seeded) -> [UInt8] { (0..<n).map { _ in UInt8.random(in: 0...255, using: &rng) } }

    private func delivery(_ rng: inout Seeded) -> WireDelivery {
        let topics = ["orders", "", "ünïcödé-topic", "a-topic-name-longer-than-fifteen-bytes"]
        let receipt = WireReceipt(
            topicID: .random(in: 0...UInt32.max, using: &rng), partition: .random(in: 0...64, using: &rng), source: .random(in: 0...1, using: &rng),
            offset: .random(in: .min ... .max, using: &rng), lease: .random(in: 0...UInt32.max, using: &rng))
        return WireDelivery(
            topic: topics.randomElement(using: &rng)!, partition: .random(in: 0...UInt32.max, using: &rng), offset: .random(in: .min ... .max, using: &rng),
            id: WireMessageID(
                topicID: .random(in: 0...UInt32.max, using: &rng), partition: .random(in: 0...UInt32.max, using: &rng), kind: .random(in: 0...1, using: &rng),
                value: .random(in: .min ... .max, using: &rng)),
            key: Bool.random(using: &rng) ? nil : bytes(.random(in: 0...40, using: &rng), &rng),
            headers: (0..<Int.random(in: 0...3, using: &rng)).map { k in WireHeader(name: "h\(k)-é", value: bytes(.random(in: 0...20, using: &rng), &rng)) },
            body: bytes(.random(in: 0...300, using: &rng), &rng), publishedAt: .random(in: .min ... .max, using: &rng),
            dueAt: .random(in: .min ... .max, using: &rng), deliveredAt: .random(in: .min ... .max, using: &rng),
            attempt: .random(in: 0...UInt32.max, using: &rng), lastError: Bool.random(using: &rng) ? nil : "timeout #\(rng.next() % 1000)",
            receipt: receipt, leaseDeadline: .random(in: .min ... .max, using: &rng))
    }

    @Test(arguments: [1, 2, 3, 4, 5] as [UInt64])
    func rawAndFieldByFieldWriteTheSameBytes(seed: UInt64) throws {
        var rng = Seeded(state: seed)
        let deliveries = (0..<200).map { _ in delivery(&rng) }
        for d in deliveries {
            var raw = ByteBuffer()
            d.encode(into: &raw)
            var fields = ByteBuffer()
            d.encodeFieldByField(into: &fields)
            #expect(raw == fields)
            #expect(raw.readableBytes == d.rawSize)
        }
        // A whole answer: decoded equal (topics alternate, so a reused topic String must
        // not leak into the next delivery), and built without the array to the same bytes.
        let answer = Deliveries(deliveries: deliveries)
        let payload = answer.payload()
        #expect(try Deliveries(payload: payload) == answer)
        let built = Deliveries.payload(deliveries, allocator: ByteBufferAllocator(), estimatedSize: 16) { $0 }
        #expect(built == payload)
        let settle = Settle(group: "workers", memberID: rng.next(), receipts: deliveries.map(\.receipt), milliseconds: 5, reason: nil)
        #expect(try Settle(payload: settle.payload()) == settle)
    }

    @Test func cutAnywhereADeliveriesAnswerOrASettleIsMalformed() throws {
        var rng = Seeded(state: 42)
        let answer = Deliveries(deliveries: (0..<3).map { _ in delivery(&rng) }).payload()
        for cut in 0..<answer.readableBytes {
            #expect(throws: ProtocolError.self) { try Deliveries(payload: answer.getSlice(at: 0, length: cut)!) }
        }
        let settle = Settle(group: "g", memberID: 1, receipts: (0..<3).map { _ in delivery(&rng).receipt }).payload()
        for cut in 0..<settle.readableBytes {
            #expect(throws: ProtocolError.self) { try Settle(payload: settle.getSlice(at: 0, length: cut)!) }
        }
    }

    @Test func unknownSourcesAndKindsAreRefused() throws {
        var rng = Seeded(state: 7)
        var d = delivery(&rng)
        d.lastError = nil
        d.headers = []
        d.key = nil
        var bad = Deliveries(deliveries: [d]).payload()
        // The receipt's source byte: 8 (lease deadline) + 4 (lease) + 8 (offset) + 1 from the end.
        bad.setInteger(UInt8(2), at: bad.writerIndex - 21)
        #expect(throws: ProtocolError(.malformed, "unknown delivery source 2")) { try Deliveries(payload: bad) }
        var badKind = Deliveries(deliveries: [d]).payload()
        // The id kind: after count (4), topic (2 + n), partition (4), offset (8), id topic and partition (8).
        badKind.setInteger(UInt8(9), at: 4 + 2 + d.topic.utf8.count + 4 + 8 + 8)
        #expect(throws: ProtocolError(.malformed, "unknown id kind 9")) { try Deliveries(payload: badKind) }
    }

    @Test func aTopicTooLongForTheRawPathIsCutAsBefore() throws {
        var rng = Seeded(state: 9)
        var d = delivery(&rng)
        d.topic = String(repeating: "é", count: 40_000)  // 80,000 bytes of UTF-8
        #expect(d.rawSize == nil)
        let decoded = try Deliveries(payload: Deliveries(deliveries: [d]).payload()).deliveries[0]
        #expect(decoded.topic == String(repeating: "é", count: 32_767))  // cut at a character boundary under 65,535 bytes
        #expect(decoded.body == d.body)
    }
}
