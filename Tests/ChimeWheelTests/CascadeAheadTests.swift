import ChimeStore
import ChimeTestSupport
import Foundation
import Testing

@testable import ChimeWheel

/// Cascading ahead: the next slot of a level is moved one level down in small steps
/// before it starts, so its start costs nothing; partial progress survives a reopen.
@Suite struct CascadeAheadTests {
    /// A level-3 boundary of the 64-slot wheel (64^3 ms), so the slots below are aligned.
    static let base: Int64 = (1_800_000_000_000 / 262_144 + 1) * 262_144

    private func open(_ dir: TemporaryDirectory, _ destination: RecordingDestination) throws -> TimingWheel {
        let log = try TimerLog.open(directory: dir.path + "/timer", configuration: LogConfiguration(durability: .never), logger: testLogger)
        return try TimingWheel(log: log, checkpointPath: dir.file("wheel.checkpoint"), destination: destination, logger: testLogger)
    }

    @Test func theNextSlotMovesDownInStepsAndReopensWhereItStopped() throws {
        let dir = TemporaryDirectory()
        let dest = RecordingDestination()
        var wheel = try open(dir, dest)
        var now = Self.base + 100
        dest.clock = { now }
        try wheel.advance(to: now)
        // Due in the level-2 slot two slots ahead: placed on level 2, not redirected.
        let slotStart = Self.base + 8_192
        var rng = SplitMix64(seed: 11)
        let batch = (0..<500).map { n in
            ScheduledMessage(dueAt: slotStart + Int64(rng.next() % 4_096), publishedAt: now, body: Array("m\(n)".utf8))
        }
        let ids = try wheel.schedule(batch)
        #expect(wheel.occupiedSlots[2] == 1 && wheel.occupiedSlots[1] == 0)
        #expect(try wheel.cascadeAhead(maxEntries: 10) == false, "two slots ahead is not the next slot: nothing to do yet")

        now = Self.base + 4_096  // now that slot is the next one of level 2
        try wheel.advance(to: now)
        try wheel.cancel(ids[0])  // a tombstone at the head of the level-2 list
        var cancelled: Set<Int64> = [ids[0]]
        var steps = 0
        while try wheel.cascadeAhead(maxEntries: 37) {
            steps += 1
            #expect(wheel.pendingCount == 500 - cancelled.count, "moving entries down changes nothing pending")
            if steps == 2 { try wheel.checkpoint() }
            if steps == 5 {
                // Reopen mid-way (checkpoint at step 2, replay of the rest): same state.
                let before = WheelSnapshot(wheel)
                try wheel.log.close()
                wheel = try open(dir, dest)
                #expect(wheel.recovery.fromCheckpoint)
                #expect(WheelSnapshot(wheel) == before)
                // Cancel one already moved down (the newest) and one not yet moved (the oldest).
                for id in [ids[499], ids[1]] {
                    try wheel.cancel(id)
                    cancelled.insert(id)
                    #expect(throws: WheelError.self) { try wheel.cancel(id) }
                }
            }
        }
        #expect(steps >= 12, "500 entries in steps of 37")
        #expect(wheel.occupiedSlots[2] == 0, "the level-2 slot is empty before it starts")
        #expect(wheel.occupiedSlots[1] > 1)
        #expect(wheel.pendingCount == 497)

        // A schedule into that slot now goes straight to level 1.
        let late = try wheel.schedule([ScheduledMessage(dueAt: slotStart + 5, publishedAt: now, body: Array("late".utf8))])
        #expect(wheel.occupiedSlots[2] == 0)

        while now < slotStart + 4_096 {
            now += 1
            try wheel.advance(to: now)
        }
        let fired = dest.fired
        let expected = Set(ids + late).subtracting(cancelled)
        #expect(fired.count == expected.count)
        #expect(Set(fired.map(\.id)) == expected)
        #expect(fired.allSatisfy { $0.at >= $0.message.dueAt && $0.at <= $0.message.dueAt + 1 }, "on time, never early")
        let inOrder = inDueThenIDOrder(fired)
        #expect(inOrder)
        #expect(wheel.pendingCount == 0)
    }

    /// What is not cascaded ahead by the slot's start is cascaded then, as before.
    @Test func aSlotStartingBeforeItsCascadeAheadEndsIsCascadedWhole() throws {
        let dir = TemporaryDirectory()
        let dest = RecordingDestination()
        let wheel = try open(dir, dest)
        var now = Self.base + 100
        dest.clock = { now }
        try wheel.advance(to: now)
        let slotStart = Self.base + 8_192
        let ids = try wheel.schedule((0..<200).map { n in
            ScheduledMessage(dueAt: slotStart + Int64(n * 13 % 4_096), publishedAt: now, body: [UInt8(n & 0xFF)])
        })
        now = Self.base + 4_096
        try wheel.advance(to: now)
        #expect(try wheel.cascadeAhead(maxEntries: 50))
        #expect(try wheel.cascadeAhead(maxEntries: 50))
        now = slotStart + 4_096
        try wheel.advance(to: now)
        #expect(Set(dest.fired.map(\.id)) == Set(ids))
        #expect(dest.fired.count == 200)
        #expect(wheel.pendingCount == 0)
    }

