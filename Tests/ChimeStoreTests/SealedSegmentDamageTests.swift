import ChimeTestSupport
import Foundation
import Testing

@testable import ChimeStore

/// Damage in a sealed segment is reported when the log opens (README), yet a segment its
/// index vouches for is not read again on every start: the index remembers the segment
/// file's size and change time, and a segment changed since is scanned.
@Suite struct SealedSegmentDamageTests {
    /// A log of several sealed segments and an active one, closed cleanly.
    private func sealedLog(_ dir: TemporaryDirectory) throws -> LogConfiguration {
        let one = try smallBatch("record-0000")
        let configuration = LogConfiguration(segmentBytes: one.count * 10, durability: .never)
        let log = try RecordLog.open(directory: dir.path, configuration: configuration, logger: testLogger)
        for i in 0..<45 { try log.append(try smallBatch(String(format: "record-%04d", i))) }
        try log.close()
        return configuration
    }

    @Test func aCleanReopenScansNoSegment() throws {
        let dir = TemporaryDirectory()
        let configuration = try sealedLog(dir)
        let log = try RecordLog.open(directory: dir.path, configuration: configuration, logger: testLogger)
        #expect(log.recovery.segments.count == 5)
        #expect(log.recovery.segments.allSatisfy { !$0.scanned }, "every index vouches for its segment")
        try log.close()
    }

    @Test func damageWrittenIntoASealedSegmentIsReportedWhenTheLogOpens() throws {
        let dir = TemporaryDirectory()
        let configuration = try sealedLog(dir)
        let victim = dir.file("00000000000000000010.log")
        try flipBit(victim, at: 100)  // in the segment's second batch (offset 11): its CRC fails

        let log = try RecordLog.open(directory: dir.path, configuration: configuration, logger: testLogger)
        let scanned = log.recovery.segments.filter(\.scanned).map(\.baseOffset)
        #expect(scanned == [10], "only the segment changed since its index was written is read")
        #expect(log.recovery.damaged.count == 1)
        #expect(log.recovery.damaged.first?.file == victim)
        // The valid batches after the damage stay readable, and the rebuilt index vouches
        // for the segment as it is now: the next open reports the damage it knows without
        // scanning.
        #expect(try readAll(log, from: 12).first?.offset == 12)
        try log.close()
        let again = try RecordLog.open(directory: dir.path, configuration: configuration, logger: testLogger)
        #expect(again.recovery.segments.allSatisfy { !$0.scanned })
        try again.close()
    }

    @Test func anIndexOfTheFormerVersionIsRebuiltOnce() throws {
        let dir = TemporaryDirectory()
        let configuration = try sealedLog(dir)
        // Version 1 had no change time: the first open of this version scans its segment.
        var index = try [UInt8](Data(contentsOf: URL(fileURLWithPath: dir.file("00000000000000000000.index"))))
        index[8] = 1
        try Data(index).write(to: URL(fileURLWithPath: dir.file("00000000000000000000.index")))
        let log = try RecordLog.open(directory: dir.path, configuration: configuration, logger: testLogger)
        #expect(log.recovery.segments.filter(\.scanned).map(\.baseOffset) == [0])
        try log.close()
        let again = try RecordLog.open(directory: dir.path, configuration: configuration, logger: testLogger)
        #expect(again.recovery.segments.allSatisfy { !$0.scanned })
        try again.close()
    }
}
