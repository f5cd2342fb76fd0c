import Foundation
import Testing

@testable import ChimeStore

@Suite struct SegmentLogTests {
    /// Appends seeded random batches (bodies 0 B – 1 MiB, log-uniform; LZ4 on some) into
    /// small segments, then checks every record comes back identical by offset.
    @Test(arguments: [UInt64(1), 2, 3])
    func randomBatchesRoundTripAcrossManySegments(seed: UInt64) throws {
        let dir = TemporaryDirectory()
        var rng = SeededRandom(seed: seed)
        let config = LogConfiguration(segmentBytes: 2 << 20, durability: .never)
        var expected: [Record] = []
        var log = try RecordLog.open(directory: dir.path, configuration: config, logger: testLogger)
        for _ in 0..<40 {
            let count = Int(rng.next() % 12) + 1
            let records = randomRecords(&rng, count: count, bodySize: { rng in
                let exponent = Double(rng.next() % 2001) / 100  // 0 ... 20 → up to 1 MiB
                return min(1 << 20, Int(pow(2.0, exponent)) - 1)
            }, compressible: rng.next() % 2 == 0)
            let compression: Compression = rng.next() % 2 == 0 ? .lz4 : .none
            let result = try log.append(buildBatch(records, compression: compression))
            #expect(result.baseOffset == Int64(expected.count))
            expected += records
        }
        #expect(log.segmentInfos.count > 3, "the test must span several segments")

        func check(_ log: RecordLog) throws {
            #expect(try readAll(log).map(\.record) == expected)
            #expect(try readAll(log).map(\.offset) == Array(0..<Int64(expected.count)))
            for offset in stride(from: 0, to: expected.count, by: 7) {
                let batches = try log.read(from: Int64(offset), maxBytes: 1)
                let batch = try #require(batches.first)
                #expect(batch.baseOffset <= Int64(offset) && batch.lastOffset >= Int64(offset))
                let record = try #require(try batch.records().first { $0.offset == Int64(offset) })
                #expect(record.record == expected[offset])
            }
        }
        try check(log)
        try log.close()
        log = try RecordLog.open(directory: dir.path, configuration: config, logger: testLogger)
        #expect(log.recovery.segments.allSatisfy { !$0.scanned }, "a clean close leaves valid indexes: no scan")
        try check(log)
        try log.close()

        for name in try FileManager.default.contentsOfDirectory(atPath: dir.path) where name.hasSuffix(".index") {
            try FileManager.default.removeItem(atPath: dir.file(name))
        }
        log = try RecordLog.open(directory: dir.path, configuration: config, logger: testLogger)
        #expect(log.recovery.segments.allSatisfy { $0.scanned })
        try check(log)
        try log.close()
    }

    @Test func offsetsContinueAfterReopenAndMultiBatchAppends() throws {
        let dir = TemporaryDirectory()
        let config = LogConfiguration(segmentBytes: 300, durability: .never)
        var log = try RecordLog.open(directory: dir.path, configuration: config, logger: testLogger)
        let r1 = try log.append(contentsOf: [try smallBatch("a"), try smallBatch("b"), try smallBatch("c")])
        #expect(r1 == AppendResult(baseOffset: 0, lastOffset: 2))
        try log.close()
        log = try RecordLog.open(directory: dir.path, configuration: config, logger: testLogger)
        #expect(log.endOffset == 3)
        let r2 = try log.append(try buildBatch([Record(timestamp: 1, body: [1]), Record(timestamp: 2, body: [2])]))
        #expect(r2 == AppendResult(baseOffset: 3, lastOffset: 4))
        #expect(try readAll(log).map(\.offset) == [0, 1, 2, 3, 4])
        #expect(try readAll(log).prefix(3).map { String(decoding: $0.record.body, as: UTF8.self) } == ["a", "b", "c"])
        try log.close()
    }

    @Test func readAtTheEndIsEmptyAndBeforeTheStartIsATypedError() throws {
        let dir = TemporaryDirectory()
        let log = try RecordLog.open(directory: dir.path, configuration: LogConfiguration(durability: .never), logger: testLogger)
        #expect(try log.read(from: 0).isEmpty)
        try log.append(try smallBatch("x"))
        #expect(try log.read(from: 1).isEmpty)
        #expect(try log.read(from: 99).isEmpty)
        let error = #expect(throws: StoreError.self) { try log.read(from: -1) }
        #expect(error?.code == .offsetOutOfRange)
        try log.close()
    }

