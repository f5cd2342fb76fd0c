import ChimeBroker
import ChimeProtocol
import ChimeServer
import NIOCore
import Testing

/// Each bad input gets its error (and, for framing errors, the connection is closed); a
/// second, well-behaved client is served before and after and checks all its data.
@Suite struct ServerBadInputTests {
    private func header(length: UInt32, opcode: UInt8 = 3, flags: UInt8 = 0, id: UInt32 = 9) -> [UInt8] {
        var b = ByteBuffer()
        b.writeInteger(length, endianness: .little)
        b.writeInteger(opcode)
        b.writeInteger(flags)
        b.writeInteger(UInt16(0), endianness: .little)
        b.writeInteger(id, endianness: .little)
        return Array(b.readableBytesView)
    }

    /// The good client publishes a message and reads every one it published so far back.
    private func goodClientWorks(_ good: RawClient, _ round: Int, member: UInt64) async throws {
        let body = Array("good-\(round)".utf8)
        let r = try await good.call(.publish, Publish(topic: "good", partition: 0, records: [OutgoingRecord(body: body)]), as: PublishReply.self)
        #expect(r.outcomes.first?.id != nil)
        let got = try await good.call(.fetch, Fetch(group: "gg", memberID: member, max: 10, waitMilliseconds: 2_000), as: Deliveries.self)
        #expect(got.deliveries.map(\.body) == [body], "round \(round)")
        _ = try await good.call(.ack, Settle(group: "gg", memberID: member, receipts: got.deliveries.map(\.receipt)), as: SettleReply.self)
    }

    @Test func badInputsGetTheirErrorsAndTheBrokerServesEveryoneElse() async throws {
        let f = try await ServerFixture(ServerOptions(port: 0, maxFrameBytes: 1 << 20))
        let good = try await f.client()
        _ = try await good.call(.createTopic, CreateTopic(name: "good", settings: nil), as: WireTopic.self)
        // The test sends no heartbeats: an hour's session keeps the member through a slow machine.
        _ = try await good.call(.createGroup, CreateGroup(name: "gg", settings: WireGroupSettings(sessionTimeoutMilliseconds: 3_600_000)), as: WireGroupSettings.self)
        let member = try await good.call(.join, Join(group: "gg", member: "good", topics: ["good"]), as: WireMembership.self).memberID
        var round = 0
        try await goodClientWorks(good, round, member: member)

        // Framing errors: an error frame with the protocol code, then the connection closes.
        let framing: [(String, [UInt8], UInt16)] = [
            ("length 0", header(length: 0), 2),
            ("length 7", header(length: 7), 2),
            ("length 2^31-1", Array(header(length: UInt32(Int32.max)).prefix(4)), 1),
            ("length over the limit", header(length: (1 << 20) + 1), 1),
            ("unknown opcode", header(length: 8, opcode: 99), 3),
            ("unknown flags", header(length: 8, flags: 0x80), 4),
        ]
        for (what, bytes, code) in framing {
            let bad = try await f.client()
            await bad.send(bytes)
            let reply = try #require(await bad.readFrame(), "\(what): an error frame")
            #expect(reply.isError, "\(what)")
            #expect(try ErrorReply(payload: reply.payload).code == code, "\(what)")
            #expect(await bad.isClosedByServer(), "\(what): closed")
            round += 1
            try await goodClientWorks(good, round, member: member)
        }

        // Garbage before the handshake.
        let garbage = try await RawClient(port: f.server.port)
        await garbage.send(Array("GET / HTTP/1.1\r\nHost: x\r\n\r\n".utf8))
        let g = try #require(await garbage.readFrame())
        #expect(g.isError)
        #expect(await garbage.isClosedByServer())
        round += 1
        try await goodClientWorks(good, round, member: member)

        // A truncated frame, then the client goes away: nothing happens to anyone else.
        let truncated = try await f.client()
        await truncated.send(Array(header(length: 100).prefix(20)))
        round += 1
        try await goodClientWorks(good, round, member: member)

        // A malformed payload (a count that cannot fit, a CRC-less lie): an error response,
        // and the connection goes on.
        let sloppy = try await f.client()
        var lie = ByteBuffer()
        lie.writeWire("good")
        lie.writeWire(Int32(0))
        lie.writeWire(Int64(-1))
        lie.writeWire(Int32(-1))
        lie.writeWire(UInt32(1_000))
        var b = ByteBuffer()
        Frame(opcode: .publish, correlationID: 42, payload: lie).write(to: &b)
        await sloppy.send(Array(b.readableBytesView))
        let answer = try #require(await sloppy.readFrame())
        #expect(answer.isError && answer.correlationID == 42)
        #expect(try ErrorReply(payload: answer.payload).code == 5)
        #expect(try await sloppy.call(.listTopics, Empty(), as: TopicList.self).topics.map(\.name).contains("good"), "still served")
        // Engine errors are answers too: unknown group, bad partition.
        do {
            _ = try await sloppy.call(.publish, Publish(topic: "good", partition: 9, records: [OutgoingRecord(body: [1])]), as: PublishReply.self)
            Issue.record("bad partition accepted")
        } catch let e as ErrorReply {
            #expect(e.code == 103)
        }

        // A client that pipelines requests and never reads: others are still served.
        let slow = try await f.client()
        for _ in 0..<2_000 { await slow.send(.listTopics, Empty()) }
        round += 1
        try await goodClientWorks(good, round, member: member)
        await f.shutdown()
    }
}
