import ChimeBroker
import ChimeProtocol
import ChimeServer
import ChimeStore
import ChimeTestSupport
import ChimeWheel
import Logging
import Testing

/// Integers at their extremes in every field of every request type, over a real socket:
/// each request is answered (a reply or a typed error), the server stays up and serves a
/// good client afterwards, and a broker reopened on what was accepted starts.
@Suite struct ExtremeValueTests {
    /// The edges a careless or hostile client reaches first.
    static let int64Edges: [Int64] = [
        0, 1, -1, .min, .min + 1, .max, .max - 1, Int64(Int32.min), Int64(Int32.max), Int64(UInt32.max), 1 << 53, -(1 << 53),
    ]

    struct Values {
        var rng: SplitMix64
        let now: Int64

        /// An edge, a time near now, or anything at all.
        mutating func int64() -> Int64 {
            switch rng.next() % 4 {
            case 0, 1: return ExtremeValueTests.int64Edges[Int(rng.next() % UInt64(ExtremeValueTests.int64Edges.count))]
            case 2: return now &+ Int64(bitPattern: rng.next() % 7_200_001) &- 3_600_000
            default: return Int64(bitPattern: rng.next())
            }
        }

        mutating func int32() -> Int32 { Int32(truncatingIfNeeded: int64()) }
        mutating func uint32() -> UInt32 { UInt32(truncatingIfNeeded: int64()) }
        mutating func uint16() -> UInt16 { UInt16(truncatingIfNeeded: int64()) }
        mutating func uint64() -> UInt64 { UInt64(bitPattern: int64()) }
        mutating func bool() -> Bool { rng.next() & 1 == 0 }
        mutating func optional<T>(_ value: T) -> T? { bool() ? value : nil }
        /// No due time, or a time or a delay of any value.
        mutating func due() -> WireDue? {
            guard bool() else { return nil }
            return bool() ? .at(int64()) : .after(int64())
        }
        mutating func pick<T>(_ items: [T]) -> T { items[Int(rng.next() % UInt64(items.count))] }
    }

    /// A record batch as a client encodes it, with extreme timestamps, stamps and counts.
    static func extremeBatch(_ v: inout Values) -> [UInt8] {
        var builder = RecordBatchBuilder(
            compression: v.bool() ? .lz4 : .none, producerId: v.bool() ? -1 : v.int64(), baseSequence: v.int32())
        for _ in 0..<(1 + Int(v.rng.next() % 3)) {
            let timestamp = v.bool() ? v.now : v.int64()
            withUnsafeBytes(of: timestamp) { builder.append(timestamp: timestamp, key: v.bool() ? [1, 2] : nil, body: $0) }
        }
        var bytes = (try? builder.build()) ?? []
        // Sometimes the header lies about what follows (the CRC is made again, so only the
        // structure checks can see it).
        if bytes.count >= RecordBatchHeader.size, v.rng.next() % 3 == 0 {
            let field = v.pick([20, 24, 32])  // recordCount, firstTimestamp, maxTimestamp
            let value = v.int64()
            bytes.withUnsafeMutableBytes { raw in
                if field == 20 {
                    LittleEndian.store(UInt32(truncatingIfNeeded: value), raw, field)
                } else {
                    LittleEndian.store(value, raw, field)
                }
                // The CRC covers bytes 16 to the end and sits at 12.
                LittleEndian.store(CRC32C.checksum(UnsafeRawBufferPointer(rebasing: raw[16...])), raw, 12)
            }
        }
        return bytes
    }

    static func settings(_ v: inout Values) -> WireTopicSettings {
        WireTopicSettings(
            partitions: v.bool() ? 1 + v.uint32() % 2 : v.uint32(), retentionMilliseconds: v.optional(v.int64()),
            retentionBytes: v.optional(v.int64()), maxMessageBytes: v.bool() ? 1 << 20 : v.uint32(), maxAttempts: v.uint16(),
            dedupWindowMilliseconds: v.int64())
    }

    /// A group settings patch whose fields, where present, are at their extremes.
    static func groupSettings(_ v: inout Values) -> WireGroupSettings {
        WireGroupSettings(
            mode: v.optional(v.bool() ? .shared : .partitioned), maxInFlight: v.optional(v.uint32()), leaseMilliseconds: v.optional(v.int64()),
            sessionTimeoutMilliseconds: v.optional(v.int64()), maxAttempts: v.optional(v.int64()), keyOrdering: v.optional(v.bool()),
            keyConcurrency: v.optional(v.int64()), rateLimitMillis: v.optional(v.int64()), rateBurstMillis: v.optional(v.int64()),
            keyRateLimitMillis: v.optional(v.int64()), keyRateBurstMillis: v.optional(v.int64()), maxWindow: v.optional(v.uint32()))
    }

