import ChimeStore
import ChimeTestSupport
import Foundation
import Testing

@testable import ChimeWheel

/// `chime inspect` on a real timer log: every entry listed with its kind, damage found.
@Suite struct InspectTimerLogTests {
    @Test func listsEveryTimerEntryAndVerifyCatchesDamage() throws {
        let dir = TemporaryDirectory()
        let dest = RecordingDestination()
        let log = try TimerLog.open(directory: dir.path + "/timer", configuration: LogConfiguration(durability: .never), logger: testLogger)
        let wheel = try TimingWheel(log: log, destination: dest, logger: testLogger)
        let epoch: Int64 = 1_800_000_000_000
        try wheel.advance(to: epoch)
        let ids = try wheel.schedule((0..<5).map { ScheduledMessage(dueAt: epoch + 100 + Int64($0), publishedAt: epoch, body: Array("m\($0)".utf8)) })
        try wheel.cancel(ids[2])
        try wheel.advance(to: epoch + 200)  // cascades (links, cleared markers) and fires (fired markers)
        try log.close()

        let chime = builtProduct("chime")
        let (status, output) = try run(chime, ["inspect", "--json", "--records", dir.path + "/timer"])
        #expect(status == 0)
        let lines = try output.split(separator: "\n").map { try #require(JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]) }
        let entries = lines.filter { $0["type"] as? String == "timer-entry" }
        let kinds = entries.compactMap { $0["kind"] as? String }
        #expect(kinds.filter { $0 == "message" }.count == 5)
        #expect(kinds.filter { $0 == "cancel" }.count >= 1)
        #expect(kinds.contains("slotFired"))
        #expect(entries.first?["body"] as? String == "m0")
        #expect(entries.allSatisfy { $0["crc"] as? String == "ok" })

        #expect(try run(chime, ["inspect", "--verify", dir.path + "/timer"]).status == 0)
        let second = try #require(entries.dropFirst().first?["position"] as? Int)
        try flipBit(dir.file("timer/00000000000000000000.timer"), at: Int64(second + 30))
        let damaged = try run(chime, ["inspect", "--verify", dir.path + "/timer"])
        #expect(damaged.status == 1)
        #expect(damaged.output.contains("DAMAGED"))
    }
}