    /// A wheel without a checkpoint (every reopen replays the whole log).
    private func plain(_ dir: TemporaryDirectory, _ d: RecordingDestination) throws -> TimingWheel {
        let log = try TimerLog.open(directory: dir.path + "/timer", configuration: LogConfiguration(durability: .never), logger: testLogger)
        return try TimingWheel(log: log, destination: d, logger: testLogger)
    }

    /// When the next level-1 slot is also the next level-2 slot, cascading ahead moves a
    /// message two levels below where it was placed; cancel still finds it.
    @Test func cancelAfterChainedCascadeAhead() throws {
        let dir = TemporaryDirectory(); let dest = RecordingDestination()
        let w = try plain(dir, dest)
        var now = Self.base + 4_000; dest.clock = { now }
        try w.advance(to: now)
        let id = try w.schedule([ScheduledMessage(dueAt: Self.base + 4_100, publishedAt: now, body: [1])])[0]
        now = Self.base + 4_040
        try w.advance(to: now)
        while try w.cascadeAhead(maxEntries: 1024) {}
        #expect(throws: Never.self) { try w.cancel(id) } 
        now = Self.base + 4_200
        try w.advance(to: now)
        #expect(dest.fired.isEmpty)
    }

    /// A tombstone moved down ahead of its message is still seen: a second cancel fails.
    @Test func secondCancelAcceptedPendingGoesNegative() throws {
        let dir = TemporaryDirectory(); let dest = RecordingDestination()
        let w = try plain(dir, dest)
        var now = Self.base + 4_000; dest.clock = { now }
        try w.advance(to: now)
        let id = try w.schedule([ScheduledMessage(dueAt: Self.base + 4_100, publishedAt: now, body: [1])])[0]
        now = Self.base + 4_040
        try w.advance(to: now)
        try w.cancel(id)
        _ = try w.cascadeAhead(maxEntries: 1)   // moves only the tombstone (head)
        #expect((#expect(throws: WheelError.self) { try w.cancel(id) })?.code == .notPending)
        #expect(w.pendingCount == 0)
    }

    /// Replay restores the time a cascade ahead ran at, so with the wall clock behind it
    /// at a restart, placements use the same pages as the running wheel did.
    @Test func replayTimeLagPageCollision() throws {
        let dir = TemporaryDirectory(); let dest = RecordingDestination()
        var now = Self.base; dest.clock = { now }
        var w = try plain(dir, dest)
        try w.advance(to: now)
        let m1 = try w.schedule([ScheduledMessage(dueAt: Self.base + 4_108, publishedAt: now, body: [1])])[0]
        now = Self.base + 4_037
        try w.advance(to: now)
        while try w.cascadeAhead(maxEntries: 1024) {}   // m1 -> level 0, page of level-1 slot 64
        try w.log.close()
        w = try plain(dir, dest)
        now = Self.base + 3_910                              // wall clock 127 ms behind, restart
        try w.advance(to: now)
        let m2 = try w.schedule([ScheduledMessage(dueAt: Self.base + 3_980, publishedAt: now, body: [2])])[0]
        // Snapshot the log as a crash here would leave it; the running wheel goes on.
        let dir2 = TemporaryDirectory()
        try FileManager.default.copyItem(atPath: dir.path + "/timer", toPath: dir2.path + "/timer")
        for t in (Self.base + 3_911)...(Self.base + 4_200) { now = t; try w.advance(to: t) }
        let d2 = RecordingDestination(); d2.clock = { now }
        let w2 = try plain(dir2, d2)
        for t in (Self.base + 3_911)...(Self.base + 4_200) { now = t; try w2.advance(to: t) }
        let run = dest.fired.map { ($0.id == m1 ? "m1" : $0.id == m2 ? "m2" : "?", $0.at - Self.base) }
        let replayed = d2.fired.map { ($0.id == m1 ? "m1" : $0.id == m2 ? "m2" : "?", $0.at - Self.base) }
        #expect(run.count == 2 && replayed.count == 2)
        #expect(run.map(\.0) == replayed.map(\.0) && run.map(\.1) == replayed.map(\.1), "the replayed wheel does what the running one did")
        // m1 on time; m2, due behind the wheel time the clock stepped back from, is overdue
        // and goes at once (the wheel never moves back).
        #expect(run.first { $0.0 == "m1" }?.1 == 4_108)
        #expect(run.first { $0.0 == "m2" }?.1 == 3_911)
    }

    /// The same one level up: the last 4,096 ms before a level-3 boundary, due 1 s after it.
    @Test func cancelAfterChainedCascadeAheadLevel2() throws {
        let dir = TemporaryDirectory(); let dest = RecordingDestination()
        let w = try plain(dir, dest)
        let B3 = Self.base + 262_144
        var now = B3 - 5_000; dest.clock = { now }
        try w.advance(to: now)
        let id = try w.schedule([ScheduledMessage(dueAt: B3 + 1_000, publishedAt: now, body: [1])])[0]
        now = B3 - 3_000
        try w.advance(to: now)
        while try w.cascadeAhead(maxEntries: 1024) {}
        #expect(throws: Never.self) { try w.cancel(id) }
    }
}
