import Foundation
import Glibc
import Testing

@testable import ChimeStore

/// Real processes, real fsync, real SIGKILL: a child appends under `always` from four
/// tasks and prints each append that returned; it is killed at a random moment, 24 times
/// over the same log. Every acknowledged append must be there, intact, after each restart.
@Suite struct CrashTests {
    struct Ack: Hashable {
        var base: Int64
        var last: Int64
        var crc: UInt32
    }

    /// Starts the agent, kills it with SIGKILL after `delay`, returns the acks it printed.
    private func runAndKill(agent: String, directory: String, seed: UInt64, delay: Duration) async throws -> (acks: [Ack], ready: Bool) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: agent)
        process.arguments = ["append", directory, String(seed), String(256 << 10)]
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = FileHandle.nullDevice
        try process.run()
        try await Task.sleep(for: delay)
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        #expect(process.terminationReason == .uncaughtSignal, "the agent must die by the signal, not fail on its own")
        let text = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        var acks: [Ack] = []
        var ready = false
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: " ")
            if parts.first == "ready" { ready = true }
            // A line cut by the kill has fewer fields and is not counted as acknowledged.
            if parts.count == 4, parts[0] == "ack", let b = Int64(parts[1]), let l = Int64(parts[2]), let c = UInt32(parts[3]) {
                acks.append(Ack(base: b, last: l, crc: c))
            }
        }
        return (acks, ready)
    }

    @Test func everyAcknowledgedAppendSurvivesSIGKILL() async throws {
        let agent = builtProduct("CrashAgent")
        #expect(FileManager.default.isExecutableFile(atPath: agent), "CrashAgent must be built beside the tests: \(agent)")
        let dir = TemporaryDirectory()
        var rng = SeededRandom(seed: 2026)
        var acknowledged: [Ack] = []
        var killsWithAcks = 0
        for round in 0..<24 {
            let delay = Duration.milliseconds(Int64(40 + rng.next() % 260))
            let (acks, ready) = try await runAndKill(agent: builtProduct("CrashAgent"), directory: dir.path, seed: UInt64(round), delay: delay)
            if ready && !acks.isEmpty { killsWithAcks += 1 }
            acknowledged += acks

            let log = try RecordLog.open(directory: dir.path, configuration: LogConfiguration(segmentBytes: 256 << 10, durability: .never), logger: testLogger)
            #expect(log.recovery.damaged.isEmpty, "round \(round): \(log.recovery.damaged)")
            for ack in acknowledged {
                let batch = try #require(try log.read(from: ack.base, maxBytes: 1).first, "round \(round): offset \(ack.base) lost")
                #expect(batch.baseOffset == ack.base && batch.lastOffset == ack.last, "round \(round)")
                #expect(batch.header.crc == ack.crc, "round \(round): batch at \(ack.base) changed")
                try batch.validateRecords()
            }
            // Offsets are dense: every batch follows the one before it.
            var next: Int64 = 0
            while let batch = try log.read(from: next, maxBytes: 1).first {
                #expect(batch.baseOffset == next)
                next = batch.nextOffset
            }
            #expect(next == log.endOffset)
            try log.close()
        }
        #expect(killsWithAcks >= 20, "at least 20 kills must land while appends are acknowledged")
        #expect(Set(acknowledged.map(\.base)).count == acknowledged.count, "no offset acknowledged twice")
    }
}
