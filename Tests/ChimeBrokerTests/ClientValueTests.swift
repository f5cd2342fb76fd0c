import ChimeBroker
import ChimeStore
import ChimeTestSupport
import Foundation
import Testing

/// Values a client chose — times, windows, counts, batch header fields — are checked where
/// they enter: extreme ones get a typed error, never a trap, and nothing the broker accepted
/// can stop it from opening again.
@Suite struct ClientValueTests {
    /// A batch as a client encodes it, one record per timestamp.
    static func batch(_ timestamps: [Int64], compression: Compression = .none, producerId: Int64 = -1) throws -> [UInt8] {
        var b = RecordBatchBuilder(compression: compression, producerId: producerId, baseSequence: producerId >= 0 ? 0 : -1)
        for t in timestamps { [UInt8]("x".utf8).withUnsafeBytes { b.append(timestamp: t, body: $0) } }
        return try b.build()
    }

    /// Overwrites a header field and makes the CRC right again, as a careful liar would.
    static func lie(_ bytes: [UInt8], at field: Int, _ value: some FixedWidthInteger) -> [UInt8] {
        var out = bytes
        withUnsafeBytes(of: value.littleEndian) { v in for (i, b) in v.enumerated() { out[field + i] = b } }
        let crc = CRC32C.checksum(out[16...])
        withUnsafeBytes(of: crc.littleEndian) { v in for (i, b) in v.enumerated() { out[12 + i] = b } }
        return out
    }

    @Test(arguments: [Int64.min, .min + 1, .max, .max - 1, 0, -1])
    func aRecordTimestampAtAnExtremeIsRefusedNotATrap(timestamp: Int64) async throws {
        let s = try await Scenario.make()
        try s.broker.createTopic("jobs", settings: TopicSettings(partitions: 1))
        await expectBrokerError(.invalidArgument) { try await s.broker.publishRecords(topic: "jobs", partition: 0, batch: try Self.batch([timestamp])) }
        // A first record near now and a second whose delta wraps past Int64.
        await expectBrokerError(.invalidArgument) {
            try await s.broker.publishRecords(topic: "jobs", partition: 0, batch: try Self.batch([s.now, timestamp]))
        }
        let ok = try await s.broker.publishRecords(topic: "jobs", partition: 0, batch: try Self.batch([s.now]))
        #expect(ok.count == 1)
    }

    @Test func aBatchHeaderThatDisagreesWithItsRecordsIsRefused() async throws {
        let s = try await Scenario.make()
        try s.broker.createTopic("jobs", settings: TopicSettings(partitions: 1))
        let good = try Self.batch([s.now, s.now + 1, s.now + 2])
        // recordCount (offset 20) says 1 of the 3 records present.
        await expectBrokerError(.malformedBatch) { try await s.broker.publishRecords(topic: "jobs", partition: 0, batch: Self.lie(good, at: 20, UInt32(1))) }
        // firstTimestamp (24) differs from the first record's.
        await expectBrokerError(.malformedBatch) {
            try await s.broker.publishRecords(topic: "jobs", partition: 0, batch: Self.lie(good, at: 24, s.now - 5))
        }
        // maxTimestamp (32) ten years ahead: retention would never delete the segment.
        await expectBrokerError(.malformedBatch) {
            try await s.broker.publishRecords(topic: "jobs", partition: 0, batch: Self.lie(good, at: 32, s.now + 10 * 365 * 86_400_000))
        }
        let stats = try await s.broker.partitionStats(topic: "jobs")
        #expect(stats[0].logEnd == 0, "nothing was stored")
        #expect(try await s.broker.publishRecords(topic: "jobs", partition: 0, batch: good).count == 3)
    }

    @Test func aCompressedBatchOfTooManyRecordsIsRefusedBeforeItIsExpanded() async throws {
        let s = try await Scenario.make()
        try s.broker.createTopic("jobs", settings: TopicSettings(partitions: 1))
        let count = Broker.maxRecordsPerPublish + 1
        let bomb = try Self.batch(Array(repeating: s.now, count: count), compression: .lz4)
        #expect(bomb.count < count, "LZ4 makes it small on the wire: \(bomb.count) bytes")
        await expectBrokerError(.invalidArgument) { try await s.broker.publishRecords(topic: "jobs", partition: 0, batch: bomb) }
        let list = Array(repeating: OutgoingMessage.text("x"), count: count)
        await expectBrokerError(.invalidArgument) { try await s.broker.publish(topic: "jobs", list, partition: 0) }
        let fits = try Self.batch(Array(repeating: s.now, count: Broker.maxRecordsPerPublish), compression: .lz4)
        #expect(try await s.broker.publishRecords(topic: "jobs", partition: 0, batch: fits).count == Broker.maxRecordsPerPublish)
    }

