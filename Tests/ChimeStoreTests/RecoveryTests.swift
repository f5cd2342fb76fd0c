import Foundation
import Testing

@testable import ChimeStore

@Suite struct RecoveryTests {
    private let config = LogConfiguration(segmentBytes: 4096, durability: .never)

    /// Builds a log of `count` one-record batches "record-<i>" and returns its directory.
    private func makeLog(_ dir: TemporaryDirectory, count: Int, config: LogConfiguration) throws {
        let log = try RecordLog.open(directory: dir.path, configuration: config, logger: testLogger)
        for i in 0..<count { try log.append(try smallBatch("record-\(i)", timestamp: Int64(i))) }
        try log.close()
    }

    private func bodies(_ log: RecordLog, from offset: Int64 = 0) throws -> [String] {
        try readAll(log, from: offset).map { String(decoding: $0.record.body, as: UTF8.self) }
    }

    /// Cuts the active segment at every byte inside its last batch, as a crash mid-write
    /// would, then reopens: the earlier batches are intact, the torn one is gone, and the
    /// next append takes the torn batch's offset.
    @Test func tornTailAtEveryBytePosition() throws {
        let lastBody = "the-last-batch-with-a-key-and-a-header"
        let last = try buildBatch([Record(timestamp: 9, key: Array("k".utf8), headers: [RecordHeader(name: "h", value: [1])], body: Array(lastBody.utf8))])
        let template = TemporaryDirectory()
        let single = LogConfiguration(durability: .never)  // one segment: the cut is always in the active one
        try makeLog(template, count: 5, config: single)
        do {
            let log = try RecordLog.open(directory: template.path, configuration: single, logger: testLogger)
            try log.append(last)
            try log.close()
        }
        let segment = template.file("00000000000000000000.log")
        let full = try Data(contentsOf: URL(fileURLWithPath: segment))
        let lastStart = full.count - last.count

        for cut in lastStart..<full.count {
            let dir = TemporaryDirectory()
            try full.prefix(cut).write(to: URL(fileURLWithPath: dir.file("00000000000000000000.log")))
            let log = try RecordLog.open(directory: dir.path, configuration: single, logger: testLogger)
            #expect(log.recovery.truncatedBytes == Int64(cut - lastStart), "cut at \(cut)")
            #expect(log.recovery.damaged.isEmpty)
            #expect(fileSize(dir.file("00000000000000000000.log")) == Int64(lastStart))
            #expect(log.endOffset == 5)
            #expect(try bodies(log) == (0..<5).map { "record-\($0)" })
            let appended = try log.append(try smallBatch("after"))
            #expect(appended.baseOffset == 5)
            #expect(try bodies(log).last == "after")
            try log.close()
        }
        // And the uncut file opens with nothing cut.
        let whole = try RecordLog.open(directory: template.path, configuration: single, logger: testLogger)
        #expect(whole.recovery.truncatedBytes == 0)
        #expect(try bodies(whole).last == lastBody)
        try whole.close()
    }

    /// Finds the byte position of the batch holding `offset` in a segment file.
    private func position(of offset: Int64, in file: String) throws -> (start: Int64, size: Int) {
        var found: (Int64, Int)? = nil
        _ = try SegmentInspector.inspect(segmentFile: file) { entry in
            if case .batch(let b) = entry, b.header.baseOffset == offset { found = (b.position, b.header.totalSize) }
        }
        return try #require(found)
    }

    @Test func bitFlipInASealedSegmentIsReportedAndTheRestStaysReadable() throws {
        let dir = TemporaryDirectory()
        try makeLog(dir, count: 300, config: config)
        let sealed = dir.file("00000000000000000000.log")
        var log = try RecordLog.open(directory: dir.path, configuration: config, logger: testLogger)
        let segmentEnd = try #require(log.segmentInfos.first).nextOffset
        try log.close()
        #expect(segmentEnd > 20)
        let victim: Int64 = 10
        let at = try position(of: victim, in: sealed)
        try flipBit(sealed, at: at.start + Int64(at.size) - 3)

        // The index is valid, so the open does not scan; the read finds the damage.
        log = try RecordLog.open(directory: dir.path, configuration: config, logger: testLogger)
        let error = #expect(throws: StoreError.self) { try log.read(from: victim) }
        #expect(error?.code == .corruptBatch)
        #expect(error?.file == sealed)
        #expect(error?.position == at.start)
        #expect(error?.resumeOffset == victim + 1)
        // Batches before and after it read fine, including a read that starts before it.
        #expect(try bodies(log, from: victim + 1).count == 300 - Int(victim) - 1)
        #expect(try log.read(from: 0, maxBytes: 1 << 20).last?.lastOffset == victim - 1, "a read stops before the damage")
        try log.close()

        // Without the index the open scans, and reports the damage in its recovery.
        try FileManager.default.removeItem(atPath: dir.file("00000000000000000000.index"))
        log = try RecordLog.open(directory: dir.path, configuration: config, logger: testLogger)
        #expect(log.recovery.damaged.count == 1)
        #expect(log.recovery.damaged.first?.start == at.start)
        #expect(log.recovery.damaged.first?.end == at.start + Int64(at.size))
        #expect(log.endOffset == 300)
        #expect(try bodies(log, from: victim + 1).first == "record-\(victim + 1)")
        try log.close()
    }

