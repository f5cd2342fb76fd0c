import ChimeStore
import ChimeTestSupport
import Foundation
import Testing

@testable import ChimeWheel

/// Timer-log segments are deleted once nothing in them is live and a checkpoint lies past
/// them; everything pending still fires after a reopen.
@Suite struct ReclaimTests {
    static let epoch: Int64 = 1_800_000_000_000

    private func open(_ dir: TemporaryDirectory, _ dest: RecordingDestination, segmentBytes: Int = 64 << 10) throws -> TimingWheel {
        let log = try TimerLog.open(directory: dir.path + "/timer", configuration: LogConfiguration(segmentBytes: segmentBytes, durability: .never), logger: testLogger)
        return try TimingWheel(log: log, checkpointPath: dir.file("wheel.checkpoint"), destination: dest, logger: testLogger)
    }

    private func batch(_ n: Int, due: (Int) -> Int64) -> [ScheduledMessage] {
        (0..<n).map { ScheduledMessage(dueAt: due($0), publishedAt: Self.epoch, body: [UInt8](repeating: 7, count: 200)) }
    }

    @Test func firedSegmentsAreDeletedAndTheWheelReopensWhole() throws {
        let dir = TemporaryDirectory()
        let dest = RecordingDestination()
        var wheel = try open(dir, dest)
        try wheel.advance(to: Self.epoch)
        for k in 0..<40 { try wheel.schedule(batch(100) { Self.epoch + 1_000 + Int64(k * 100 + $0) }) }
        let segmentsBefore = wheel.log.segmentInfos.count
        #expect(segmentsBefore > 5)
        #expect(try wheel.reclaim().isEmpty, "no checkpoint yet: nothing may go")
        try wheel.checkpoint()
        #expect(try wheel.reclaim().isEmpty, "everything is still pending")

        try wheel.advance(to: Self.epoch + 10_000)
        #expect(dest.fired.count == 4_000)
        try wheel.checkpoint()
        let deleted = try wheel.reclaim()
        #expect(!deleted.isEmpty)
        #expect(wheel.log.segmentInfos.count < segmentsBefore)
        #expect(wheel.liveChunks.isEmpty)
        let later = try wheel.schedule(batch(3) { Self.epoch + 20_000 + Int64($0) })
        try wheel.log.close()

        wheel = try open(dir, dest)
        #expect(wheel.recovery.fromCheckpoint)
        #expect(wheel.pendingCount == 3)
        try wheel.advance(to: Self.epoch + 30_000)
        #expect(dest.fired.suffix(3).map(\.id) == later)
        #expect(Set(dest.fired.map(\.id)).count == dest.fired.count)
    }

    /// A message due far ahead keeps its segment (and those after it) until it fires.
    @Test func aLongDelayedMessageKeepsItsSegment() throws {
        let dir = TemporaryDirectory()
        let dest = RecordingDestination()
        var wheel = try open(dir, dest)
        try wheel.advance(to: Self.epoch)
        // More than one 1 MiB accounting chunk before the straggler, so some can go.
        for k in 0..<10 { try wheel.schedule(batch(1_000) { Self.epoch + 1_000 + Int64(k * 1_000 + $0) }) }
        let straggler = try wheel.schedule([ScheduledMessage(dueAt: Self.epoch + 86_400_000, publishedAt: Self.epoch, body: Array("tomorrow".utf8))])[0]
        for k in 0..<20 { try wheel.schedule(batch(100) { Self.epoch + 2_000 + Int64(k * 100 + $0) }) }
        try wheel.advance(to: Self.epoch + 60_000)
        try wheel.checkpoint()
        try wheel.reclaim()
        #expect(wheel.log.startOffset <= straggler, "the straggler's segment stays")
        #expect(wheel.log.startOffset > 0, "the segments before it go")
        try wheel.log.close()

        wheel = try open(dir, dest)
        try wheel.advance(to: Self.epoch + 86_400_000)
        #expect(dest.fired.last?.id == straggler)
        #expect(String(decoding: dest.fired.last!.message.body, as: UTF8.self) == "tomorrow")
    }

    /// Replaying from a checkpoint and replaying the whole log count the same live entries:
    /// the replay rules match the live ones.
    @Test func liveCountsAgreeBetweenCheckpointAndFullReplay() throws {
        let dir = TemporaryDirectory()
        let dest = RecordingDestination()
        var wheel = try open(dir, dest, segmentBytes: 1 << 20)
        try wheel.advance(to: Self.epoch)
        var rng = SplitMix64(seed: 5)
        var ids: [Int64] = []
        for k in 0..<30 {
            ids += try wheel.schedule(batch(50) { _ in Self.epoch + Int64(k * 1_000) + Int64(rng.next() % 3_000_000) })
            if k % 7 == 3 { try wheel.cancel(ids[Int(rng.next() % UInt64(ids.count))]) }
            try wheel.advance(to: Self.epoch + Int64(k) * 40_000)
            if k == 15 { try wheel.checkpoint() }
        }
        let live = wheel.liveChunks
        #expect(!live.isEmpty)
        try wheel.log.close()
        wheel = try open(dir, dest, segmentBytes: 1 << 20)
        #expect(wheel.recovery.fromCheckpoint)
        #expect(wheel.liveChunks == live)
        try wheel.log.close()
        try FileManager.default.removeItem(atPath: dir.file("wheel.checkpoint"))
        wheel = try open(dir, dest, segmentBytes: 1 << 20)
        #expect(!wheel.recovery.fromCheckpoint)
        #expect(wheel.liveChunks == live)
        try wheel.log.close()
    }
}
