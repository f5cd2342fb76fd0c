import Foundation
import Logging
import Testing

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

/// A fresh directory under the system temp dir, removed when the test ends.
final class TemporaryDirectory {
    let path: String

    init(_ label: String = "chime-test") {
        let base = (ProcessInfo.processInfo.environment["TMPDIR"] ?? "/tmp") + "/\(label)-\(getpid())-\(UUID().uuidString.prefix(8))"
        try! FileManager.default.createDirectory(atPath: base, withIntermediateDirectories: true)
        path = base
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }

    func file(_ name: String) -> String { path + "/" + name }
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

/// A built executable of this package (the test binary sits beside them).
func builtProduct(_ name: String) -> String {
    let me = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    var dir = URL(fileURLWithPath: me).deletingLastPathComponent()
    // The test binary may sit inside a .xctest bundle directory.
    while !FileManager.default.isExecutableFile(atPath: dir.appendingPathComponent(name).path) && dir.path != "/" {
        dir = dir.deletingLastPathComponent()
    }
    return dir.appendingPathComponent(name).path
}

/// Runs a program to completion, returning exit status and standard output.
func run(_ executable: String, _ arguments: [String]) throws -> (status: Int32, output: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = FileHandle.nullDevice
    try process.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: data, as: UTF8.self))
}

/// Flips one bit of a file in place.
func flipBit(_ path: String, at position: Int64, bit: UInt8 = 0) throws {
    let handle = try FileHandle(forUpdating: URL(fileURLWithPath: path))
    defer { try? handle.close() }
    try handle.seek(toOffset: UInt64(position))
    var byte = try handle.read(upToCount: 1)!
    byte[0] ^= 1 << bit
    try handle.seek(toOffset: UInt64(position))
    try handle.write(contentsOf: byte)
}

func fileSize(_ path: String) -> Int64 {
    ((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? NSNumber)?.int64Value ?? -1
}

func truncateFile(_ path: String, to size: Int64) {
    precondition(truncate(path, off_t(size)) == 0)
}

/// Tests assert on `recovery` reports and typed errors, not on log lines, so the store's
/// (deliberately loud) damage logs are silenced here to keep test output readable.
let testLogger: Logger = {
    var logger = Logger(label: "chime.test")
    logger.logLevel = .critical
    return logger
}()
