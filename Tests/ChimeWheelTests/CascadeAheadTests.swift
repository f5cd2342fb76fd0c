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

    struct State: Equatable {
        var pending: Int
        var occupied: [Int]
        var nextDue: Int64?
        var live: [Int64: Int32]
    }

    private func state(_ w: TimingWheel) -> State {
        State(pending: w.pendingCount, occupied: w.occupiedSlots, nextDue: w.nextDue, live: w.liveChunks)
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
                let before = state(wheel)
                try wheel.log.close()
                wheel = try open(dir, dest)
                #expect(wheel.recovery.fromCheckpoint)
                #expect(state(wheel) == before)
                // Cancel one already moved down (the newest) and one not yet moved (the oldest).
                for id in [ids[499], ids[1]] {
                    try wheel.cancel(id)
                    cancelled.insert(id)
                    #expect(throws: StoreError.self) { try wheel.cancel(id) }
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
        let inOrder = zip(fired, fired.dropFirst()).allSatisfy { a, b in
            a.message.dueAt < b.message.dueAt || (a.message.dueAt == b.message.dueAt && a.id < b.id)
        }
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
}
