import Foundation
import Glibc
import Testing

@testable import ChimeStore

/// Damage the scanner must not be fooled by, and limits that must hold at their edges.
@Suite struct DamageAndLimitTests {
    private let single = LogConfiguration(durability: .never)

    private func bodies(_ log: RecordLog, from offset: Int64 = 0) throws -> [String] {
        try readAll(log, from: offset).map { String(decoding: $0.record.body, as: UTF8.self) }
    }

    private func positions(_ file: String) throws -> [Int64: (start: Int64, size: Int)] {
        var out: [Int64: (Int64, Int)] = [:]
        _ = try SegmentInspector.inspect(segmentFile: file) { entry in
            if case .batch(let b) = entry { out[b.header.baseOffset] = (b.position, b.header.totalSize) }
        }
        return out
    }

    /// A record body that itself holds a valid batch (with a far-away offset) must not be
    /// taken for the log when the batch around it is damaged.
    @Test func aBatchHiddenInABodyIsNotMistakenForTheLog() async throws {
        let dir = TemporaryDirectory()
        var hidden = try smallBatch("forged")
        hidden.withUnsafeMutableBytes { LittleEndian.store(Int64(1) << 40, $0, 0) }
        let log = try RecordLog.open(directory: dir.path, configuration: LogConfiguration(), logger: testLogger)
        for i in 0..<10 {
            let body = i == 3 ? Array("outer-".utf8) + hidden + Array("-tail".utf8) : Array("record-\(i)".utf8)
            try await log.appendDurably(try buildBatch([Record(timestamp: Int64(i), body: body)]))
        }
        try log.close()
        let file = dir.file("00000000000000000000.log")
        let at = try #require(try positions(file)[3])
        try flipBit(file, at: at.start + 20)  // recordCount: the CRC fails
        try FileManager.default.removeItem(atPath: dir.file("00000000000000000000.index"))
        let size = fileSize(file)

        let reopened = try RecordLog.open(directory: dir.path, configuration: single, logger: testLogger)
        #expect(reopened.recovery.truncatedBytes == 0)
        #expect(fileSize(file) == size)
        #expect(reopened.recovery.damaged.map(\.start) == [at.start])
        #expect(reopened.endOffset == 10)
        #expect(try bodies(reopened, from: 4) == (4..<10).map { "record-\($0)" })
        // Reading through the damage names where to resume: the next real batch, not 2^40.
        let error = #expect(throws: StoreError.self) { try readAll(reopened) }
        #expect(error?.resumeOffset == 4)
        try reopened.close()
    }

    /// Two faults in a row — a failed CRC, then a flipped offset in the next batch — must
    /// not turn the valid batches after them into a "torn tail".
    @Test func consecutiveFaultsNeverCutTheValidBatchesAfterThem() throws {
        let dir = TemporaryDirectory()
        let log = try RecordLog.open(directory: dir.path, configuration: single, logger: testLogger)
        for i in 0..<10 { try log.append(try smallBatch("record-\(i)")) }
        try log.close()
        let file = dir.file("00000000000000000000.log")
        let p = try positions(file)
        try flipBit(file, at: p[3]!.start + 30)
        try flipBit(file, at: p[4]!.start + 1)  // baseOffset, outside the CRC
        try FileManager.default.removeItem(atPath: dir.file("00000000000000000000.index"))
        let size = fileSize(file)

        let reopened = try RecordLog.open(directory: dir.path, configuration: single, logger: testLogger)
        #expect(fileSize(file) == size)
        #expect(reopened.recovery.truncatedBytes == 0)
        #expect(reopened.endOffset == 10)
        #expect(try bodies(reopened, from: 5) == (5..<10).map { "record-\($0)" })
        try reopened.close()
    }

