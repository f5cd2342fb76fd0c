// A child process for crash tests, killed with SIGKILL by the parent.
//
//   CrashAgent append <log directory> <seed> [segment bytes]
//     Appends under `always` from four tasks; prints "ack <baseOffset> <lastOffset> <crc>"
//     (crc = the batch's stored CRC-32C) for each append that returned.
//
//   CrashAgent wheel <directory> <seed> [drain]
//     A timing wheel on the real clock: timer log, checkpoint and a ready log as the fire
//     destination. Schedules messages due within 0–400 ms and prints "ack <id> <dueAt>" once
//     each schedule is durable. With `drain` it schedules nothing, fires what is pending and
//     exits 0 when nothing is.
//
//   CrashAgent broker <directory> <seed> [drain <expected file>]
//     A whole Broker (ChimeBroker) on the real clock: publishes immediate and scheduled
//     messages and consumes them in group "g", printing what was acknowledged (see
//     BrokerAgent.swift).
import ChimeStore
import ChimeWheel
import Foundation
import Logging

/// Unbuffered: a line the parent reads was acknowledged before the kill.
func say(_ line: String) { FileHandle.standardOutput.write((line + "\n").data(using: .utf8)!) }
let args = CommandLine.arguments
guard args.count >= 4, ["append", "wheel", "broker"].contains(args[1]), let seed = UInt64(args[3]) else {
    FileHandle.standardError.write("usage: CrashAgent append|wheel|broker <dir> <seed> [...]\n".data(using: .utf8)!)
    exit(2)
}
if args[1] == "broker" {
    await BrokerAgent.run(directory: args[2], seed: seed, drainList: args.count > 5 && args[4] == "drain" ? args[5] : nil)
    exit(0)
}
if args[1] == "wheel" {
    try await runWheel(directory: args[2], seed: seed, drain: args.count > 4 && args[4] == "drain")
    exit(0)
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

/// Fired messages become records of the ready log: key = the message id (8 bytes LE),
/// headers carry the due time and the fire sequence, timestamp = the hand-over time. The
/// fire sequence is durable with the records, which is what makes hand-overs exactly-once.
final class ReadyLogDestination: FireDestination {
    let log: RecordLog
    private(set) var lastFireSequence: UInt64?

    init(log: RecordLog) throws {
        self.log = log
        if log.endOffset > log.startOffset, let last = try log.read(from: log.endOffset - 1, maxBytes: 1).last,
            let record = try last.records().last,
            let header = record.record.headers.first(where: { $0.name == "fire-seq" })
        {
            lastFireSequence = header.value.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
        }
    }

    func deliver(_ messages: [FiredMessage], fireSequence: UInt64) throws {
        let now = SystemWheelClock().now()
        var builder = RecordBatchBuilder()
        for m in messages {
            builder.append(Record(
                timestamp: now, key: withUnsafeBytes(of: m.id.littleEndian) { Array($0) },
                headers: [
                    RecordHeader(name: "due", value: withUnsafeBytes(of: m.message.dueAt.littleEndian) { Array($0) }),
                    RecordHeader(name: "fire-seq", value: withUnsafeBytes(of: fireSequence.littleEndian) { Array($0) }),
                ],
                body: m.message.body))
        }
        try log.append(builder.build())
        try log.flush()  // durable before the wheel writes its "fired" marker
        lastFireSequence = fireSequence
    }
}

func runWheel(directory: String, seed: UInt64, drain: Bool) async throws {
    var logger = Logger(label: "crash-agent")
    logger.logLevel = .critical
    let timer = try TimerLog.open(directory: directory + "/timer", configuration: LogConfiguration(segmentBytes: 16 << 10), logger: logger)
    let ready = try RecordLog.open(directory: directory + "/ready", configuration: LogConfiguration(segmentBytes: 64 << 10), logger: logger)
    let destination = try ReadyLogDestination(log: ready)
    let wheel = try TimingWheel(
        log: timer, checkpointPath: directory + "/wheel.checkpoint", destination: destination, reclaimChunkBytes: 4096, logger: logger)
    let loop = FiringLoop(wheel: wheel, logger: logger)
    say("ready")
    let running = Task { try await loop.run() }
    if drain {
        while await loop.pendingCount > 0 { try await Task.sleep(for: .milliseconds(10)) }
        running.cancel()
        try await running.value  // the loop's last act is a checkpoint and a reclaim
        say("drained")
        return
    }
    var rng = SplitMix64(seed: seed)
    var round = 0
    while true {
        let now = SystemWheelClock().now()
        let batch = (0..<Int(rng.next() % 10 + 1)).map { i in
            ScheduledMessage(dueAt: now + Int64(rng.next() % 400), publishedAt: now, body: Array("s\(seed)-\(round)-\(i)".utf8))
        }
        let ids = try await loop.schedule(batch)
        try await timer.waitUntilDurable(timer.endOffset)
        for (id, m) in zip(ids, batch) { say("ack \(id) \(m.dueAt)") }
        round += 1
        if round % 20 == 0 { try await loop.checkpoint() }
        try await Task.sleep(for: .milliseconds(3))
    }
}