    @Test func maxBytesLimitsTheReadButAlwaysGivesOneBatch() throws {
        let dir = TemporaryDirectory()
        let log = try RecordLog.open(directory: dir.path, configuration: LogConfiguration(durability: .never), logger: testLogger)
        for i in 0..<10 { try log.append(try buildBatch([Record(timestamp: 0, body: [UInt8](repeating: UInt8(i), count: 1000))])) }
        #expect(try log.read(from: 0, maxBytes: 1).count == 1)
        #expect(try log.read(from: 0, maxBytes: 2500).count == 3)
        #expect(try log.read(from: 4, maxBytes: 1 << 20).map(\.baseOffset) == [4, 5, 6, 7, 8, 9])
        try log.close()
    }

    @Test func malformedAppendsAreRefusedAndTheLogGoesOn() throws {
        let dir = TemporaryDirectory()
        let log = try RecordLog.open(directory: dir.path, configuration: LogConfiguration(durability: .never, limits: BatchLimits(maxBatchBytes: 4096)), logger: testLogger)
        var bad = try smallBatch("hello")
        bad[bad.count - 1] ^= 1
        #expect((#expect(throws: StoreError.self) { try log.append(bad) })?.code == .corruptBatch)
        #expect((#expect(throws: StoreError.self) { try log.append([1, 2, 3]) })?.code == .malformedBatch)
        let big = try buildBatch([Record(timestamp: 0, body: [UInt8](repeating: 1, count: 5000))])
        #expect((#expect(throws: StoreError.self) { try log.append(big) })?.code == .batchTooLarge)
        // One bad batch in a group refuses the whole group: nothing half-appended.
        #expect(throws: StoreError.self) { try log.append(contentsOf: [try smallBatch("ok"), bad]) }
        #expect(log.endOffset == 0)
        try log.append(try smallBatch("fine"))
        #expect(try readAll(log).map { String(decoding: $0.record.body, as: UTF8.self) } == ["fine"])
        try log.close()
    }

    @Test func appendAfterCloseIsATypedError() throws {
        let dir = TemporaryDirectory()
        let log = try RecordLog.open(directory: dir.path, logger: testLogger)
        try log.close()
        #expect((#expect(throws: StoreError.self) { try log.append(try smallBatch("late")) })?.code == .closed)
    }

