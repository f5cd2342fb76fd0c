import ChimeStore
import ChimeTestSupport
import Foundation
import Testing

@testable import ChimeWheel

/// A slot whose entries all fall due in the same millisecond moves down whole (one
/// `slotMoved` marker) instead of a link per entry; everything else cascades as before.
/// Either way each message fires once, on time, in publish order, also after a reopen.
@Suite struct SlotMoveTests {
    /// A level-3 boundary of the 64-slot wheel (64^3 ms), so the slots below are aligned.
    static let base: Int64 = (1_800_000_000_000 / 262_144 + 1) * 262_144

    private func open(_ dir: TemporaryDirectory, _ destination: RecordingDestination, checkpoints: Bool = false) throws -> TimingWheel {
        let log = try TimerLog.open(directory: dir.path + "/timer", configuration: LogConfiguration(durability: .never), logger: testLogger)
        return try TimingWheel(log: log, checkpointPath: checkpoints ? dir.file("wheel.checkpoint") : nil, destination: destination, logger: testLogger)
    }

    private func burst(_ n: Int, dueAt: Int64, now: Int64) -> [ScheduledMessage] {
        (0..<n).map { ScheduledMessage(dueAt: dueAt, publishedAt: now, body: Array("m\($0)".utf8)) }
    }

    @Test func aBurstDueAtOneInstantMovesDownWholeAndFiresOnceInPublishOrder() throws {
        let dir = TemporaryDirectory()
        let dest = RecordingDestination()
        var wheel = try open(dir, dest)
        var now = Self.base + 100
        dest.clock = { now }
        try wheel.advance(to: now)
        // Two level-2 slots ahead: placed on level 2, to be moved twice (level 2 → 1 → 0).
        let due = Self.base + 8_192 + 777
        let ids = try wheel.schedule(burst(3_000, dueAt: due, now: now))
        let cancelled = [ids[0], ids[1_500], ids[2_999]]
        for id in cancelled { try wheel.cancel(id) }
        #expect(wheel.occupiedSlots[2] == 1)

        // Up to the millisecond before: the list has moved down to level 0, nothing fired.
        now = due - 1
        try wheel.advance(to: now)
        #expect(dest.fired.isEmpty)
        #expect(wheel.occupiedSlots == [1, 0, 0, 0, 0, 0, 0, 0])
        #expect(wheel.pendingCount == 2_997)
        let logKinds = try timerLogKinds(wheel)
        let links = logKinds.filter { $0 == .link }.count
        let moves = logKinds.filter { $0 == .slotMoved }.count
        #expect(links == 0, "no entry was linked again")
        #expect(moves == 2)

        // A reopen replays the moves into the same state.
        let before = WheelSnapshot(wheel)
        try wheel.log.close()
        wheel = try open(dir, dest)
        #expect(WheelSnapshot(wheel) == before)

        now = due
        try wheel.advance(to: now)
        let fired = dest.fired
        #expect(fired.map(\.id) == ids.filter { !cancelled.contains($0) }, "each once, in publish order, cancelled ones dropped")
        #expect(fired.allSatisfy { $0.at == due })
        #expect(wheel.pendingCount == 0)
        try wheel.log.close()
        wheel = try open(dir, dest)
        try wheel.advance(to: due + 10)
        #expect(dest.fired.count == fired.count, "nothing fires again after a reopen")
    }

    @Test func cancelAndRescheduleFindMessagesInAMovedList() throws {
        let dir = TemporaryDirectory()
        let dest = RecordingDestination()
        let wheel = try open(dir, dest)
        var now = Self.base + 100
        dest.clock = { now }
        try wheel.advance(to: now)
        let due = Self.base + 8_192 + 777
        let ids = try wheel.schedule(burst(100, dueAt: due, now: now))
        now = due - 1
        try wheel.advance(to: now)
        #expect(wheel.occupiedSlots == [1, 0, 0, 0, 0, 0, 0, 0], "moved down to level 0")
        try wheel.cancel(ids[5])
        #expect((#expect(throws: WheelError.self) { try wheel.cancel(ids[5]) })?.code == .notPending)
        let moved = try wheel.reschedule(ids[6], to: due + 5)
        #expect(wheel.pendingCount == 99)
        for t in [due, due + 5] {
            now = t
            try wheel.advance(to: now)
        }
        let expected = ids.filter { $0 != ids[5] && $0 != ids[6] }
        #expect(dest.fired.map(\.id) == expected + [moved])
        #expect(dest.fired.allSatisfy { $0.at == $0.message.dueAt })
    }

