import ChimeStore
import ChimeTestSupport
import Foundation
import Testing

@testable import ChimeWheel

/// A large fire read ahead of its millisecond (`prepareNextFire`) hands over exactly what
/// the fire would have read then: each message once, on time, in publish order; entries
/// added to the slot since are read at the fire, anything else makes it read the slot again.
@Suite struct ReadAheadTests {
    /// A level-3 boundary of the 64-slot wheel (64^3 ms), so the slots below are aligned.
    static let base: Int64 = (1_800_000_000_000 / 262_144 + 1) * 262_144
    /// Two level-2 slots ahead of the start: placed on level 2, moved down twice.
    static let due = base + 8_192 + 777

    /// A wheel on a fresh log and a recording destination, driven by hand from `base + 100`.
    private final class Rig {
        let dir = TemporaryDirectory()
        let dest = RecordingDestination()
        var wheel: TimingWheel
        var now = ReadAheadTests.base + 100

        init() throws {
            wheel = try Self.open(dir, dest)
            dest.clock = { [unowned self] in self.now }
            try wheel.advance(to: now)
        }

        static func open(_ dir: TemporaryDirectory, _ destination: RecordingDestination) throws -> TimingWheel {
            let log = try TimerLog.open(directory: dir.path + "/timer", configuration: LogConfiguration(durability: .never), logger: testLogger)
            return try TimingWheel(log: log, destination: destination, logger: testLogger)
        }

        func schedule(_ n: Int, dueAt: Int64 = ReadAheadTests.due, tag: String = "m") throws -> [Int64] {
            try wheel.schedule((0..<n).map { ScheduledMessage(dueAt: dueAt, publishedAt: now, body: Array("\(tag)\($0)".utf8)) })
        }

        func advance(to time: Int64) throws {
            now = time
            try wheel.advance(to: time)
        }
    }

    private var due: Int64 { Self.due }

    @Test func aBurstReadAheadWhileStillOnAHigherLevelFiresOnceInPublishOrderAtItsMillisecond() throws {
        let rig = try Rig()
        let wheel = rig.wheel
        let ids = try rig.schedule(2_000)
        try wheel.cancel(ids[10])
        #expect(wheel.nextPreparation(lead: 500, minEntries: 1_000) == due - 500)
        #expect(!wheel.prepareNextFire(now: due - 501, lead: 500, minEntries: 1_000), "not yet")
        #expect(wheel.prepareNextFire(now: due - 500, lead: 500, minEntries: 1_000))
        #expect(wheel.nextPreparation(lead: 500, minEntries: 1_000) == nil && !wheel.prepareNextFire(now: due - 400, lead: 500, minEntries: 1_000), "read once")
        #expect(rig.dest.fired.isEmpty, "reading ahead hands nothing over")

        try rig.advance(to: due - 1)
        #expect(rig.dest.fired.isEmpty && wheel.occupiedSlots[0] == 1, "moved down whole, not yet due")
        try rig.advance(to: due)
        #expect(wheel.firesReadAhead == 1, "the fire used what was read ahead")
        #expect(rig.dest.fired.map(\.id) == ids.filter { $0 != ids[10] }, "each once, in publish order, the cancelled one dropped")
        #expect(rig.dest.fired.allSatisfy { $0.at == due })
        #expect(wheel.pendingCount == 0)
        try wheel.log.close()
        let again = try Rig.open(rig.dir, rig.dest)
        try again.advance(to: due + 10)
        #expect(rig.dest.fired.count == ids.count - 1, "nothing fires again after a reopen")
    }

    @Test func aSlotChangedAfterItWasReadAheadHasOnlyItsNewEntriesReadAtTheFire() throws {
        for change in ["schedule", "cancel"] {
            let rig = try Rig()
            var ids = try rig.schedule(1_500)
            #expect(rig.wheel.prepareNextFire(now: due - 100, lead: 500, minEntries: 1_000))
            var expected = ids
            if change == "schedule" {
                ids += try rig.schedule(3, tag: "late")
                expected = ids
            } else {
                try rig.wheel.cancel(ids[700])
                expected.remove(at: 700)
            }
            try rig.advance(to: due)
            #expect(rig.wheel.firesReadAhead == 1, "\(change): only what was added is read at the fire")
            #expect(rig.dest.fired.map(\.id) == expected, "\(change): what the slot holds at its fire, once each")
        }
    }

    @Test func aSlotThatNoLongerMovesDownWholeIsReadAgainByItsFire() throws {
        let rig = try Rig()
        let ids = try rig.schedule(1_500)
        #expect(rig.wheel.prepareNextFire(now: due - 100, lead: 500, minEntries: 1_000))
        // One due a millisecond later in the same higher slot: it cascades entry by entry,
        // and the burst's level-0 list is links now.
        let later = try rig.schedule(1, dueAt: due + 1, tag: "later")
        try rig.advance(to: due)
        #expect(rig.wheel.firesReadAhead == 0, "read again at the fire")
        #expect(rig.dest.fired.map(\.id) == ids)
        try rig.advance(to: due + 1)
        #expect(rig.dest.fired.map(\.id) == ids + later)
    }

    @Test func aSmallOrMixedSlotIsNotReadAhead() throws {
        let rig = try Rig()
        _ = try rig.schedule(10)
        #expect(rig.wheel.nextPreparation(lead: 500, minEntries: 1_000) == nil, "too few to be worth it")
        _ = try rig.schedule(2_000, dueAt: due + 1)
        #expect(rig.wheel.nextPreparation(lead: 500, minEntries: 1_000) == nil, "a slot due over two milliseconds cascades first")
        try rig.advance(to: due + 1)
        #expect(rig.dest.fired.count == 2_010 && rig.wheel.firesReadAhead == 0)
    }
}