    @Test func segmentsRollAtTheSizeLimitAndAreNamedByBaseOffset() throws {
        let dir = TemporaryDirectory()
        let one = try smallBatch("0123456789")
        let log = try RecordLog.open(directory: dir.path, configuration: LogConfiguration(segmentBytes: one.count * 3, durability: .never), logger: testLogger)
        for _ in 0..<7 { try log.append(one) }
        #expect(log.segmentInfos.map(\.baseOffset) == [0, 3, 6])
        #expect(log.segmentInfos.map(\.bytes) == [Int64(one.count * 3), Int64(one.count * 3), Int64(one.count)])
        let names = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasSuffix(".log") }.sorted()
        #expect(names == ["00000000000000000000.log", "00000000000000000003.log", "00000000000000000006.log"])
        // Sealed segments get their index at the roll (in the background under `.never`:
        // a flush waits for it).
        try log.flush()
        #expect(FileManager.default.fileExists(atPath: dir.file("00000000000000000003.index")))
        try log.close()
    }

    @Test func retentionBySizeDeletesOldestSealedSegmentsOnly() throws {
        let dir = TemporaryDirectory()
        let one = try smallBatch("0123456789")
        let size = Int64(one.count)
        let config = LogConfiguration(segmentBytes: one.count * 2, durability: .never, retention: RetentionPolicy(maxBytes: size * 3))
        let log = try RecordLog.open(directory: dir.path, configuration: config, logger: testLogger)
        for _ in 0..<9 { try log.append(one) }  // segments [0,1] [2,3] [4,5] [6,7] [8]
        #expect(try log.enforceRetention(nowMilliseconds: 0) == [0, 2, 4])
        #expect(log.startOffset == 6)
        #expect(log.totalBytes == size * 3)
        #expect(!FileManager.default.fileExists(atPath: dir.file("00000000000000000000.log")))
        #expect(!FileManager.default.fileExists(atPath: dir.file("00000000000000000000.index")))
        #expect((#expect(throws: StoreError.self) { try log.read(from: 5) })?.resumeOffset == 6)
        #expect(try readAll(log, from: 6).map(\.offset) == [6, 7, 8])

        // Even a limit of zero keeps the active segment.
        let tiny = try RecordLog.open(directory: TemporaryDirectory().path, configuration: LogConfiguration(segmentBytes: one.count, durability: .never, retention: RetentionPolicy(maxBytes: 0)), logger: testLogger)
        for _ in 0..<3 { try tiny.append(one) }
        try tiny.enforceRetention(nowMilliseconds: 0)
        #expect(tiny.segmentInfos.map(\.baseOffset) == [2])
        try tiny.close()
        try log.close()
    }

    @Test func retentionByAgeUsesTheNewestRecordOfEachSegment() throws {
        let dir = TemporaryDirectory()
        let config = LogConfiguration(segmentBytes: 200, durability: .never, retention: RetentionPolicy(maxAgeMilliseconds: 1000))
        let log = try RecordLog.open(directory: dir.path, configuration: config, logger: testLogger)
        // Timestamps 1000, 2000, 3000, 4000; each batch fills a segment.
        for t in 1...4 { try log.append(try buildBatch([Record(timestamp: Int64(t) * 1000, body: [UInt8](repeating: 0, count: 120))])) }
        #expect(log.segmentInfos.count == 4)
        #expect(try log.enforceRetention(nowMilliseconds: 2500) == [0])  // 1000 is 1500 ms old
        #expect(try log.enforceRetention(nowMilliseconds: 2500) == [])
        #expect(try log.enforceRetention(nowMilliseconds: 100_000) == [1, 2], "never the active segment")
        #expect(log.startOffset == 3)
        try log.close()
        // Reopen finds the same log start.
        let again = try RecordLog.open(directory: dir.path, configuration: config, logger: testLogger)
        #expect(again.startOffset == 3)
        #expect(again.endOffset == 4)
        try again.close()
    }

    @Test func dataDirectoryIsHeldByOneProcessAtATime() throws {
        let dir = TemporaryDirectory()
        let logDir = dir.path + "/orders/0/ready"
        let log = try RecordLog.open(directory: logDir, logger: testLogger)
        try log.append(try smallBatch("x"))
        try log.close()
        let store = try DataDirectory.open(dir.path, configuration: LogConfiguration(), logger: .init(label: "test"))
        #expect(store.logs.map(\.directory) == [logDir])
        #expect(store.logs.first?.endOffset == 1)
        let error = #expect(throws: StoreError.self) { try DataDirectory.open(dir.path, configuration: LogConfiguration(), logger: .init(label: "test")) }
        #expect(error?.code == .locked)
        try store.close()
        let again = try DataDirectory.open(dir.path, configuration: LogConfiguration(), logger: .init(label: "test"))
        try again.close()
    }

    @Test func concurrentDurableAppendersGetDisjointOffsetsAndAllLand() async throws {
        let dir = TemporaryDirectory()
        let log = try RecordLog.open(directory: dir.path, configuration: LogConfiguration(segmentBytes: 64 << 10), logger: testLogger)
        let results = try await withThrowingTaskGroup(of: [AppendResult].self) { group in
            for task in 0..<4 {
                group.addTask {
                    var mine: [AppendResult] = []
                    for i in 0..<50 {
                        mine.append(try await log.appendDurably(try buildBatch([Record(timestamp: 0, key: [UInt8(task)], body: Array("\(task)-\(i)".utf8))])))
                    }
                    return mine
                }
            }
            return try await group.reduce(into: []) { $0 += $1 }
        }
        #expect(Set(results.map(\.baseOffset)) == Set(0..<200))
        #expect(log.durableOffset == 200)
        let bodies = try readAll(log).map { String(decoding: $0.record.body, as: UTF8.self) }
        #expect(Set(bodies) == Set((0..<4).flatMap { t in (0..<50).map { "\(t)-\($0)" } }))
        try log.close()
    }
}
