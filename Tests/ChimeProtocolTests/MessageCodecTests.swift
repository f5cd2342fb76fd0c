import ChimeProtocol
import NIOCore
import Testing

/// Every payload type survives encode → decode unchanged, and refuses what is malformed.
@Suite struct MessageCodecTests {
    private func roundTrip<M: WireMessage>(_ m: M) throws {
        let decoded = try M(payload: m.payload())
        #expect(decoded == m)
    }

    private let id = WireMessageID(topicID: 3, partition: 1, kind: 1, value: 123_456)
    private let receipt = WireReceipt(topicID: 3, partition: 1, source: 1, offset: 99, lease: 7)

    @Test func everyPayloadRoundTrips() throws {
        try roundTrip(Hello(client: "worker-ü", token: Array("secret".utf8)))
        try roundTrip(Hello(client: "", token: nil))
        try roundTrip(HelloReply(version: 1, server: "chime 0.4"))
        try roundTrip(ErrorReply(code: 104, message: "topic x does not exist"))
        try roundTrip(Empty())
        let settings = WireTopicSettings(
            partitions: 4, retentionMilliseconds: nil, retentionBytes: 1 << 30, maxMessageBytes: 1 << 20, maxAttempts: 5,
            dedupWindowMilliseconds: 600_000)
        try roundTrip(CreateTopic(name: "orders", settings: settings))
        try roundTrip(CreateTopic(name: "orders", settings: nil))
        try roundTrip(TopicList(topics: [WireTopic(name: "a", id: 1, settings: settings), WireTopic(name: "b", id: 2, settings: settings)]))
        try roundTrip(TopicName(name: "orders"))
        try roundTrip(
            Publish(
                topic: "orders", partition: 2, producerID: 77, sequence: 10,
                records: [
                    OutgoingRecord(body: []),
                    OutgoingRecord(
                        due: .at(1_800_000_000_000), dedupKey: [1], key: Array("k".utf8), headers: [WireHeader(name: "h", value: [0, 255])],
                        body: Array(repeating: 42, count: 1000)),
                ]))
        try roundTrip(PublishReply(outcomes: [.init(id: id, partition: 1, duplicate: false), .init(id: nil, partition: 0, duplicate: true)]))
        try roundTrip(ScheduleChange(id: id))
        try roundTrip(ScheduleChange(id: id, due: .at(1_900_000_000_000)))
        try roundTrip(Join(group: "workers", member: "host-a", topics: ["a", "b"]))
        try roundTrip(MemberRef(group: "workers", memberID: .max))
        try roundTrip(WireMembership(memberID: 5, generation: 9, assignment: [("a", 0), ("b", 3)]))
        try roundTrip(Fetch(group: "workers", memberID: 5, max: 100, waitMilliseconds: 30_000))
        try roundTrip(Peek(topic: "emails", partition: 3, fromOffset: .max, group: "workers", max: .max))
        try roundTrip(Peek(topic: "emails", partition: .max, fromOffset: -1, max: 0))
        let delivery = WireDelivery(
            topic: "orders", partition: 1, offset: 99, id: id, key: nil, headers: [WireHeader(name: "x", value: [])], body: [1, 2, 3],
            publishedAt: 1, dueAt: 2, deliveredAt: 3, attempt: 2, lastError: "timeout", receipt: receipt, leaseDeadline: 30_003)
        var second = delivery
        second.lastError = nil
        second.key = [9]
        try roundTrip(Deliveries(deliveries: [delivery, second]))
        try roundTrip(Settle(group: "workers", memberID: 5, receipts: [receipt, receipt], milliseconds: 30_000, reason: "retry later"))
        try roundTrip(Settle(group: "workers", memberID: 5, receipts: []))
        try roundTrip(SettleReply(results: [nil, ErrorReply(code: 110, message: "lease expired"), nil]))
    }

    @Test func dueTimesAreTaggedFromVersion3AndPlainTimesBefore() throws {
        let records = [OutgoingRecord(body: [1]), OutgoingRecord(due: .at(1_800_000_000_000), body: [2]), OutgoingRecord(due: .after(30_000), body: [3])]
        let v3 = Publish(topic: "t", records: records)
        #expect(try Publish(payload: v3.payload()) == v3)
        try roundTrip(ScheduleChange(id: id, due: .after(5_000)))
        // Version 2: an i64 time per record, −1 for none, as version-2 clients send it.
        let v2 = Publish(topic: "t", records: Array(records.prefix(2)), version: 2)
        var bytes = v2.payload()
        #expect(try Publish(payload: bytes, version: 2) == v2)
        bytes.moveReaderIndex(forwardBy: 2 + 1 + 4 + 8 + 4 + 4)  // topic, partition, producer, sequence, count
        #expect(bytes.readInteger(endianness: .little, as: Int64.self) == -1)
        // An unknown kind is malformed.
        var bad = ByteBuffer()
        WireMessageID(topicID: 1, partition: 0, kind: 1, value: 0).encode(into: &bad)
        bad.writeInteger(UInt8(3))
        bad.writeInteger(Int64(0), endianness: .little)
        #expect(throws: ProtocolError(.malformed, "unknown due time kind 3")) { try ScheduleChange(payload: bad) }
    }

    @Test func truncatedPayloadsAreMalformedAtEveryCut() throws {
        let full = Publish(
            topic: "orders", records: [OutgoingRecord(due: .at(5), dedupKey: nil, key: [1, 2], headers: [WireHeader(name: "h", value: [3])], body: [4, 5, 6])]
        ).payload()
        for cut in 0..<full.readableBytes {
            #expect(throws: ProtocolError.self) { try Publish(payload: full.getSlice(at: 0, length: cut)!) }
        }
        var longer = full
        longer.writeInteger(UInt8(0))
        #expect(throws: ProtocolError(.malformed, "1 bytes left over after Publish")) { try Publish(payload: longer) }
    }

    @Test func countsThatCannotFitAreRefusedBeforeAllocating() throws {
        var b = ByteBuffer()
        b.writeWire("orders")
        b.writeWire(Int32(-1))
        b.writeWire(Int64(-1))
        b.writeWire(Int32(-1))
        b.writeWire(UInt32(50_000))  // records announced; no bytes follow
        #expect(throws: ProtocolError.self) { try Publish(payload: b) }
        var many = ByteBuffer()
        many.writeWire("orders")
        many.writeWire(Int32(-1))
        many.writeWire(Int64(-1))
        many.writeWire(Int32(-1))
        many.writeWire(UInt32.max)
        do {
            _ = try Publish(payload: many)
            Issue.record("accepted 2^32-1 records")
        } catch let e as ProtocolError {
            #expect(e.code == .tooManyRecords)
        }
    }

    @Test func stringsMustBeUTF8() {
        var b = ByteBuffer()
        b.writeInteger(UInt16(2), endianness: .little)
        b.writeBytes([0xC3, 0x28])  // invalid two-byte sequence
        #expect(throws: ProtocolError.self) { try TopicName(payload: b) }
    }
}
