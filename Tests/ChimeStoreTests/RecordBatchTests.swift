import Testing

@testable import ChimeStore

@Suite struct RecordBatchTests {
    @Test(arguments: Compression.allCases)
    func roundTripKeepsEveryField(compression: Compression) throws {
        let records = [
            Record(timestamp: 1_700_000_000_123, key: Array("k1".utf8), headers: [RecordHeader(name: "a", value: [1, 2])], body: Array("hello".utf8)),
            Record(timestamp: 1_700_000_000_100, key: nil, headers: [], body: []),
            Record(timestamp: 1_700_000_000_999, key: [], headers: [RecordHeader(name: "", value: []), RecordHeader(name: "ü", value: [0])], body: [UInt8](repeating: 7, count: 5000)),
        ]
        let bytes = try buildBatch(records, compression: compression)
        let batch = try RecordBatch(validating: bytes)
        #expect(batch.recordCount == 3)
        #expect(batch.header.firstTimestamp == 1_700_000_000_123)
        #expect(batch.header.maxTimestamp == 1_700_000_000_999)
        #expect(batch.header.compression == compression)
        try batch.validateRecords()
        #expect(try batch.records().map(\.record) == records)
        #expect(try batch.records().map(\.offset) == [0, 1, 2])
    }

    @Test func lz4IsDroppedWhenItDoesNotShrink() throws {
        var rng = SeededRandom(seed: 1)
        let bytes = try buildBatch([Record(timestamp: 0, body: rng.bytes(1000))], compression: .lz4)
        #expect(try RecordBatch(validating: bytes).header.compression == Compression.none)
    }

    @Test func compressibleBatchShrinks() throws {
        var rng = SeededRandom(seed: 2)
        let records = (0..<200).map { Record(timestamp: Int64($0), key: Array("customer-\($0 % 7)".utf8), body: rng.compressibleBytes(100)) }
        let plain = try buildBatch(records)
        let packed = try buildBatch(records, compression: .lz4)
        #expect(packed.count < plain.count / 2)
        #expect(try RecordBatch(validating: packed).records().map(\.record) == records)
    }

    @Test func emptyBuilderIsRejected() {
        #expect(throws: StoreError.self) { try RecordBatchBuilder().build() }
    }

    @Test func bitFlipAnywhereInTheCoveredPartFailsTheCRC() throws {
        let bytes = try buildBatch([Record(timestamp: 5, key: [1], body: Array("payload".utf8))])
        for position in RecordBatchHeader.crcStart..<bytes.count {
            var damaged = bytes
            damaged[position] ^= 0x10
            #expect(throws: StoreError.self) { try RecordBatch(validating: damaged) }
        }
    }

    @Test func truncatedAndPaddedBatchesAreMalformed() throws {
        let bytes = try buildBatch([Record(timestamp: 5, body: Array("payload".utf8))])
        let short = Array(bytes.dropLast())
        let error = #expect(throws: StoreError.self) { try RecordBatch(validating: short) }
        #expect(error?.code == .malformedBatch)
        let long = bytes + [0]
        #expect(throws: StoreError.self) { try RecordBatch(validating: long) }
        #expect(throws: StoreError.self) { try RecordBatch(validating: Array(bytes.prefix(20))) }
    }

    /// Rewrites a field and fixes the CRC, as a buggy (not a broken) producer would.
    private func patched(_ bytes: [UInt8], _ edit: (inout [UInt8]) -> Void) -> [UInt8] {
        var b = bytes
        edit(&b)
        let crc = b.withUnsafeBytes { CRC32C.checksum(UnsafeRawBufferPointer(rebasing: $0[16...])) }
        b.withUnsafeMutableBytes { LittleEndian.store(crc, $0, 12) }
        return b
    }

    @Test func wrongRecordCountIsCaughtByTheStructureWalk() throws {
        let bytes = try buildBatch([Record(timestamp: 5, body: Array("one".utf8)), Record(timestamp: 6, body: Array("two".utf8))])
        let tooMany = patched(bytes) { $0.withUnsafeMutableBytes { LittleEndian.store(UInt32(3), $0, 20) } }
        let tooFew = patched(bytes) { $0.withUnsafeMutableBytes { LittleEndian.store(UInt32(1), $0, 20) } }
        for bad in [tooMany, tooFew] {
            let batch = try RecordBatch(validating: bad)  // CRC is fine
            let error = #expect(throws: StoreError.self) { try batch.validateRecords() }
            #expect(error?.code == .malformedBatch)
        }
    }

    @Test func declaredSizeOverTheLimitIsRefusedBeforeDecompressing() throws {
        var rng = SeededRandom(seed: 3)
        let records = randomRecords(&rng, count: 50, bodySize: { _ in 200 }, compressible: true)
        let bytes = try buildBatch(records, compression: .lz4)
        let huge = patched(bytes) { $0.withUnsafeMutableBytes { LittleEndian.store(UInt32.max, $0, 52) } }
        let error = #expect(throws: StoreError.self) { try RecordBatch(validating: huge) }
        #expect(error?.code == .batchTooLarge)
        // A lie within the limit is caught by LZ4's bounded decompression.
        let lie = patched(bytes) { b in
            let real = b.withUnsafeBytes { LittleEndian.load(UInt32.self, $0, 52) }
            b.withUnsafeMutableBytes { LittleEndian.store(real + 1, $0, 52) }
        }
        let batch = try RecordBatch(validating: lie)
        let decode = #expect(throws: StoreError.self) { try batch.records() }
        #expect(decode?.code == .compression)
    }