    @Test(arguments: [UInt64(1), 2, 3])
    func extremeValuesInEveryRequestTypeLeaveTheServerUpAndRestartable(seed: UInt64) async throws {
        let dir = TemporaryDirectory("chime-extreme")
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let options = BrokerOptions(directory: dir.path, durability: .never)
        var broker = try await Broker.open(options, logger: logger)
        // A hello may wait seconds for a thread in the full suite (see ServerFixture).
        var serverOptions = ServerOptions(port: 0)
        serverOptions.helloTimeoutMilliseconds = 120_000
        var server = try await ChimeServer.start(broker: broker, options: serverOptions, logger: logger)
        var v = Values(rng: SplitMix64(seed: seed), now: SystemWheelClock().now())
        let c = try await RawClient.authenticated(port: server.port)
        // Topics with extreme settings (the ones accepted stay for the publishes below).
        var topics = ["plain"]
        _ = try await c.call(.createTopic, CreateTopic(name: "plain", settings: nil), as: WireTopic.self)
        for n in 0..<12 {
            if let t = try? await c.call(.createTopic, CreateTopic(name: "t\(n)", settings: Self.settings(&v)), as: WireTopic.self) {
                topics.append(t.name)
            }
        }
        let member = try await c.call(.join, Join(group: "g", member: "m", topics: topics), as: WireMembership.self)
        var ids: [WireMessageID] = []
        for round in 0..<300 {
            let topic = v.pick(topics)
            let id: UInt32
            switch round % 10 {
            case 0:
                let records = (0..<(1 + Int(v.rng.next() % 3))).map { _ in
                    OutgoingRecord(
                        due: v.due(), dedupKey: v.bool() ? Array("k\(v.rng.next() % 4)".utf8) : nil,
                        key: v.bool() ? [7] : nil, body: [1, 2, 3])
                }
                id = await c.send(.publish, Publish(topic: topic, partition: v.bool() ? -1 : v.int32(), producerID: v.int64(), sequence: v.int32(), records: records))
            case 1:
                id = await c.send(.publishRecords, PublishRecords(topic: topic, partition: v.bool() ? 0 : v.uint32(), batch: Self.extremeBatch(&v)))
            case 2:
                let target = ids.isEmpty || v.bool()
                    ? WireMessageID(topicID: v.uint32(), partition: v.uint32(), kind: UInt8(truncatingIfNeeded: v.int64()), value: v.int64())
                    : v.pick(ids)
                id = await c.send(v.bool() ? .cancel : .reschedule, ScheduleChange(id: target, due: v.due()))
            case 3:
                id = await c.send(.fetch, Fetch(group: v.bool() ? "g" : "nope", memberID: v.bool() ? member.memberID : v.uint64(), max: v.uint32(), waitMilliseconds: 0))
            case 4, 5:
                let receipts = (0..<(1 + Int(v.rng.next() % 3))).map { _ in
                    WireReceipt(topicID: v.uint32(), partition: v.uint32(), source: UInt8(truncatingIfNeeded: v.int64()), offset: v.int64(), lease: v.uint32())
                }
                let opcode = v.pick([Opcode.ack, .nack, .extend, .term])
                id = await c.send(opcode, Settle(group: "g", memberID: v.bool() ? member.memberID : v.uint64(), receipts: receipts, milliseconds: v.int64(), reason: v.bool() ? "r" : nil))
            case 6:
                id = await c.send(v.bool() ? .heartbeat : .leave, MemberRef(group: v.bool() ? "g" : "h", memberID: v.bool() ? member.memberID : v.uint64()))
            case 7:
                id = await c.send(.createTopic, CreateTopic(name: "x\(round)", settings: Self.settings(&v)))
            case 8:
                let name = v.pick(["g", "shared", "h\(round % 3)"])
                switch v.rng.next() % 3 {
                case 0: id = await c.send(.createGroup, CreateGroup(name: name, ifAbsent: v.bool(), settings: Self.groupSettings(&v)))
                case 1: id = await c.send(.configureGroup, ConfigureGroup(name: name, settings: Self.groupSettings(&v)))
                default: id = await c.send(.deleteGroup, GroupRef(name: name))
                }
            default:
                id = await c.send(.stats, StatsRequest(topics: v.bool() ? [] : [topic], groups: v.bool() ? [] : ["g"], includeMembers: v.bool()))
            }
            let answer = await c.readFrame()
            #expect(answer?.correlationID == id, "round \(round): every well-formed request is answered on its connection")
            guard let answer else { break }
            if !answer.isError, answer.opcode == .publish, let reply = try? PublishReply(payload: answer.payload) {
                ids += reply.outcomes.compactMap(\.id)
            }
            if !answer.isError, answer.opcode == .createTopic, let t = try? WireTopic(payload: answer.payload) { topics.append(t.name) }
        }
        // A good client is still served.
        let good = try await RawClient.authenticated(port: server.port)
        let published = try await good.call(.publish, Publish(topic: "plain", records: [OutgoingRecord(body: Array("still here".utf8))]), as: PublishReply.self)
        #expect(published.outcomes.count == 1 && published.outcomes[0].id != nil)
        // What was accepted never stops a restart: close, reopen on the same directory, serve.
        await server.stop()
        await broker.close()
        broker = try await Broker.open(options, logger: logger)
        server = try await ChimeServer.start(broker: broker, options: serverOptions, logger: logger)
        let after = try await RawClient.authenticated(port: server.port)
        let listed = try await after.call(.listTopics, Empty(), as: TopicList.self).topics.map(\.name)
        #expect(Set(topics).isSubset(of: Set(listed)))
        let again = try await after.call(.publish, Publish(topic: "plain", records: [OutgoingRecord(dedupKey: Array("k1".utf8), body: [9])]), as: PublishReply.self)
        #expect(again.outcomes.count == 1)
        await server.stop()
        await broker.close()
    }
}
