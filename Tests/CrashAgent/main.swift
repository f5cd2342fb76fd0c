// A child process for crash tests: appends to a log under `always` durability from several
// concurrent tasks and prints one line per append that returned, until it is killed.
//
//   CrashAgent append <log directory> <seed> [segment bytes]
//
// Each acknowledged append prints "ack <baseOffset> <lastOffset> <crc>" (crc = the batch's
// stored CRC-32C) and flushes, so the parent knows exactly what was acknowledged.
import ChimeStore
import Foundation
import Logging

/// Unbuffered: a line the parent reads was acknowledged before the kill.
func say(_ line: String) { FileHandle.standardOutput.write((line + "\n").data(using: .utf8)!) }
let args = CommandLine.arguments
guard args.count >= 4, args[1] == "append", let seed = UInt64(args[3]) else {
    FileHandle.standardError.write("usage: CrashAgent append <dir> <seed> [segment bytes]\n".data(using: .utf8)!)
    exit(2)
}
let segmentBytes = args.count > 4 ? Int(args[4]) ?? 1 << 20 : 1 << 20
let log = try RecordLog.open(directory: args[2], configuration: LogConfiguration(segmentBytes: segmentBytes, durability: .always), logger: Logger(label: "chime.store"))
say("ready \(log.endOffset)")

let output = NSLock()
await withThrowingTaskGroup(of: Void.self) { group in
    for task in 0..<4 {
        group.addTask {
            var rng = SplitMix64(seed: seed &* 31 &+ UInt64(task))
            var n = 0
            while true {
                var builder = RecordBatchBuilder(compression: n % 3 == 0 ? .lz4 : .none)
                for r in 0..<Int.random(in: 1...20, using: &rng) {
                    let size = Int.random(in: 0...2000, using: &rng)
                    let body = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* (task + 1) &+ r) }
                    builder.append(Record(timestamp: Int64(n), key: Array("t\(task)".utf8), body: body))
                }
                let bytes = try builder.build()
                let result = try await log.appendDurably(bytes)
                let crc = try RecordBatch(validating: bytes).header.crc
                output.withLock { say("ack \(result.baseOffset) \(result.lastOffset) \(crc)") }
                n += 1
            }
        }
    }
    do { try await group.waitForAll() } catch {
        FileHandle.standardError.write("append failed: \(error)\n".data(using: .utf8)!)
        exit(1)
    }
}
