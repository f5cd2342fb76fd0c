import Testing

@testable import ChimeStore

/// A client's batch is taken as it came only when every rule holds; the first broken rule
/// is named, with the client's value and the limit.
@Suite struct ClientBatchRulesTests {
    static let now: Int64 = 1_764_000_000_000
    static let rules = ClientBatchRules(maxRecords: 3, maxTimestampSkewMilliseconds: 60_000, maxMessageBytes: 100, reservedHeaderPrefix: "chime-")

    func check(_ records: [Record]) throws(ClientBatchViolation) -> Int {
        let bytes = try! buildBatch(records)
        return try Self.rules.check(bytes, receivedAt: Self.now).records.count
    }

    @Test func aBatchWithinEveryRuleIsTakenWithItsRecords() throws {
        let records = [
            Record(timestamp: Self.now - 60_000, key: Array("k".utf8), headers: [RecordHeader(name: "trace", value: [1])], body: Array(repeating: 1, count: 90)),
            Record(timestamp: Self.now + 60_000, body: []),
        ]
        let checked = try Self.rules.check(try buildBatch(records), receivedAt: Self.now)
        #expect(checked.records.map(\.record) == records)
        #expect(checked.batch.recordCount == 2)
    }

    @Test func moreRecordsThanTheLimitAreRefusedBeforeTheyAreDecoded() {
        let records = (0..<4).map { Record(timestamp: Self.now, body: [UInt8($0)]) }
        #expect(throws: ClientBatchViolation.tooManyRecords(4, limit: 3)) { try check(records) }
    }

    @Test func aTimestampPastTheSkewEitherWayIsRefused() {
        #expect(throws: ClientBatchViolation.timestampSkew(Self.now + 60_001, receivedAt: Self.now, limit: 60_000)) {
            try check([Record(timestamp: Self.now + 60_001, body: [])])
        }
        #expect(throws: ClientBatchViolation.timestampSkew(Int64.min, receivedAt: Self.now, limit: 60_000)) {
            try check([Record(timestamp: Int64.min, body: [])])
        }
    }

    @Test func aMessageCountsKeyBodyAndHeadersAgainstTheSizeLimit() {
        let record = Record(timestamp: Self.now, key: Array(repeating: 0, count: 40), headers: [RecordHeader(name: "abcd", value: Array(repeating: 0, count: 20))], body: Array(repeating: 0, count: 40))
        #expect(throws: ClientBatchViolation.messageTooLarge(104, limit: 100)) { try check([record]) }
    }

    @Test func aHeaderInTheBrokersNamespaceIsRefused() {
        let record = Record(timestamp: Self.now, headers: [RecordHeader(name: "ok", value: []), RecordHeader(name: "chime-id", value: [])], body: [])
        #expect(throws: ClientBatchViolation.reservedHeader("chime-id", prefix: "chime-")) { try check([record]) }
        #expect(throws: Never.self) { try check([Record(timestamp: Self.now, headers: [RecordHeader(name: "chime", value: [])], body: [])]) }
    }

    @Test func damagedBytesAreCorruptAndNonsenseIsMalformed() throws {
        var bytes = try buildBatch([Record(timestamp: Self.now, body: Array("hello".utf8))])
        bytes[bytes.count - 1] ^= 0xFF
        #expect {
            _ = try Self.rules.check(bytes, receivedAt: Self.now)
        } throws: { error in
            if case .corrupt = error as? ClientBatchViolation { return true }
            return false
        }
        #expect {
            _ = try Self.rules.check([1, 2, 3], receivedAt: Self.now)
        } throws: { error in
            if case .malformed = error as? ClientBatchViolation { return true }
            return false
        }
    }
}
