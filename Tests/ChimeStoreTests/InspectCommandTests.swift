import Foundation
import Testing

@testable import ChimeStore

/// `chime inspect` as a user runs it: the real executable on real files.
@Suite struct InspectCommandTests {
    private func makeLog(_ dir: TemporaryDirectory) throws {
        let log = try RecordLog.open(directory: dir.path, configuration: LogConfiguration(segmentBytes: 2048, durability: .never), logger: testLogger)
        for i in 0..<40 {
            try log.append(try buildBatch([Record(timestamp: Int64(i), key: Array("key-\(i)".utf8), body: Array("body-\(i)".utf8))], compression: i % 2 == 0 ? .lz4 : .none))
        }
        try log.close()
    }

    private func jsonLines(_ text: String) throws -> [[String: Any]] {
        try text.split(separator: "\n").map { try #require(JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]) }
    }

    @Test func jsonListsEveryBatchAndVerifyPassesOnAHealthyLog() throws {
        let dir = TemporaryDirectory()
        try makeLog(dir)
        let chime = builtProduct("chime")
        let (status, output) = try run(chime, ["inspect", "--json", dir.path])
        #expect(status == 0)
        let lines = try jsonLines(output)
        let batches = lines.filter { $0["type"] as? String == "batch" }
        #expect(batches.count == 40)
        #expect(batches.map { $0["baseOffset"] as? Int } == (0..<40).map { $0 })
        #expect(batches.allSatisfy { $0["crc"] as? String == "ok" })
        let summary = try #require(lines.last)
        #expect(summary["type"] as? String == "summary")
        #expect(summary["records"] as? Int == 40)
        #expect(summary["damaged"] as? Int == 0)

        #expect(try run(chime, ["inspect", "--verify", dir.path]).status == 0)
        let records = try run(chime, ["inspect", "--records", dir.file("00000000000000000000.log")])
        #expect(records.output.contains("key=key-0"))
        #expect(records.output.contains("body=body-1"))
    }

    @Test func verifyFailsOnDamageAndNamesTheFileAndPosition() throws {
        let dir = TemporaryDirectory()
        try makeLog(dir)
        let chime = builtProduct("chime")
        let first = dir.file("00000000000000000000.log")
        let batches = try jsonLines(try run(chime, ["inspect", "--json", first]).output).filter { $0["type"] as? String == "batch" }
        let victim = try #require(batches.dropFirst(2).first)
        let position = try #require(victim["position"] as? Int)
        try flipBit(first, at: Int64(position + 30))

        let (status, output) = try run(chime, ["inspect", "--verify", dir.path])
        #expect(status == 1)
        #expect(output.contains("DAMAGED \(first) bytes \(position)..<"))
        #expect(output.contains("verify: FAILED"))

        let lines = try jsonLines(try run(chime, ["inspect", "--json", dir.path]).output)
        let damage = lines.filter { $0["type"] as? String == "damage" }
        #expect(damage.count == 1)
        #expect(damage.first?["position"] as? Int == position)
        #expect(damage.first?["crc"] as? String == "bad")
        // Every other batch is still listed.
        #expect(lines.filter { $0["type"] as? String == "batch" }.count == 39)
    }

    @Test func verifyReportsABatchWhoseRecordsContradictItsHeader() throws {
        let dir = TemporaryDirectory()
        // A ready log takes batches as they come (an earlier version stored client batches
        // unchecked): one whose header says 1 record over 3, and one whose maxTimestamp lies.
        let log = try RecordLog.open(
            directory: dir.path, configuration: LogConfiguration(segmentBytes: 1 << 20, durability: .never, validateRecordsOnAppend: false),
            logger: testLogger)
        let three = try buildBatch((0..<3).map { Record(timestamp: 1_000 + Int64($0), key: nil, body: Array("b\($0)".utf8)) }, compression: .none)
        try log.append(three)
        try log.append(Self.lie(three, at: 20, UInt32(1)))
        try log.append(Self.lie(three, at: 32, Int64(1_000 + 10 * 365 * 86_400_000)))
        try log.close()
        let chime = builtProduct("chime")
        let (status, output) = try run(chime, ["inspect", "--verify", dir.path])
        #expect(status == 1)
        #expect(output.components(separatedBy: "INVALID batch").count - 1 == 2, "\(output)")
        #expect(output.contains("more records than its recordCount"))
        #expect(output.contains("maxTimestamp"))
        #expect(output.contains("verify: FAILED, 0 damaged range(s), 2 batch(es)"))
        let lines = try jsonLines(try run(chime, ["inspect", "--verify", "--json", dir.path]).output)
        #expect(lines.filter { $0["type"] as? String == "invalid" }.map { $0["position"] as? Int } == [three.count, 2 * three.count])
    }

    /// Overwrites a header field and makes the CRC right again.
    static func lie(_ bytes: [UInt8], at field: Int, _ value: some FixedWidthInteger) -> [UInt8] {
        var out = bytes
        withUnsafeBytes(of: value.littleEndian) { v in for (i, b) in v.enumerated() { out[field + i] = b } }
        let crc = CRC32C.checksum(out[RecordBatchHeader.crcStart...])
        withUnsafeBytes(of: crc.littleEndian) { v in for (i, b) in v.enumerated() { out[12 + i] = b } }
        return out
    }

    @Test func aPathThatIsNoLogIsAClearError() throws {
        let dir = TemporaryDirectory()
        let (status, _) = try run(builtProduct("chime"), ["inspect", dir.path])
        #expect(status != 0)
        let (status2, _) = try run(builtProduct("chime"), ["inspect", dir.file("nope.txt")])
        #expect(status2 != 0)
    }
}