    @Test func unknownVersionTypeAndAttributesAreRefused() throws {
        let bytes = try buildBatch([Record(timestamp: 5, body: [1])])
        for (position, value) in [(16, UInt8(2)), (17, UInt8(9)), (19, UInt8(0x80)), (18, UInt8(5))] {
            let bad = patched(bytes) { $0[position] = value }
            let error = #expect(throws: StoreError.self) { try RecordBatch(validating: bad) }
            #expect(error?.code == .malformedBatch)
        }
    }

    @Test func garbageRecordSectionsNeverCrashTheDecoder() throws {
        var rng = SeededRandom(seed: 4)
        let bytes = try buildBatch(randomRecords(&rng, count: 5, bodySize: { _ in 30 }, compressible: false))
        for _ in 0..<2000 {
            let garbage = patched(bytes) { b in
                for _ in 0..<3 { b[RecordBatchHeader.size + Int(rng.next() % UInt64(b.count - RecordBatchHeader.size))] = UInt8(truncatingIfNeeded: rng.next()) }
            }
            guard let batch = try? RecordBatch(validating: garbage) else { continue }
            // Either decodes or throws a typed error; never traps.
            _ = try? batch.validateRecords()
            _ = try? batch.records()
        }
    }

    @Test func varintsRoundTripAtEveryWidth() {
        var values: [UInt64] = [0, 1, 127, 128, 16_383, 16_384, UInt64.max, UInt64.max - 1]
        for shift in 0..<64 { values.append(1 << UInt64(shift)) }
        for v in values {
            var out: [UInt8] = []
            VarInt.append(v, to: &out)
            #expect(out.count == VarInt.size(v))
            out.withUnsafeBytes { raw in
                var i = 0
                #expect(VarInt.read(raw, &i, end: raw.count) == v)
                #expect(i == raw.count)
                var j = 0
                #expect(VarInt.read(raw, &j, end: raw.count - 1) == nil, "a cut varint must not decode")
            }
        }
        for s: Int64 in [0, -1, 1, .min, .max, -123_456] {
            var out: [UInt8] = []
            VarInt.appendSigned(s, to: &out)
            out.withUnsafeBytes { raw in
                var i = 0
                #expect(VarInt.readSigned(raw, &i, end: raw.count) == s)
            }
        }
    }
}

/// Records appended from an encoded record part (as the wheel hands fired messages over)
/// decode exactly like records appended field by field.
@Suite struct EncodedPayloadAppendTests {
    private func payload(key: [UInt8]?, headers: [RecordHeader], body: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        VarInt.append(key.map { UInt64($0.count) + 1 } ?? 0, to: &out)
        if let key { out += key }
        VarInt.append(UInt64(headers.count), to: &out)
        for h in headers {
            VarInt.append(UInt64(h.name.utf8.count), to: &out)
            out += Array(h.name.utf8)
            VarInt.append(UInt64(h.value.count), to: &out)
            out += h.value
        }
        return out + body
    }

    @Test func anEncodedPayloadWithAddedHeadersDecodesLikeTheFields() throws {
        let cases: [(key: [UInt8]?, headers: [RecordHeader], body: [UInt8])] = [
            (nil, [], []),
            (Array("k".utf8), [RecordHeader(name: "a", value: [1, 2])], Array(repeating: 7, count: 300)),
            (Array(repeating: 9, count: 200), [RecordHeader(name: "x", value: []), RecordHeader(name: "yy", value: [3])], Array("body".utf8)),
        ]
        let added = RecordHeader(name: "chime-id", value: Array(repeating: 5, count: 17))
        let more = RecordHeader(name: "chime-fire", value: [1])
        var builder = RecordBatchBuilder()
        var expected: [Record] = []
        for (n, c) in cases.enumerated() {
            let ts: Int64 = 1_800_000_000_000 + Int64(n) * 1_000_000
            let p = payload(key: c.key, headers: c.headers, body: c.body)
            let ok = p.withUnsafeBytes { builder.append(timestamp: ts, payload: $0, adding: added, n == 0 ? more : nil) }
            #expect(ok)
            expected.append(Record(timestamp: ts, key: c.key, headers: c.headers + [added] + (n == 0 ? [more] : []), body: c.body))
        }
        let batch = try RecordBatch(validating: try builder.build())
        try batch.validateRecords()
        #expect(try batch.records().map(\.record) == expected)
    }

    @Test func aMalformedPayloadIsRefusedAndNothingIsAppended() {
        var builder = RecordBatchBuilder()
        let bad: [UInt8] = [0x05, 1, 2]  // a key of 4 bytes, only 2 present
        #expect(bad.withUnsafeBytes { builder.append(timestamp: 1, payload: $0) } == false)
        #expect(builder.isEmpty)
    }
}