    /// A whole last batch that fails its checks is damage, not a torn write: it stays.
    @Test func aWholeBadLastBatchIsKeptNotCut() throws {
        let dir = TemporaryDirectory()
        let log = try RecordLog.open(directory: dir.path, configuration: single, logger: testLogger)
        for i in 0..<5 { try log.append(try smallBatch("record-\(i)")) }
        try log.close()
        let file = dir.file("00000000000000000000.log")
        let last = try #require(try positions(file)[4])
        try flipBit(file, at: last.start + 3)  // baseOffset of the last batch
        try FileManager.default.removeItem(atPath: dir.file("00000000000000000000.index"))
        let size = fileSize(file)

        let reopened = try RecordLog.open(directory: dir.path, configuration: single, logger: testLogger)
        #expect(reopened.recovery.truncatedBytes == 0)
        #expect(fileSize(file) == size)
        #expect(reopened.recovery.damaged.map(\.start) == [last.start])
        #expect(try bodies(reopened) == (0..<4).map { "record-\($0)" })
        // Appends go after the kept damage and stay readable across another reopen.
        #expect(try reopened.append(try smallBatch("after")).baseOffset == 4)
        try reopened.close()
        let again = try RecordLog.open(directory: dir.path, configuration: single, logger: testLogger)
        #expect(try bodies(again, from: 4) == ["after"])
        try again.close()
    }

