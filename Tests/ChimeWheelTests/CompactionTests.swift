import ChimeStore
import ChimeTestSupport
import Foundation
import Testing

@testable import ChimeWheel

/// Compaction: long-delayed stragglers are copied forward so the timer log's disk use
/// stays within twice its live bytes, ids and due times unchanged.
@Suite struct CompactionTests {
    static let base: Int64 = 1_800_000_000_000
    static let segmentBytes = 16 << 10
    static let minimum: Int64 = 32 << 10

    private func open(_ dir: TemporaryDirectory, _ destination: RecordingDestination) throws -> TimingWheel {
        let log = try TimerLog.open(
            directory: dir.path + "/timer", configuration: LogConfiguration(segmentBytes: Self.segmentBytes, durability: .never), logger: testLogger)
        return try TimingWheel(
            log: log, checkpointPath: dir.file("wheel.checkpoint"), destination: destination, reclaimChunkBytes: 4096,
            compactionMinimumBytes: Self.minimum, logger: testLogger)
    }

    private func diskBytes(_ w: TimingWheel) -> Int64 { w.log.segmentInfos.reduce(0) { $0 + $1.bytes } }

    /// Checkpoint, reclaim, and compaction passes until nothing changes (what the firing
    /// loop does after each checkpoint). Returns the slots compacted.
    @discardableResult
    private func settle(_ w: TimingWheel) throws -> Int {
        var steps = 0
        while true {
            try w.checkpoint()
            let deleted = try w.reclaim()
            var stepped = 0
            while try w.compact() { stepped += 1 }
            steps += stepped
            if deleted.isEmpty && stepped == 0 { return steps }
        }
    }

    /// A list that moved down whole (all its entries due at one instant) waits on level 2
    /// while traffic fills the log: compaction copies it forward like any other list, and
    /// every message still fires once, at its time.
    @Test func aListMovedWholeIsCompactedLikeAnyOther() throws {
        let dir = TemporaryDirectory()
        let dest = RecordingDestination()
        var wheel = try open(dir, dest)
        let span3: Int64 = 1 << 18
        let s3 = (Self.base & ~(span3 - 1)) + 2 * span3  // a level-3 slot start, two slots ahead
        var now = s3 - span3 - 1_000
        dest.clock = { now }
        try wheel.advance(to: now)
        let due = s3 + 200_000  // 48 level-2 slots into the level-3 slot: not its current or next
        let ids = try wheel.schedule((0..<24).map { n in ScheduledMessage(dueAt: due, publishedAt: now, body: Array("burst-\(n)".utf8)) })
        now = s3
        try wheel.advance(to: now)
        try wheel.log.flush()
        let moves = try timerLogKinds(wheel).filter { $0 == .slotMoved || $0 == .slotMovedAhead }.count
        #expect(moves >= 1, "the list moved down whole")
        #expect(wheel.occupiedSlots[2] == 1)

        var compacted = 0
        var rng = SplitMix64(seed: 9)
        let filler = [UInt8](repeating: 7, count: 100)
        for round in 0..<30 {
            try wheel.schedule((0..<60).map { _ in ScheduledMessage(dueAt: now + 1 + Int64(rng.next() % 5_000), publishedAt: now, body: filler) })
            now += 6_000
            try wheel.advance(to: now)
            if round % 5 == 4 { compacted += try settle(wheel) }
        }
        #expect(now < due)
        #expect(compacted > 0, "compaction ran")
        #expect(wheel.log.startOffset > ids.last!, "the moved list's original segment is gone: its messages were copied forward")
        #expect(wheel.pendingCount == 24)
        try wheel.log.close()
        wheel = try open(dir, dest)
        now = due
        try wheel.advance(to: now)
        let burst = dest.fired.filter { $0.message.dueAt == due }
        #expect(burst.map(\.id) == ids, "each once, in publish order (ids kept by the copies)")
        #expect(burst.allSatisfy { $0.at == due && String(decoding: $0.message.body, as: UTF8.self).hasPrefix("burst-") })
    }

