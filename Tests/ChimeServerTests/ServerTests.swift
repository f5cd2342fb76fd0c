import Foundation
import ChimeBroker
import ChimeProtocol
import ChimeServer
import ChimeStore
import ChimeTestSupport
import ChimeWheel
import Logging
import NIOCore
import ChimeClient
import Synchronization
import Testing

/// A real server on 127.0.0.1 (ephemeral port) over a real broker, and raw clients.
final class ServerFixture {
    let dir = TemporaryDirectory("chime-server")
    let broker: Broker
    let server: ChimeServer

    init(_ options: ServerOptions = ServerOptions(port: 0)) async throws {
        // The whole suite shares two cores and one event-loop group: a hello can wait
        // seconds for a thread. Tests of the hello deadline set their own.
        var options = options
        if options.helloTimeoutMilliseconds == ServerOptions().helloTimeoutMilliseconds { options.helloTimeoutMilliseconds = 120_000 }
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        broker = try await Broker.open(BrokerOptions(directory: dir.path, durability: .never), logger: logger)
        server = try await ChimeServer.start(broker: broker, options: options, logger: logger)
    }

    func client(token: String? = nil) async throws -> RawClient {
        try await RawClient.authenticated(port: server.port, token: token)
    }

    func shutdown() async {
        await server.stop()
        await broker.close()
    }
}

@Suite struct ServerTests {
    @Test func everyRequestTypeOverARealSocket() async throws {
        let f = try await ServerFixture()
        let c = try await f.client()
        let topic = try await c.call(
            .createTopic,
            CreateTopic(name: "jobs", settings: WireTopicSettings(partitions: 2, retentionMilliseconds: nil, retentionBytes: nil, maxMessageBytes: 1 << 20, maxAttempts: 3, dedupWindowMilliseconds: 1_000)),
            as: WireTopic.self)
        #expect(topic.name == "jobs" && topic.settings.partitions == 2)
        #expect(try await c.call(.listTopics, Empty(), as: TopicList.self).topics.map(\.name) == ["jobs"])
        let now = SystemWheelClock().now()
        let published = try await c.call(
            .publish,
            Publish(topic: "jobs", partition: 0, records: [OutgoingRecord(body: Array("now".utf8)), OutgoingRecord(due: .at(now + 3_600_000), body: Array("later".utf8))]),
            as: PublishReply.self)
        #expect(published.outcomes.count == 2 && published.outcomes.allSatisfy { $0.id != nil && !$0.duplicate })
        let later = published.outcomes[1].id!
        let moved = try await c.call(.reschedule, ScheduleChange(id: later, due: .at(now + 7_200_000)), as: WireMessageID.self)
        _ = try await c.call(.cancel, ScheduleChange(id: moved), as: Empty.self)
        do {
            _ = try await c.call(.cancel, ScheduleChange(id: moved), as: Empty.self)
            Issue.record("a second cancel succeeded")
        } catch let e as ErrorReply {
            #expect(e.code == 108, "unknownMessage")
        }
        let m = try await c.call(.join, Join(group: "g", member: "w", topics: ["jobs"]), as: WireMembership.self)
        #expect(m.assignment.count == 2)
        #expect(try await c.call(.heartbeat, MemberRef(group: "g", memberID: m.memberID), as: WireMembership.self).memberID == m.memberID)
        let got = try await c.call(.fetch, Fetch(group: "g", memberID: m.memberID, max: 10, waitMilliseconds: 1_000), as: Deliveries.self)
        #expect(got.deliveries.map { String(decoding: $0.body, as: UTF8.self) } == ["now"])
        let receipts = got.deliveries.map(\.receipt)
        #expect(try await c.call(.extend, Settle(group: "g", memberID: m.memberID, receipts: receipts, milliseconds: 60_000), as: SettleReply.self).results == [nil])
        #expect(try await c.call(.ack, Settle(group: "g", memberID: m.memberID, receipts: receipts), as: SettleReply.self).results == [nil])
        let again = try await c.call(.ack, Settle(group: "g", memberID: m.memberID, receipts: receipts), as: SettleReply.self)
        #expect(again.results.first??.code == 113, "alreadyAcked, per receipt")
        _ = try await c.call(.leave, MemberRef(group: "g", memberID: m.memberID), as: Empty.self)
        _ = try await c.call(.deleteTopic, TopicName(name: "jobs"), as: Empty.self)
        #expect(try await c.call(.listTopics, Empty(), as: TopicList.self).topics.isEmpty)
        await f.shutdown()
    }