    /// With a valid index, the batch at an index position must carry the index's offset;
    /// a flipped offset there is an error, never another batch's records.
    @Test func aReadChecksTheOffsetFoundAtTheIndexPosition() throws {
        let dir = TemporaryDirectory()
        let log = try RecordLog.open(directory: dir.path, configuration: single, logger: testLogger)
        for i in 0..<200 { try log.append(try smallBatch("record-\(i)")) }
        try log.close()
        let file = dir.file("00000000000000000000.log")
        // The index has an entry for every ~4 KiB; pick the second entry's batch.
        let loaded = try #require(SegmentIndex.decode(
            try [UInt8](Data(contentsOf: URL(fileURLWithPath: dir.file("00000000000000000000.index")))),
            baseOffset: 0, segment: try DataFile.open(file, create: false, calls: .system).status(), intervalBytes: 4096))
        let entry = loaded.index.entries[1]
        try flipBit(file, at: Int64(entry.position) + 1)
        // Silent corruption: the index still vouches for the segment (stamped again with the
        // file's new change time), so the open does not scan it and the read must notice.
        try Directory.writeAtomically(
            loaded.index.encode(nextOffset: loaded.nextOffset, maxTimestamp: loaded.maxTimestamp, covered: try DataFile.open(file, create: false, calls: .system).status()),
            to: dir.file("00000000000000000000.index"), calls: .system)
        let reopened = try RecordLog.open(directory: dir.path, configuration: single, logger: testLogger)
        let victim = Int64(entry.relativeOffset)
        let error = #expect(throws: StoreError.self) { try reopened.read(from: victim) }
        #expect(error?.code == .corruptBatch)
        #expect(error?.resumeOffset == victim + 1)
        #expect(try bodies(reopened, from: victim + 1).first == "record-\(victim + 1)")
        try reopened.close()
    }

    @Test func segmentsRollBeforeTheirOffsetsOutgrowTheIndex() throws {
        let dir = TemporaryDirectory()
        var config = single
        config.maxOffsetsPerSegment = 10
        let log = try RecordLog.open(directory: dir.path, configuration: config, logger: testLogger)
        let four = try buildBatch((0..<4).map { Record(timestamp: 0, body: [UInt8($0)]) })
        for _ in 0..<6 { try log.append(four) }
        #expect(log.segmentInfos.map(\.baseOffset) == [0, 8, 16])
        #expect(log.segmentInfos.allSatisfy { $0.nextOffset - $0.baseOffset <= 10 })
        try log.close()
        let again = try RecordLog.open(directory: dir.path, configuration: config, logger: testLogger)
        #expect(try readAll(again).count == 24)
        try again.close()
    }

    @Test func fullDiskUnderAlwaysDoesNotPoisonLaterDurableAppends() async throws {
        let dir = TemporaryDirectory()
        let faults = Faults()
        let log = try RecordLog.open(directory: dir.path, configuration: LogConfiguration(), calls: faults.calls, logger: testLogger)
        try await log.appendDurably(try smallBatch("one"))
        faults.writeError = ENOSPC
        let error = await #expect(throws: StoreError.self) { try await log.appendDurably(try smallBatch("no room")) }
        #expect(error?.code == .noSpace)
        faults.writeError = nil
        #expect(try await log.appendDurably(try smallBatch("two")).baseOffset == 1)
        #expect(log.durableOffset == 2)
        try log.close()
    }

    @Test func sealedSegmentsAreSyncedAtTheRollUnderEveryPolicy() throws {
        let dir = TemporaryDirectory()
        let faults = Faults()
        let one = try smallBatch("0123456789")
        let log = try RecordLog.open(directory: dir.path, configuration: LogConfiguration(segmentBytes: one.count, durability: .never), calls: faults.calls, logger: testLogger)
        let atOpen = faults.syncs
        try log.append(one)
        #expect(faults.syncs == atOpen)
        try log.append(one)  // rolls: the sealed segment and its index file are synced in the background
        try log.flush()      // waits for that, then syncs the active segment
        #expect(faults.syncs == atOpen + 3)
        try log.close()
    }

    /// A call appending several batches lands whole or not at all, even when it fails
    /// after a roll.
    @Test func aMultiBatchAppendIsAllOrNothing() throws {
        let dir = TemporaryDirectory()
        let faults = Faults()
        let one = try smallBatch("0123456789")
        let log = try RecordLog.open(directory: dir.path, configuration: LogConfiguration(segmentBytes: one.count * 2, durability: .always), calls: faults.calls, logger: testLogger)
        try log.append(one)
        let size = fileSize(dir.file("00000000000000000000.log"))
        // First write (one batch into segment 0) succeeds, the write into the new segment fails.
        faults.writesBeforeENOSPC = 1
        let error = #expect(throws: StoreError.self) { try log.append(contentsOf: [one, one, one]) }
        #expect(error?.code == .noSpace)
        faults.writesBeforeENOSPC = nil
        #expect(log.endOffset == 1)
        #expect(log.segmentInfos.count == 1)
        #expect(fileSize(dir.file("00000000000000000000.log")) == size)
        #expect(!FileManager.default.fileExists(atPath: dir.file("00000000000000000002.log")))
        #expect(try log.append(contentsOf: [one, one, one]) == AppendResult(baseOffset: 1, lastOffset: 3))
        #expect(try readAll(log).count == 4)
        try log.close()
    }

    @Test func tensOfThousandsOfBatchesInOneAppend() throws {
        let dir = TemporaryDirectory()
        let log = try RecordLog.open(directory: dir.path, configuration: single, logger: testLogger)
        let batches = try (0..<20_000).map { try smallBatch("b\($0)") }
        #expect(try log.append(contentsOf: batches) == AppendResult(baseOffset: 0, lastOffset: 19_999))
        #expect(try bodies(log, from: 19_998) == ["b19998", "b19999"])
        try log.close()
    }

    @Test func aBatchWhoseHeaderTimestampsLieIsRefused() throws {
        let dir = TemporaryDirectory()
        let log = try RecordLog.open(directory: dir.path, configuration: single, logger: testLogger)
        var bytes = try smallBatch("x", timestamp: 5000)
        bytes.withUnsafeMutableBytes { LittleEndian.store(Int64.min + 1, $0, 32) }
        let crc = bytes.withUnsafeBytes { CRC32C.checksum(UnsafeRawBufferPointer(rebasing: $0[16...])) }
        bytes.withUnsafeMutableBytes { LittleEndian.store(crc, $0, 12) }
        #expect((#expect(throws: StoreError.self) { try log.append(bytes) })?.code == .malformedBatch)
        #expect(RecordLog.age(now: 0, of: .min + 1) == .max, "ages saturate instead of trapping")
        #expect(RecordLog.age(now: 10, of: 20) == 0)
        try log.close()
    }

    @Test func aCraftedSegmentWithExtremeOffsetsIsReportedNotATrap() throws {
        let dir = TemporaryDirectory()
        var bytes = try buildBatch([Record(timestamp: 0, body: [1]), Record(timestamp: 0, body: [2])])
        bytes.withUnsafeMutableBytes { LittleEndian.store(Int64.max, $0, 0) }
        let file = dir.file("09223372036854775807.log")
        try Data(bytes).write(to: URL(fileURLWithPath: file))
        let summary = try SegmentInspector.inspect(segmentFile: file) { _ in }
        #expect(summary.batches == 0)
        #expect(summary.damaged.count == 1)
    }

    @Test func waitingForAnOffsetPastTheEndIsAnError() async throws {
        let dir = TemporaryDirectory()
        let log = try RecordLog.open(directory: dir.path, configuration: LogConfiguration(), logger: testLogger)
        let error = await #expect(throws: StoreError.self) { try await log.waitUntilDurable(5) }
        #expect(error?.code == .invalidArgument)
        try log.close()
    }
}