    @Test func stragglersMoveForwardAndDiskStaysWithinTwiceTheLiveBytes() throws {
        let dir = TemporaryDirectory()
        let dest = RecordingDestination()
        var wheel = try open(dir, dest)
        var now = Self.base
        dest.clock = { now }
        try wheel.advance(to: now)
        let month: Int64 = 30 * 86_400_000
        // Stragglers due in a month, some in the same millisecond; bodies name them.
        let stragglers = (0..<24).map { n in
            ScheduledMessage(dueAt: Self.base + month + Int64(n / 3), publishedAt: now, key: [UInt8(n)], body: Array("straggler-\(n)".utf8))
        }
        let ids = try wheel.schedule(stragglers)
        let due = Dictionary(uniqueKeysWithValues: zip(ids, stragglers.map(\.dueAt)))
        #expect(wheel.log.segmentInfos.first?.baseOffset == 0)

        // A month of traffic: short delays that fire and die around the stragglers.
        var compacted = 0
        var rng = SplitMix64(seed: 5)
        let filler = [UInt8](repeating: 7, count: 100)
        for round in 0..<120 {
            try wheel.schedule((0..<60).map { _ in
                ScheduledMessage(dueAt: now + 1 + Int64(rng.next() % 5_000), publishedAt: now, body: filler)
            })
            now += 6_000
            try wheel.advance(to: now)
            if round % 10 == 9 {
                compacted += try settle(wheel)
                #expect(diskBytes(wheel) <= 2 * wheel.liveBytes + Self.minimum + Int64(Self.segmentBytes), "round \(round): disk \(diskBytes(wheel)), live \(wheel.liveBytes)")
            }
        }
        #expect(compacted > 0, "compaction ran")
        #expect(wheel.log.startOffset > ids.last!, "the stragglers' original segment is gone")
        #expect(wheel.pendingCount == 24)

        // Reopening (from the checkpoint, and replaying the whole log) finds the same wheel.
        let before = WheelSnapshot(wheel)
        try wheel.log.close()
        wheel = try open(dir, dest)
        #expect(WheelSnapshot(wheel) == before)
        try wheel.log.close()
        try FileManager.default.removeItem(atPath: dir.file("wheel.checkpoint"))
        wheel = try open(dir, dest)
        #expect(!wheel.recovery.fromCheckpoint)
        #expect(WheelSnapshot(wheel) == before)

        // Cancel and reschedule by id: the original entry is gone, so the due time is needed.
        let error = #expect(throws: WheelError.self) { try wheel.cancel(ids[0]) }
        #expect(error?.code == .unknownMessage && error?.message.contains("due time") == true)
        try wheel.cancel(ids[0], dueAt: due[ids[0]]!)
        #expect((#expect(throws: WheelError.self) { try wheel.cancel(ids[0], dueAt: due[ids[0]]!) })?.code == .notPending)
        let movedTo = Self.base + month + 100
        let newID = try wheel.reschedule(ids[1], dueAt: due[ids[1]]!, to: movedTo)
        #expect(wheel.pendingCount == 23)

        now = Self.base + month + 1_000
        try wheel.advance(to: now)
        let all = dest.fired
        #expect(Set(all.map(\.id)).count == all.count, "nothing fired twice")
        #expect(all.count == 120 * 60 + 23, "every filler and every straggler not cancelled")
        let expected = Set(ids.dropFirst(2)).union([newID])
        let fired = all.filter { $0.message.dueAt > Self.base + month - 1 }
        #expect(fired.count == 23)
        #expect(Set(fired.map(\.id)) == expected)
        for f in fired {
            if f.id == newID {
                #expect(f.message.body == Array("straggler-1".utf8) && f.message.dueAt == movedTo && f.at >= movedTo)
            } else {
                let n = ids.firstIndex(of: f.id)!
                #expect(f.message == stragglers[n], "a moved message keeps its record and due time")
                #expect(f.at >= f.message.dueAt)
            }
        }
        let inOrder = inDueThenIDOrder(fired)
        #expect(inOrder, "due order, then publish (id) order, also for moved messages")
        #expect(wheel.pendingCount == 0)
    }

    /// A slot with more entries to rewrite than one step allows is compacted in several
    /// steps, oldest chunk first; a reopen between steps (from the checkpoint or by full
    /// replay) finds the same wheel, and everything fires once, in order.
    @Test func aLargeSlotIsCompactedInSteps() throws {
        let dir = TemporaryDirectory()
        let dest = RecordingDestination()
        var wheel = try open(dir, dest)
        var now = Self.base
        dest.clock = { now }
        try wheel.advance(to: now)
        let month: Int64 = 30 * 86_400_000
        // 50 stragglers in one slot, some read through links after a cascade from above.
        let ids = try wheel.schedule((0..<50).map { n in
            ScheduledMessage(dueAt: Self.base + month + Int64(n % 7), publishedAt: now, body: Array("s\(n)".utf8))
        })
        let filler = [UInt8](repeating: 1, count: 200)
        for _ in 0..<40 {
            try wheel.schedule((0..<50).map { _ in ScheduledMessage(dueAt: now + 10, publishedAt: now, body: filler) })
            now += 100
            try wheel.advance(to: now)
        }
        wheel.compactionStepLimit = 8
        try wheel.checkpoint()
        try wheel.reclaim()
        var steps = 0
        var reopened = 0
        while try wheel.compact() {
            steps += 1
            // Two reopens: while the first pass plans (a reopen starts a new pass), and
            // while the second rewrites.
            if steps == 5 || steps == 16 {
                let before = WheelSnapshot(wheel)
                try wheel.log.close()
                if steps == 16 { try? FileManager.default.removeItem(atPath: dir.file("wheel.checkpoint")) }
                wheel = try open(dir, dest)
                wheel.compactionStepLimit = 8
                #expect(WheelSnapshot(wheel) == before, "reopened after compaction step \(steps)")
                reopened += 1
                try wheel.checkpoint()
            }
        }
        #expect(steps >= 50 / 8, "several steps: \(steps)")
        #expect(reopened == 2)
        try settle(wheel)
        #expect(wheel.log.startOffset > ids.last!, "the stragglers' first segment is gone")
        now = Self.base + month + 10
        try wheel.advance(to: now)
        let fired = dest.fired.suffix(50)
        #expect(Set(fired.map(\.id)) == Set(ids) && fired.count == 50)
        #expect(inDueThenIDOrder(fired))
        #expect(fired.allSatisfy { f in ids.firstIndex(of: f.id).map { n in f.message.body == Array("s\(n)".utf8) } ?? false })
        #expect(wheel.pendingCount == 0)
    }
}