    @Test func cascadingAheadMovesAWholeSlotInOneStep() throws {
        let dir = TemporaryDirectory()
        let dest = RecordingDestination()
        var wheel = try open(dir, dest)
        var now = Self.base + 4_096 + 100  // the level-2 slot at base + 8,192 is the next one
        dest.clock = { now }
        try wheel.advance(to: now)
        let due = Self.base + 8_192 + 3_000
        let ids = try wheel.schedule(burst(500, dueAt: due, now: now))
        #expect(wheel.occupiedSlots[1] == 1, "due in the next level-2 slot: placed one level down")

        // Steps of 10 entries, but the slot goes in one.
        now = due - 64 - 10  // within the level-1 slot before the one holding `due`
        try wheel.advance(to: now)
        #expect(try wheel.cascadeAhead(maxEntries: 10) == false)
        #expect(wheel.occupiedSlots[1] == 0 && wheel.occupiedSlots[0] == 1)
        let movesAhead = try timerLogKinds(wheel).filter { $0 == .slotMovedAhead }.count
        #expect(movesAhead == 1)
        let before = WheelSnapshot(wheel)
        try wheel.log.close()
        wheel = try open(dir, dest)
        #expect(WheelSnapshot(wheel) == before)

        // A message scheduled for the same instant now joins the moved list.
        let late = try wheel.schedule([ScheduledMessage(dueAt: due, publishedAt: now, body: Array("late".utf8))])
        now = due
        try wheel.advance(to: now)
        #expect(dest.fired.map(\.id) == ids + late)
        #expect(dest.fired.allSatisfy { $0.at == due })
    }

    /// Entries due at different times, a target slot already in use, and a slot loaded
    /// from a checkpoint (whose due-time bounds are not kept) cascade entry by entry.
    @Test func whatCannotMoveWholeCascadesEntryByEntry() throws {
        let dir = TemporaryDirectory()
        let dest = RecordingDestination()
        var wheel = try open(dir, dest, checkpoints: true)
        var now = Self.base + 100
        dest.clock = { now }
        try wheel.advance(to: now)
        // Two due times in one level-1 slot of the next level-2 span.
        let mixed = try wheel.schedule(burst(10, dueAt: Self.base + 4_096 + 70, now: now) + burst(10, dueAt: Self.base + 4_096 + 71, now: now))
        // One due time, but its wheel reopens from a checkpoint before the slot is processed.
        let loaded = try wheel.schedule(burst(10, dueAt: Self.base + 4_096 + 700, now: now))
        try wheel.checkpoint()
        try wheel.log.close()
        wheel = try open(dir, dest, checkpoints: true)
        #expect(wheel.recovery.fromCheckpoint)
        // One due time (5,096 ms into the span, in the level-1 slot starting at 5,056) with
        // known bounds; later, its level-0 slot is taken by a message placed there first.
        let moving = try wheel.schedule(burst(10, dueAt: Self.base + 5_096, now: now))
        for t in [Self.base + 4_166, Self.base + 4_167, Self.base + 4_796, Self.base + 5_002] {
            now = t
            try wheel.advance(to: now)
        }
        let direct = try wheel.schedule(burst(1, dueAt: Self.base + 5_096, now: now))
        #expect(wheel.occupiedSlots[0] == 1 && wheel.occupiedSlots[1] == 1, "the late one sits in level 0, the others above it")

        while try wheel.cascadeAhead(maxEntries: 1_024) {}
        now = Self.base + 5_096
        try wheel.advance(to: now)
        let logKinds = try timerLogKinds(wheel)
        let links = logKinds.filter { $0 == .link }.count
        let moves = logKinds.filter { $0 == .slotMoved || $0 == .slotMovedAhead }.count
        #expect(links == 20 + 10 + 10, "mixed, loaded and blocked slots were linked entry by entry")
        #expect(moves == 0)
        #expect(Set(dest.fired.map(\.id)) == Set(mixed + loaded + direct + moving))
        #expect(dest.fired.count == 41)
        #expect(inDueThenIDOrder(dest.fired))
        #expect(dest.fired.allSatisfy { $0.at == $0.message.dueAt }, "each at its millisecond")
    }
}
