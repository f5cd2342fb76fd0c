import ChimeBroker
import ChimeProtocol
import ChimeServer
import ChimeStore
import Testing

/// No answer outgrows the frame limit: the client would refuse it and lose the connection
/// (and the leases of what it held).
@Suite struct ReplyLimitTests {
    @Test func aFetchAnswersWithFewerDeliveriesRatherThanAFrameOverTheLimit() async throws {
        let frameLimit = 64 << 10
        let f = try await ServerFixture(ServerOptions(port: 0, maxFrameBytes: frameLimit))
        try f.broker.createTopic("big", settings: TopicSettings(partitions: 1, maxMessageBytes: 40 << 10))
        // Published through the engine: each alone fits a frame, ten together do not.
        let bodies = (0..<10).map { n in [UInt8](repeating: UInt8(n), count: 30 << 10) }
        _ = try await f.broker.publish(topic: "big", bodies.map { OutgoingMessage(body: $0) }, partition: 0)
        let c = try await f.client()
        let m = try await c.call(.join, Join(group: "g", member: "m", topics: ["big"]), as: WireMembership.self)
        var received: [[UInt8]] = []
        for _ in 0..<20 where received.count < bodies.count {
            let id = await c.send(.fetch, Fetch(group: "g", memberID: m.memberID, max: 1_000, waitMilliseconds: 0))
            let frame = try #require(await c.readFrame())
            #expect(frame.correlationID == id && !frame.isError)
            #expect(Frame.headerSize + frame.payload.readableBytes <= frameLimit, "an answer of \(frame.payload.readableBytes) bytes")
            let got = try Deliveries(payload: frame.payload).deliveries
            #expect(!got.isEmpty && got.count < bodies.count)
            received += got.map(\.body)
            _ = try await c.call(.ack, Settle(group: "g", memberID: m.memberID, receipts: got.map(\.receipt)), as: SettleReply.self)
        }
        #expect(received == bodies, "every message, once, in order")
        await f.shutdown()
    }
}
