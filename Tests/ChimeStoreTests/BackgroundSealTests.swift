import Foundation
import Glibc
import ChimeTestSupport
import Testing

@testable import ChimeStore

/// Under `.never` and `.interval` a roll seals the old segment in the background.
@Suite struct BackgroundSealTests {
    func batch(_ n: Int, _ len: Int) throws -> [UInt8] {
        try buildBatch((0..<n).map { _ in Record(timestamp: 1_000, key: nil, body: [UInt8](repeating: 7, count: len)) })
    }

    /// An append that rolls and then fails (ENOSPC) is rolled back, which unseals the old
    /// segment; the background seal, finishing later, must not write an index for it (it
    /// would vouch for bytes that were cut, and a reopen after a crash would trust it).
    @Test func rolledBackSealRecreatesAStaleIndex() throws {
        let dir = TemporaryDirectory()
        let faults = Faults()
        let config = LogConfiguration(segmentBytes: 400, durability: .never)
        let log = try RecordLog.open(directory: dir.path, configuration: config, calls: faults.calls, logger: testLogger)
        try log.append(try batch(1, 10))                    // a: offset 0
        let b = try batch(1, 200)                           // b: one record
        // d1 + d2: two records, same total bytes as b
        var pair: ([UInt8], [UInt8])? = nil
        for l1 in 0..<200 { for l2 in 0..<200 where pair == nil {
            let d1 = try batch(1, l1), d2 = try batch(1, l2)
            if d1.count + d2.count == b.count { pair = (d1, d2) }
        } }
        let (d1, d2) = try #require(pair)
        faults.gated = true
        faults.writesBeforeENOSPC = 1                       // b lands, c (new segment) fails
        #expect(throws: StoreError.self) { try log.append(contentsOf: [b, try batch(1, 300)]) }
        faults.writesBeforeENOSPC = nil
        faults.entered.wait()                               // the background seal is in its sync
        faults.gated = false
        faults.gate.signal()
        try log.flush()                                     // waits for the seal
        let index = dir.file("00000000000000000000.index")
        #expect(!FileManager.default.fileExists(atPath: index), "the rolled-back segment is active again: no index for it")
        try log.append(contentsOf: [d1, d2])                // offsets 1, 2
        #expect(log.endOffset == 3)
        // Crash (no close), reopen.
        let again = try RecordLog.open(directory: dir.path, configuration: config, logger: testLogger)
        #expect(again.endOffset == 3)
        let r = try again.append(try smallBatch("e"))
        #expect(r.baseOffset == 3)
        #expect(try readAll(again).map(\.offset) == [0, 1, 2, 3])
    }
}
