import ChimeStore
import ChimeTestSupport
import Foundation
import Glibc
import Testing

@testable import ChimeWheel

/// Real process, real clock, real fsync, real SIGKILL: a child schedules messages due within
/// 400 ms and fires them into a ready log; it is killed at random moments 24 times and
/// restarted each time, then drained. Every acknowledged schedule must be in the ready log
/// exactly once, handed over no earlier than its due time.
@Suite struct WheelKillTests {
    struct Outcome {
        var acks: [Int64: Int64] = [:]
        var printedReady = false
    }

    @Test func everyAcknowledgedScheduleFiresExactlyOnceAcrossSIGKILLs() async throws {
        let dir = TemporaryDirectory()
        var rng = SplitMix64(seed: 77)
        var acks: [Int64: Int64] = [:]
        var killsWithAcks = 0
        for round in 0..<24 {
            let (text, _, signalled) = try await runCrashAgent(["wheel", dir.path, String(round)], killAfter: .milliseconds(Int64(150 + rng.next() % 350)))
            #expect(signalled, "round \(round): the agent must die by the signal")
            var acked = 0
            for line in text.split(separator: "\n") {
                let parts = line.split(separator: " ")
                if parts.count == 3, parts[0] == "ack", let id = Int64(parts[1]), let due = Int64(parts[2]) {
                    #expect(acks[id] == nil, "id \(id) acknowledged twice")
                    acks[id] = due
                    acked += 1
                }
            }
            if acked > 0 { killsWithAcks += 1 }
        }
        #expect(killsWithAcks >= 20, "at least 20 kills must land while schedules are acknowledged")

        let drain = try await runCrashAgent(["wheel", dir.path, "0", "drain"], killAfter: nil)
        #expect(drain.status == 0 && drain.text.contains("drained"))

        // The loop reclaimed dead timer-log segments along the way (small accounting chunks).
        let timerFiles = try FileManager.default.contentsOfDirectory(atPath: dir.path + "/timer").filter { $0.hasSuffix(".timer") }.sorted()
        #expect(timerFiles.first != "00000000000000000000.timer", "the first timer segment was reclaimed")

        let ready = try RecordLog.open(directory: dir.path + "/ready", configuration: LogConfiguration(durability: .never), logger: testLogger)
        var delivered: [Int64: Int] = [:]
        var early = 0
        var next: Int64 = ready.startOffset
        while let batch = try ready.read(from: next, maxBytes: 1 << 20).first {
            for r in try batch.records() {
                let id = r.record.key!.withUnsafeBytes { Int64(littleEndian: $0.loadUnaligned(as: Int64.self)) }
                let due = r.record.headers.first { $0.name == "due" }!.value.withUnsafeBytes { Int64(littleEndian: $0.loadUnaligned(as: Int64.self)) }
                delivered[id, default: 0] += 1
                if r.record.timestamp < due { early += 1 }
            }
            next = batch.nextOffset
        }
        try ready.close()
        #expect(acks.count > 200, "the runs must acknowledge a real number of schedules")
        let missing = Set(acks.keys).subtracting(delivered.keys)
        #expect(missing.isEmpty, "acknowledged but never fired: \(missing.sorted().prefix(10))")
        let doubled = delivered.filter { $0.value > 1 }
        #expect(doubled.isEmpty, "fired more than once: \(doubled.keys.sorted().prefix(10))")
        #expect(early == 0, "handed over before the due time")
    }
}