    @Test func damageInTheMiddleOfTheActiveSegmentIsIsolatedNotCut() throws {
        let dir = TemporaryDirectory()
        let single = LogConfiguration(durability: .never)
        try makeLog(dir, count: 50, config: single)
        let file = dir.file("00000000000000000000.log")
        try FileManager.default.removeItem(atPath: dir.file("00000000000000000000.index"))  // as after a crash
        let at = try position(of: 20, in: file)
        // Damage the length field: the scan must resynchronise to find batch 21.
        try flipBit(file, at: at.start + 9, bit: 3)
        let sizeBefore = fileSize(file)
        let log = try RecordLog.open(directory: dir.path, configuration: single, logger: testLogger)
        #expect(log.recovery.truncatedBytes == 0)
        #expect(fileSize(file) == sizeBefore, "valid batches after the damage must not be cut")
        #expect(log.recovery.damaged.map(\.start) == [at.start])
        #expect(log.endOffset == 50)
        #expect(try bodies(log, from: 21) == (21..<50).map { "record-\($0)" })
        #expect(try log.append(try smallBatch("next")).baseOffset == 50)
        try log.close()
    }

    @Test func damagedOffsetFieldIsCaughtByContinuity() throws {
        let dir = TemporaryDirectory()
        let single = LogConfiguration(durability: .never)
        try makeLog(dir, count: 10, config: single)
        let file = dir.file("00000000000000000000.log")
        try FileManager.default.removeItem(atPath: dir.file("00000000000000000000.index"))
        let at = try position(of: 4, in: file)
        try flipBit(file, at: at.start + 2)  // baseOffset is outside the CRC
        let log = try RecordLog.open(directory: dir.path, configuration: single, logger: testLogger)
        #expect(log.recovery.damaged.map(\.start) == [at.start])
        #expect(try bodies(log, from: 5).first == "record-5")
        try log.close()
    }

    @Test(arguments: ["missing", "garbage", "stale", "truncated", "empty"])
    func missingOrBadIndexesAreRebuiltWithTheSameAnswers(kind: String) throws {
        let dir = TemporaryDirectory()
        try makeLog(dir, count: 400, config: config)
        var log = try RecordLog.open(directory: dir.path, configuration: config, logger: testLogger)
        let segments = log.segmentInfos
        #expect(segments.count >= 3)
        func answers(_ log: RecordLog) throws -> [[Int64]] {
            try (0..<400).map { try log.read(from: Int64($0), maxBytes: 1).map(\.baseOffset) }
        }
        let before = try answers(log)
        try log.close()

        var rng = SeededRandom(seed: 9)
        for info in segments {
            let index = String(info.path.dropLast(4)) + ".index"
            switch kind {
            case "missing": try FileManager.default.removeItem(atPath: index)
            case "garbage": try Data(rng.bytes(200)).write(to: URL(fileURLWithPath: index))
            case "stale":
                // An index for fewer bytes than the segment holds (as if written before a crash).
                var bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: index)))
                bytes.withUnsafeMutableBytes { LittleEndian.store(UInt64(info.bytes - 1), $0, 40) }
                let crc = bytes.withUnsafeBytes { CRC32C.checksum(UnsafeRawBufferPointer(rebasing: $0[8...])) }
                bytes.withUnsafeMutableBytes { LittleEndian.store(crc, $0, 4) }
                try Data(bytes).write(to: URL(fileURLWithPath: index))
            case "truncated": truncateFile(index, to: 30)
            default: try Data().write(to: URL(fileURLWithPath: index))
            }
        }
        log = try RecordLog.open(directory: dir.path, configuration: config, logger: testLogger)
        #expect(log.recovery.segments.allSatisfy { $0.scanned })
        #expect(try answers(log) == before)
        try log.close()
        // The rebuilt indexes were written back: the next open trusts them.
        log = try RecordLog.open(directory: dir.path, configuration: config, logger: testLogger)
        #expect(log.recovery.segments.allSatisfy { !$0.scanned })
        #expect(try answers(log) == before)
        try log.close()
    }

    @Test func leftoverTempFilesFromAnInterruptedIndexWriteAreRemoved() throws {
        let dir = TemporaryDirectory()
        try makeLog(dir, count: 3, config: config)
        try Data([1, 2, 3]).write(to: URL(fileURLWithPath: dir.file("00000000000000000000.index.tmp")))
        let log = try RecordLog.open(directory: dir.path, configuration: config, logger: testLogger)
        #expect(!FileManager.default.fileExists(atPath: dir.file("00000000000000000000.index.tmp")))
        #expect(log.endOffset == 3)
        try log.close()
    }
}
