import Foundation

import Testing
@_exported import ChimeTestSupport

@testable import ChimeStore

/// Every random test replays exactly from its seed.
typealias SeededRandom = SplitMix64

extension SplitMix64 {
    mutating func bytes(_ count: Int) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        var i = 0
        while i < count {
            var word = next()
            for _ in 0..<8 where i < count {
                out[i] = UInt8(truncatingIfNeeded: word)
                word >>= 8
                i += 1
            }
        }
        return out
    }

    /// Bytes LZ4 can shrink: runs drawn from a small alphabet.
    mutating func compressibleBytes(_ count: Int) -> [UInt8] {
        let words: [[UInt8]] = ["order", "parcel", "coupon", "retry", " ", "{\"id\":", "}", "deploy"].map { Array($0.utf8) }
        var out: [UInt8] = []
        out.reserveCapacity(count)
        while out.count < count { out.append(contentsOf: words[Int(next() % UInt64(words.count))]) }
        return Array(out.prefix(count))
    }
}

/// Random records for a batch: keys sometimes absent, headers sometimes present.
func randomRecords(_ rng: inout SeededRandom, count: Int, bodySize: (inout SeededRandom) -> Int, compressible: Bool) -> [Record] {
    (0..<count).map { i in
        let size = bodySize(&rng)
        let body = compressible ? rng.compressibleBytes(size) : rng.bytes(size)
        let key: [UInt8]? = rng.next() % 3 == 0 ? nil : rng.bytes(Int(rng.next() % 16))
        let headers: [RecordHeader] = rng.next() % 4 == 0 ? [RecordHeader(name: "trace-\(i)", value: rng.bytes(Int(rng.next() % 8)))] : []
        return Record(timestamp: 1_700_000_000_000 + Int64(rng.next() % 100_000), key: key, headers: headers, body: body)
    }
}

func buildBatch(_ records: [Record], compression: Compression = .none) throws -> [UInt8] {
    var builder = RecordBatchBuilder(compression: compression)
    for r in records { builder.append(r) }
    return try builder.build()
}

/// A one-record batch with a small body: handy for offset bookkeeping tests.
func smallBatch(_ text: String, timestamp: Int64 = 1_000) throws -> [UInt8] {
    try buildBatch([Record(timestamp: timestamp, key: nil, body: Array(text.utf8))])
}

/// Every record of the log from `offset` on, reading batch by batch.
func readAll(_ log: RecordLog, from offset: Int64 = 0, maxBytes: Int = 1 << 20) throws -> [StoredRecord] {
    var out: [StoredRecord] = []
    var next = offset
    while true {
        let batches = try log.read(from: next, maxBytes: maxBytes)
        if batches.isEmpty { return out }
        for b in batches {
            for r in try b.records() where r.offset >= next { out.append(r) }
            next = b.nextOffset
        }
    }
}