    @Test(arguments: [Int64.max, Broker.maxDelayMilliseconds + 1, -1, .min])
    func aDedupWindowThatWouldOverflowTheClockIsRefused(window: Int64) async throws {
        let s = try await Scenario.make()
        await expectBrokerError(.invalidArgument) { try s.broker.createTopic("jobs", settings: TopicSettings(dedupWindowMilliseconds: window)) }
        await expectBrokerError(.invalidArgument) { try s.broker.createTopic("jobs", settings: TopicSettings(retentionMilliseconds: window)) }
        #expect(s.broker.listTopics().isEmpty)
        #expect(!FileManager.default.fileExists(atPath: s.dir.path + "/topics/jobs"), "a refused create leaves no directory")
        // The longest window that is taken works end to end, across a restart.
        try s.broker.createTopic("jobs", settings: TopicSettings(partitions: 1, dedupWindowMilliseconds: Broker.maxDelayMilliseconds))
        var m = OutgoingMessage.text("once")
        m.dedupKey = Array("k".utf8)
        #expect(try await s.broker.publish(topic: "jobs", [m])[0].duplicate == false)
        try await s.restart()
        #expect(try await s.broker.publish(topic: "jobs", [m])[0].duplicate == true)
    }

    @Test func aDedupWindowPastTheClockWrittenEarlierDoesNotStopARestart() async throws {
        let s = try await Scenario.make()
        try s.broker.createTopic("jobs", settings: TopicSettings(partitions: 1, dedupWindowMilliseconds: 1_000))
        var m = OutgoingMessage.text("once")
        m.dedupKey = Array("k".utf8)
        var later = OutgoingMessage.text("later")
        later.dedupKey = Array("k2".utf8)
        later.due = .at(s.now + 60_000)
        _ = try await s.broker.publish(topic: "jobs", [m, later], partition: 0)
        await s.broker.close()
        // An earlier version accepted any window: meta.json may say Int64.max.
        let path = s.dir.path + "/meta.json"
        let text = try String(contentsOfFile: path, encoding: .utf8)
        #expect(text.contains("\"dedupWindowMilliseconds\" : 1000"))
        try text.replacingOccurrences(of: "\"dedupWindowMilliseconds\" : 1000", with: "\"dedupWindowMilliseconds\" : \(Int64.max)")
            .write(toFile: path, atomically: true, encoding: .utf8)
        try await s.restart()
        #expect(try await s.broker.publish(topic: "jobs", [m])[0].duplicate == true)
        var fresh = OutgoingMessage.text("fresh")
        fresh.dedupKey = Array("k3".utf8)
        #expect(try await s.broker.publish(topic: "jobs", [fresh])[0].duplicate == false)
        try await s.restart()
    }

    @Test func theTopicPartitionAndGroupLimitsAreTypedAndLeaveNothingBehind() async throws {
        let s = try await Scenario.make {
            $0.maxTopics = 3
            $0.maxPartitions = 5
            $0.maxGroups = 1
        }
        try s.broker.createTopic("a", settings: TopicSettings(partitions: 2))
        try s.broker.createTopic("b", settings: TopicSettings(partitions: 2))
        await expectBrokerError(.limitReached) { try s.broker.createTopic("c", settings: TopicSettings(partitions: 2)) }
        // Auto-create counts against the same limits (the default is 4 partitions).
        await expectBrokerError(.limitReached) { try await s.broker.publish(topic: "auto", [.text("x")]) }
        try s.broker.createTopic("c", settings: TopicSettings(partitions: 1))
        await expectBrokerError(.limitReached) { try s.broker.createTopic("d", settings: TopicSettings(partitions: 1)) }
        _ = try await s.broker.join(group: "g1", member: "m", topics: ["a"])
        await expectBrokerError(.limitReached) { try await s.broker.join(group: "g2", member: "m", topics: ["a"]) }
        #expect(s.broker.listTopics().map(\.name) == ["a", "b", "c"])
        #expect(s.broker.listGroups() == ["g1"])
        let onDisk = try FileManager.default.contentsOfDirectory(atPath: s.dir.path + "/topics").sorted()
        #expect(onDisk == ["a", "b", "c"])
        try await s.restart()
        #expect(s.broker.listGroups() == ["g1"])
        // Deleting frees room.
        try await s.broker.deleteTopic("c")
        try s.broker.createTopic("d", settings: TopicSettings(partitions: 1))
    }