    @Test func pipelinedRequestsAreAnsweredByCorrelationID() async throws {
        let f = try await ServerFixture()
        let c = try await f.client()
        var ids: [UInt32] = []
        for i in 0..<50 {
            ids.append(await c.send(.publish, Publish(topic: "p", partition: 0, records: [OutgoingRecord(body: Array("m\(i)".utf8))])))
        }
        var answered: [UInt32] = []
        for _ in 0..<50 {
            let frame = try #require(await c.readFrame())
            #expect(frame.isResponse && !frame.isError)
            answered.append(frame.correlationID)
        }
        #expect(Set(answered) == Set(ids))
        await f.shutdown()
    }

    @Test func aConnectionOverItsByteBudgetIsNotReadUntilItsRequestsAreAnswered() async throws {
        // Without a budget, a quick request behind a waiting fetch is answered first; with a
        // budget the fetch alone exhausts, the server reads nothing more until the fetch is
        // answered, so the quick one comes second.
        func order(budget: Int) async throws -> [UInt32] {
            let f = try await ServerFixture(ServerOptions(port: 0, maxBufferedBytesPerConnection: budget))
            let c = try await f.client()
            _ = try await c.call(.createTopic, CreateTopic(name: "t", settings: nil), as: WireTopic.self)
            let m = try await c.call(.join, Join(group: "g", member: "w", topics: ["t"]), as: WireMembership.self)
            let fetch = await c.send(.fetch, Fetch(group: "g", memberID: m.memberID, max: 10, waitMilliseconds: 300))
            let list = await c.send(.listTopics, Empty())
            var answered: [UInt32] = []
            for _ in 0..<2 { answered.append(try #require(await c.readFrame()).correlationID) }
            #expect(Set(answered) == [fetch, list])
            await f.shutdown()
            return answered == [fetch, list] ? [1, 2] : [2, 1]
        }
        #expect(try await order(budget: 64 << 20) == [2, 1], "pipelined: the quick one first")
        #expect(try await order(budget: 1) == [1, 2], "over budget: one at a time")
    }

    @Test func recordsInTheStoresBatchFormatAreStoredAsTheyCame() async throws {
        let f = try await ServerFixture()
        let c = try await f.client()
        _ = try await c.call(.createTopic, CreateTopic(name: "raw", settings: WireTopicSettings(partitions: 2, retentionMilliseconds: nil, retentionBytes: nil, maxMessageBytes: 100, maxAttempts: 3, dedupWindowMilliseconds: 1_000)), as: WireTopic.self)
        let now = Int64(Date().timeIntervalSince1970 * 1_000)
        func batch(_ bodies: [String], producer: Int64 = -1, sequence: Int32 = -1, header: String? = nil, at timestamp: Int64 = now) throws -> [UInt8] {
            var b = RecordBatchBuilder(producerId: producer, baseSequence: sequence)
            for body in bodies {
                b.append(Record(timestamp: timestamp, key: nil, headers: header.map { [RecordHeader(name: $0, value: [1])] } ?? [], body: Array(body.utf8)))
            }
            return try b.build()
        }
        let stored = try await c.call(.publishRecords, PublishRecords(topic: "raw", partition: 1, batch: batch(["a", "b", "c"], producer: 9, sequence: 0)), as: PublishReply.self)
        #expect(stored.outcomes.map { $0.id?.value } == [0, 1, 2] && stored.outcomes.allSatisfy { $0.partition == 1 && !$0.duplicate })
        // The same stamp again: a duplicate, answered with the first ids, stored once.
        let again = try await c.call(.publishRecords, PublishRecords(topic: "raw", partition: 1, batch: batch(["a", "b", "c"], producer: 9, sequence: 0)), as: PublishReply.self)
        #expect(again.outcomes.map { $0.id?.value } == [0, 1, 2] && again.outcomes.allSatisfy(\.duplicate))
        // Refused, each with its code, and the connection goes on.
        var corrupt = try batch(["x"])
        corrupt[corrupt.count - 1] ^= 0xFF
        for (bytes, code) in [(corrupt, UInt16(106)), (Array(corrupt.prefix(20)), 105), (try batch(["x"], header: "chime-id"), 115), (try batch([String(repeating: "y", count: 200)]), 104),
            (try batch(["z"], at: now - 7_200_000), 115), (try batch(["z"], at: now + 7_200_000), 115)] {
            do {
                _ = try await c.call(.publishRecords, PublishRecords(topic: "raw", partition: 0, batch: bytes), as: PublishReply.self)
                Issue.record("a bad batch was stored")
            } catch let e as ErrorReply {
                #expect(e.code == code, "\(e.message)")
            }
        }
        let stats = try await f.broker.partitionStats(topic: "raw")
        #expect(stats.map { $0.logEnd } == [0, 3], "nothing of the refused batches stored")
        let m = try await c.call(.join, Join(group: "g", member: "w", topics: ["raw"]), as: WireMembership.self)
        let got = try await c.call(.fetch, Fetch(group: "g", memberID: m.memberID, max: 10), as: Deliveries.self)
        #expect(got.deliveries.map { String(decoding: $0.body, as: UTF8.self) } == ["a", "b", "c"])
        await f.shutdown()
    }

    @Test func tokensAreRequiredWhenConfigured() async throws {
        let f = try await ServerFixture(ServerOptions(port: 0, tokens: ["s3cret", "other"]))
        // Wrong token: an error, then the connection is closed.
        let wrong = try await RawClient(port: f.server.port)
        do {
            try await wrong.handshake(token: "guess")
            Issue.record("a wrong token was accepted")
        } catch let e as ErrorReply {
            #expect(e.code == 7)
        }
        #expect(await wrong.isClosedByServer())
        // Nothing but a hello before the handshake.
        let early = try await RawClient(port: f.server.port)
        await early.send(.listTopics, Empty())
        let refused = try #require(await early.readFrame())
        #expect(refused.isError)
        #expect(try ErrorReply(payload: refused.payload).code == 7)
        #expect(await early.isClosedByServer())
        // Either configured token works.
        let right = try await f.client(token: "other")
        #expect(try await right.call(.listTopics, Empty(), as: TopicList.self).topics.isEmpty)
        await f.shutdown()
    }

    @Test func aNewerOnlyClientIsRefusedWithTheVersionsSpoken() async throws {
        let f = try await ServerFixture()
        let c = try await RawClient(port: f.server.port)
        do {
            _ = try await c.call(.hello, Hello(minVersion: ProtocolVersion.current + 1, maxVersion: ProtocolVersion.current + 2, client: "future"), as: HelloReply.self)
            Issue.record("accepted an unsupported version")
        } catch let e as ErrorReply {
            #expect(e.code == 6)
            #expect(e.message.contains("1...\(ProtocolVersion.current)"))
        }
        // A version-1 client is still served, at version 1.
        let old = try await RawClient(port: f.server.port)
        #expect(try await old.call(.hello, Hello(minVersion: 1, maxVersion: 1, client: "v1"), as: HelloReply.self).version == 1)
        #expect(try await old.call(.listTopics, Empty(), as: TopicList.self).topics.isEmpty)
        // Opcode 17 is version 2's: on a version-1 connection it is an unknown opcode.
        var b = RecordBatchBuilder(producerId: -1, baseSequence: -1)
        b.append(Record(timestamp: Int64(Date().timeIntervalSince1970 * 1_000), key: nil, headers: [], body: [1]))
        _ = try await old.call(.createTopic, CreateTopic(name: "t", settings: nil), as: WireTopic.self)
        do {
            _ = try await old.call(.publishRecords, PublishRecords(topic: "t", partition: 0, batch: try b.build()), as: PublishReply.self)
            Issue.record("a version-1 connection was served opcode 17")
        } catch let e as ErrorReply {
            #expect(e.code == 3, "\(e.message)")
        }
        #expect(await old.isClosedByServer())
        #expect(try await f.broker.partitionStats(topic: "t").allSatisfy { $0.logEnd == 0 })
        await f.shutdown()
    }

    /// Versions 1 and 2 send a due time as an i64 time (−1 for none): still served so.
    @Test func aVersion2ClientsDueTimesAreTimes() async throws {
        let f = try await ServerFixture()
        let old = try await RawClient(port: f.server.port)
        #expect(try await old.call(.hello, Hello(minVersion: 1, maxVersion: 2, client: "v2"), as: HelloReply.self).version == 2)
        let now = SystemWheelClock().wallNow()
        let publish = Publish(
            topic: "t", partition: 0,
            records: [OutgoingRecord(body: [1]), OutgoingRecord(due: .at(now + 3_600_000), body: [2]), OutgoingRecord(due: .at(now - 1), body: [3])],
            version: 2)
        let outcomes = try await old.call(.publish, publish, as: PublishReply.self).outcomes
        #expect(outcomes.map { $0.id?.kind } == [0, 1, 0], "due now, in an hour, overdue")
        let moved = try await old.call(.reschedule, ScheduleChange(id: outcomes[1].id!, due: .at(now + 7_200_000), version: 2), as: WireMessageID.self)
        #expect(try await f.broker.partitionStats(topic: "t").map(\.scheduled).reduce(0, +) == 1)
        _ = try await old.call(.cancel, ScheduleChange(id: moved, version: 2), as: Empty.self)
        #expect(try await f.broker.partitionStats(topic: "t").map(\.scheduled).reduce(0, +) == 0)
        await f.shutdown()
    }

    @Test func connectionsBeyondTheLimitAreClosed() async throws {
        let f = try await ServerFixture(ServerOptions(port: 0, maxConnections: 2))
        let a = try await f.client()
        let b = try await f.client()
        let c = try await RawClient(port: f.server.port)
        await c.send(.hello, Hello(client: "third"))
        #expect(await c.readFrame() == nil, "closed without an answer")
        #expect(try await a.call(.listTopics, Empty(), as: TopicList.self).topics.isEmpty)
        #expect(try await b.call(.listTopics, Empty(), as: TopicList.self).topics.isEmpty)
        await f.shutdown()
    }

    /// Stats of all topics while another client deletes some: a topic deleted between the
    /// listing and its counts is left out (as the admin port does), not an error for a
    /// name the caller never asked about.
    @Test func statsOfAllTopicsSkipTopicsDeletedMeanwhile() async throws {
        let f = try await ServerFixture()
        let client = ChimeClient(ClientOptions(port: f.server.port), logger: Self.quietLogger)
        let topics = 60
        for i in 0..<topics { try await client.createTopic("t\(i)") }
        let deleter = ChimeClient(ClientOptions(port: f.server.port, name: "deleter"), logger: Self.quietLogger)
        let done = Mutex(false)
        let deleting = Task {
            defer { done.withLock { $0 = true } }
            for i in 0..<topics { try await deleter.deleteTopic("t\(i)") }
        }
        var failures: [String] = []
        while !done.withLock({ $0 }) {
            do {
                _ = try await client.stats()
            } catch {
                failures.append("\(error)")
            }
        }
        try await deleting.value
        #expect(failures.isEmpty, "\(failures.first ?? "")")
        await deleter.close()
        await client.close()
        await f.shutdown()
    }

    static var quietLogger: Logger {
        var l = Logger(label: "server-test")
        l.logLevel = .critical
        return l
    }
}
