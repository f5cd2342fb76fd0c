import ChimeClient
import Logging
import Testing

/// The README's client example, as written there (only the port differs: a real server on
/// an ephemeral port).
@Suite struct ReadmeClientExampleTests {
    @Test func theClientExample() async throws {
        let f = try await ServerFixture()
        var bodies: [String] = []

        let client = ChimeClient(ClientOptions(host: "127.0.0.1", port: f.server.port), logger: Logger(label: "app"))
        let id = try await client.publish(Array("expire coupon 42".utf8), to: "coupons", delay: .seconds(3600))
        try await client.cancel(id)                      // changed our mind
        try await client.publish(Array("expire coupon 43".utf8), to: "coupons", key: Array("c-43".utf8))
        for try await message in client.consume(group: "expirers", topics: ["coupons"]) {
            bodies.append(String(decoding: message.body, as: UTF8.self))
            try await message.ack()          // or nack(delay: 30_000), extend(by:), term(reason:)
            break
        }
        await client.close()

        #expect(bodies == ["expire coupon 43"], "the cancelled one never comes")
        let stats = try await f.broker.groupStats("expirers")
        #expect(stats.partitions.reduce(0) { $0 + $1.lag } == 0)
        await f.shutdown()
    }
}