    @Test func aRefusedPublishCreatesNoTopic() async throws {
        let s = try await Scenario.make()
        var corrupt = try Self.batch([s.now])
        corrupt[corrupt.count - 1] ^= 0xFF
        await expectBrokerError(.corruptBatch) { try await s.broker.publishRecords(topic: "crc", partition: 0, batch: corrupt) }
        await expectBrokerError(.badPartition) { try await s.broker.publishRecords(topic: "part", partition: 99, batch: try Self.batch([s.now])) }
        await expectBrokerError(.badPartition) { try await s.broker.publish(topic: "part2", [.text("x")], partition: 99) }
        await expectBrokerError(.messageTooLarge) {
            try await s.broker.publish(topic: "big", [.text(String(repeating: "x", count: s.options.defaultTopic.maxMessageBytes + 1))])
        }
        var reserved = OutgoingMessage.text("r")
        reserved.headers = [RecordHeader(name: "chime-x", value: [1])]
        await expectBrokerError(.invalidArgument) { try await s.broker.publish(topic: "reserved", [reserved]) }
        var far = OutgoingMessage.text("far")
        far.due = .at(.max)
        await expectBrokerError(.invalidArgument) { try await s.broker.publish(topic: "far", [far]) }
        #expect(s.broker.listTopics().isEmpty)
        #expect(try FileManager.default.contentsOfDirectory(atPath: s.dir.path + "/topics").isEmpty)
        // The same requests, valid, create their topic.
        _ = try await s.broker.publishRecords(topic: "crc", partition: 0, batch: try Self.batch([s.now]))
        #expect(s.broker.listTopics().map(\.name) == ["crc"])
    }

    /// `chime-job` is the one broker-namespace header a producer may set (any producer can
    /// enqueue a job); the rest of the namespace stays refused, on both publish paths.
    @Test func theJobHeaderIsTheOneChimeHeaderAProducerMaySet() async throws {
        let s = try await Scenario.make()
        try s.broker.createTopic("jobs", settings: TopicSettings(partitions: 1))
        var job = OutgoingMessage.text("{}")
        job.headers = [RecordHeader(name: "chime-job", value: Array("send-email".utf8))]
        _ = try await s.broker.publish(topic: "jobs", [job])
        var b = RecordBatchBuilder()
        b.append(Record(timestamp: s.now, headers: [RecordHeader(name: "chime-job", value: Array("resize".utf8))], body: Array("{}".utf8)))
        _ = try await s.broker.publishRecords(topic: "jobs", partition: 0, batch: try b.build())
        var other = RecordBatchBuilder()
        other.append(Record(timestamp: s.now, headers: [RecordHeader(name: "chime-jobs", value: [1])], body: []))
        await expectBrokerError(.invalidArgument) { try await s.broker.publishRecords(topic: "jobs", partition: 0, batch: try other.build()) }
        let m = try await s.broker.join(group: "g", member: "m", topics: ["jobs"])
        let got = try await s.consumeAll("g", m.memberID)
        #expect(got.map { $0.header("chime-job") } == ["send-email", "resize"], "the consumer sees the header as it was set")
        await s.broker.close()
    }

    @Test func groupSettingsThatWouldOverflowTheClockAreRefused() async throws {
        let s = try await Scenario.make()
        try s.broker.createTopic("jobs", settings: TopicSettings(partitions: 1))
        for bad in [
            GroupSettings(leaseMilliseconds: .max), GroupSettings(rateLimit: .infinity),
            GroupSettings(rateLimit: .nan), GroupSettings(rateLimit: 10, rateBurst: .infinity),
        ] {
            await expectBrokerError(.invalidArgument) { try await s.broker.join(group: "g", member: "m", topics: ["jobs"], settings: bad) }
        }
        #expect(s.broker.listGroups().isEmpty)
    }

    /// `max` comes from the client: Int.max must fetch what there is, not trap on the
    /// per-partition share arithmetic or reserve room for Int.max deliveries.
    @Test func fetchWithAHugeMaxDoesNotCrash() async throws {
        let s = try await Scenario.make()
        try s.broker.createTopic("jobs", settings: TopicSettings(partitions: 2))
        _ = try await s.broker.publish(topic: "jobs", [.text("a", key: "1"), .text("b", key: "2")])
        let m = try await s.broker.join(group: "g", member: "m", topics: ["jobs"])
        let got = try await s.broker.fetch(group: "g", member: m.memberID, max: Int.max)
        #expect(got.textSet == ["a", "b"])
        await s.broker.close()
    }
}
