import ChimeStore
import ChimeTestSupport
import Foundation
import Testing

@testable import ChimeWheel

/// A large fire read ahead of its millisecond (`prepareNextFire`) hands over exactly what
/// the fire would have read then: each message once, on time, in publish order; a slot
/// changed after it was read is read again.
@Suite struct ReadAheadTests {
    /// A level-3 boundary of the 64-slot wheel (64^3 ms), so the slots below are aligned.
    static let base: Int64 = (1_800_000_000_000 / 262_144 + 1) * 262_144

    private func open(_ dir: TemporaryDirectory, _ destination: RecordingDestination) throws -> TimingWheel {
        let log = try TimerLog.open(directory: dir.path + "/timer", configuration: LogConfiguration(durability: .never), logger: testLogger)
        return try TimingWheel(log: log, destination: destination, logger: testLogger)
    }

    private func burst(_ n: Int, dueAt: Int64, now: Int64, tag: String = "m") -> [ScheduledMessage] {
        (0..<n).map { ScheduledMessage(dueAt: dueAt, publishedAt: now, body: Array("\(tag)\($0)".utf8)) }
    }

    @Test func aBurstReadAheadWhileStillOnAHigherLevelFiresOnceInPublishOrderAtItsMillisecond() throws {
        let dir = TemporaryDirectory()
        let dest = RecordingDestination()
        let wheel = try open(dir, dest)
        var now = Self.base + 100
        dest.clock = { now }
        try wheel.advance(to: now)
        let due = Self.base + 8_192 + 777
        let ids = try wheel.schedule(burst(2_000, dueAt: due, now: now))
        try wheel.cancel(ids[10])
        #expect(wheel.nextPreparation(lead: 500, minEntries: 1_000) == due - 500)
        #expect(!wheel.prepareNextFire(now: due - 501, lead: 500, minEntries: 1_000), "not yet")
        #expect(wheel.prepareNextFire(now: due - 500, lead: 500, minEntries: 1_000))
        #expect(wheel.nextPreparation(lead: 500, minEntries: 1_000) == nil && !wheel.prepareNextFire(now: due - 400, lead: 500, minEntries: 1_000), "read once")
        #expect(dest.fired.isEmpty, "reading ahead hands nothing over")

        now = due - 1
        try wheel.advance(to: now)
        #expect(dest.fired.isEmpty && wheel.occupiedSlots[0] == 1, "moved down whole, not yet due")
        now = due
        try wheel.advance(to: now)
        #expect(wheel.firesReadAhead == 1, "the fire used what was read ahead")
        #expect(dest.fired.map(\.id) == ids.filter { $0 != ids[10] }, "each once, in publish order, the cancelled one dropped")
        #expect(dest.fired.allSatisfy { $0.at == due })
        #expect(wheel.pendingCount == 0)
        try wheel.log.close()
        let again = try open(dir, dest)
        try again.advance(to: due + 10)
        #expect(dest.fired.count == ids.count - 1, "nothing fires again after a reopen")
    }

    @Test func aSlotChangedAfterItWasReadAheadHasOnlyItsNewEntriesReadAtTheFire() throws {
        for change in ["schedule", "cancel"] {
            let dir = TemporaryDirectory()
            let dest = RecordingDestination()
            let wheel = try open(dir, dest)
            var now = Self.base + 100
            dest.clock = { now }
            try wheel.advance(to: now)
            let due = Self.base + 8_192 + 777
            var ids = try wheel.schedule(burst(1_500, dueAt: due, now: now))
            #expect(wheel.prepareNextFire(now: due - 100, lead: 500, minEntries: 1_000))
            var expected = ids
            if change == "schedule" {
                let late = try wheel.schedule(burst(3, dueAt: due, now: now, tag: "late"))
                ids += late
                expected = ids
            } else {
                try wheel.cancel(ids[700])
                expected.remove(at: 700)
            }
            now = due
            try wheel.advance(to: now)
            #expect(wheel.firesReadAhead == 1, "\(change): only what was added is read at the fire")
            #expect(dest.fired.map(\.id) == expected, "\(change): what the slot holds at its fire, once each")
        }
    }

    @Test func aSlotThatNoLongerMovesDownWholeIsReadAgainByItsFire() throws {
        let dir = TemporaryDirectory()
        let dest = RecordingDestination()
        let wheel = try open(dir, dest)
        var now = Self.base + 100
        dest.clock = { now }
        try wheel.advance(to: now)
        let due = Self.base + 8_192 + 777
        let ids = try wheel.schedule(burst(1_500, dueAt: due, now: now))
        #expect(wheel.prepareNextFire(now: due - 100, lead: 500, minEntries: 1_000))
        // One due a millisecond later in the same higher slot: it cascades entry by entry,
        // and the burst's level-0 list is links now.
        let later = try wheel.schedule(burst(1, dueAt: due + 1, now: now, tag: "later"))
        now = due
        try wheel.advance(to: now)
        #expect(wheel.firesReadAhead == 0, "read again at the fire")
        #expect(dest.fired.map(\.id) == ids)
        now = due + 1
        try wheel.advance(to: now)
        #expect(dest.fired.map(\.id) == ids + later)
    }

    @Test func aSmallOrMixedSlotIsNotReadAhead() throws {
        let dir = TemporaryDirectory()
        let dest = RecordingDestination()
        let wheel = try open(dir, dest)
        var now = Self.base + 100
        dest.clock = { now }
        try wheel.advance(to: now)
        let due = Self.base + 8_192 + 777
        _ = try wheel.schedule(burst(10, dueAt: due, now: now))
        #expect(wheel.nextPreparation(lead: 500, minEntries: 1_000) == nil, "too few to be worth it")
        _ = try wheel.schedule(burst(2_000, dueAt: due + 1, now: now))
        #expect(wheel.nextPreparation(lead: 500, minEntries: 1_000) == nil, "a slot due over two milliseconds cascades first")
        now = due + 1
        try wheel.advance(to: now)
        #expect(dest.fired.count == 2_010 && wheel.firesReadAhead == 0)
    }
}
