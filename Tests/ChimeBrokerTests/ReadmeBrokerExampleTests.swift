import ChimeBroker
import ChimeTestSupport
import Logging
import Testing

/// The README's broker example, as written there (only the directory differs).
@Suite struct ReadmeBrokerExampleTests {
    @Test func theBrokerExample() async throws {
        let dir = TemporaryDirectory()
        let broker = try await Broker.open(BrokerOptions(directory: dir.path), logger: Logger(label: "chime"))
        try broker.createTopic("emails", settings: TopicSettings(partitions: 4, maxAttempts: 5))
        let sent = try await broker.publish(topic: "emails", [
            OutgoingMessage(key: Array("user-7".utf8), body: Array("welcome".utf8)),
            OutgoingMessage(key: Array("user-7".utf8), body: Array("day-2 tips".utf8), due: .after(172_800_000)),
        ])
        try await broker.cancel(sent[1].id!)

        let me = try await broker.join(group: "mailers", member: "host-a", topics: ["emails"])
        var bodies: [String] = []
        for d in try await broker.fetch(group: "mailers", member: me.memberID, max: 100) {
            bodies.append(String(decoding: d.body, as: UTF8.self))
            let results = try await broker.ack(group: "mailers", member: me.memberID, [d.receipt])
            #expect(results == [nil])
        }
        #expect(bodies == ["welcome"])
        #expect(try await broker.partitionStats(topic: "emails").reduce(0) { $0 + $1.scheduled } == 0, "the cancelled one is gone")
        await broker.close()
    }
}
