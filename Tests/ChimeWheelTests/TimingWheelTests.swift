import ChimeStore
import ChimeTestSupport
import Foundation
import Testing

@testable import ChimeWheel

/// Records every hand-over with the time it happened at. Locked: the firing loop's actor
/// delivers while the test reads.
final class RecordingDestination: FireDestination, @unchecked Sendable {
    struct Delivery {
        var sequence: UInt64
        var at: Int64
        var messages: [FiredMessage]
    }
    private let lock = NSLock()
    private var _deliveries: [Delivery] = []
    var clock: () -> Int64 = { 0 }
    var deliveries: [Delivery] { lock.withLock { _deliveries } }
    var lastFireSequence: UInt64? { deliveries.last?.sequence }
    var fired: [(id: Int64, at: Int64, message: ScheduledMessage)] {
        deliveries.flatMap { d in d.messages.map { ($0.id, d.at, $0.message) } }
    }

    func deliver(_ messages: [FiredMessage], fireSequence: UInt64) throws {
        if let last = lastFireSequence { precondition(fireSequence > last, "hand-overs arrive in sequence") }
        let at = clock()
        lock.withLock { _deliveries.append(Delivery(sequence: fireSequence, at: at, messages: messages)) }
    }
}

@Suite struct TimingWheelTests {
    static let epoch: Int64 = 1_800_000_000_000

    private func open(
        _ dir: TemporaryDirectory, _ destination: RecordingDestination, geometry: WheelGeometry = .slots64, checkpoint: Bool = false,
        segmentBytes: Int = 1 << 20
    ) throws -> TimingWheel {
        let log = try TimerLog.open(directory: dir.path + "/timer", configuration: LogConfiguration(segmentBytes: segmentBytes, durability: .never), logger: testLogger)
        return try TimingWheel(
            log: log, geometry: geometry, checkpointPath: checkpoint ? dir.file("wheel.checkpoint") : nil,
            destination: destination, reclaimChunkBytes: 4096, compactionMinimumBytes: 4096, logger: testLogger)
    }

    private func message(_ due: Int64, _ n: Int) -> ScheduledMessage {
        ScheduledMessage(dueAt: due, publishedAt: Self.epoch, key: Array("k\(n % 5)".utf8), body: Array("m\(n)".utf8))
    }

    @Test func firesAtTheDueMillisecondInPublishOrder() throws {
        let dir = TemporaryDirectory()
        let dest = RecordingDestination()
        let wheel = try open(dir, dest)
        var now = Self.epoch
        dest.clock = { now }
        try wheel.advance(to: now)
        let ids = try wheel.schedule([message(now + 30, 0), message(now + 5, 1), message(now + 30, 2), message(now + 5_000, 3), message(now + 30, 4)])
        #expect(wheel.pendingCount == 5)
        #expect(wheel.nextDue != nil)
        // Per-level stats: +5 ms and the two +30 ms land on level 0; +5 s differs from now
        // at level 2 but falls in its very next slot, so it goes one level down (level 1's
        // next page), where cascading ahead would have moved it.
        #expect(wheel.geometry.level(now: now, due: now + 5_000) == 2)
        #expect(wheel.occupiedSlots == [2, 1, 0, 0, 0, 0, 0, 0])
        for t in stride(from: now, through: now + 6_000, by: 1) {
            now = t
            try wheel.advance(to: t)
        }
        let fired = dest.fired
        #expect(fired.map(\.id) == [ids[1], ids[0], ids[2], ids[4], ids[3]])
        #expect(fired.allSatisfy { $0.at == $0.message.dueAt }, "each at its due millisecond, not before, not after")
        #expect(wheel.pendingCount == 0)
        #expect(wheel.nextDue == nil)
        #expect(wheel.occupiedSlots.allSatisfy { $0 == 0 })
    }

    @Test func cancelledMessagesNeverFireAndFiredOnesCannotBeCancelled() throws {
        let dir = TemporaryDirectory()
        let dest = RecordingDestination()
        let wheel = try open(dir, dest)
        try wheel.advance(to: Self.epoch)
        let ids = try wheel.schedule((0..<6).map { message(Self.epoch + 100 + Int64($0) * 70_000, $0) })
        try wheel.cancel(ids[1])
        try wheel.cancel(ids[4])
        #expect(wheel.pendingCount == 4)
        try wheel.advance(to: Self.epoch + 1_000_000)
        #expect(dest.fired.map(\.id) == [ids[0], ids[2], ids[3], ids[5]])
        #expect((#expect(throws: WheelError.self) { try wheel.cancel(ids[0]) })?.code == .notPending)
        #expect((#expect(throws: WheelError.self) { try wheel.cancel(12_345) })?.code == .unknownMessage)
    }

    @Test func timeNeverMovesBackwards() throws {
        let dir = TemporaryDirectory()
        let dest = RecordingDestination()
        let wheel = try open(dir, dest)
        try wheel.advance(to: Self.epoch + 10_000)
        try wheel.schedule([message(Self.epoch + 10_050, 0)])
        try wheel.advance(to: Self.epoch)  // a clock step back
        #expect(wheel.time == Self.epoch + 10_000)
        #expect(dest.fired.isEmpty)
        try wheel.advance(to: Self.epoch + 10_050)
        #expect(dest.fired.count == 1)
        // An overdue schedule fires at the next advance, once.
        try wheel.schedule([message(Self.epoch, 1)])
        try wheel.advance(to: Self.epoch + 10_050)
        try wheel.advance(to: Self.epoch + 10_051)
        #expect(dest.fired.count == 2)
    }

    /// The property the wheel exists for, on seeded random schedules: delays from 0 ms to
    /// 10 years, bursts in the same millisecond, cancels, time driven in random steps (and
    /// with restarts that replay the log). Every message not cancelled fires exactly once,
    /// at the first advance whose time reaches its due time, in (dueAt, publish) order.
    /// Seeds 5-8 also cascade upcoming slots ahead in small random steps between advances,
    /// reschedule, and checkpoint, reclaim and compact (small segments) every round.
    @Test(arguments: [
        (UInt64(1), WheelGeometry.slots64, false), (2, .slots256, false), (3, .slots64, true), (4, .slots256, true),
        (5, .slots64, false), (6, .slots256, false), (7, .slots64, true), (8, .slots256, true),
    ])
    func randomSchedulesFireExactlyOnceInOrder(seed: UInt64, geometry: WheelGeometry, restarts: Bool) throws {
        let ahead = seed > 4
        let dir = TemporaryDirectory()
        let dest = RecordingDestination()
        func reopen() throws -> TimingWheel { try open(dir, dest, geometry: geometry, checkpoint: ahead, segmentBytes: ahead ? 8192 : 1 << 20) }
        var wheel = try reopen()
        var compacted = 0
        var rng = SplitMix64(seed: seed)
        var now = Self.epoch
        dest.clock = { now }
        try wheel.advance(to: now)
        var due: [Int64: Int64] = [:]
        var cancelled = Set<Int64>()
        let tenYears: Int64 = 10 * 365 * 86_400_000
        for round in 0..<60 {
            let count = Int(rng.next() % 40) + 1
            let burst = now + Int64(rng.next() % 5_000)
            let batch: [ScheduledMessage] = (0..<count).map { n in
                let delay: Int64
                switch rng.next() % 6 {
                case 0: delay = 0
                case 1: delay = Int64(rng.next() % 100)
                case 2: delay = Int64(rng.next() % 100_000)
                case 3: delay = Int64(rng.next() % (30 * 86_400_000))
                case 4: delay = Int64(rng.next() % UInt64(tenYears))
                default: return message(burst, round * 100 + n)  // many in one millisecond
                }
                return message(now + delay, round * 100 + n)
            }
            let ids = try wheel.schedule(batch)
            for (id, m) in zip(ids, batch) { due[id] = m.dueAt }
            if rng.next() % 3 == 0, let victim = ids.randomElement(using: &rng), due[victim]! > now {
                try wheel.cancel(victim)
                cancelled.insert(victim)
            }
            if ahead {
                for _ in 0..<Int(rng.next() % 4) where try wheel.cascadeAhead(maxEntries: Int(rng.next() % 6) + 1) {}
                if rng.next() % 3 == 0, let victim = ids.randomElement(using: &rng), due[victim]! > now, !cancelled.contains(victim) {
                    let to = now + Int64(rng.next() % 200_000)
                    let moved = try wheel.reschedule(victim, dueAt: due[victim]!, to: to)
                    cancelled.insert(victim)
                    due[moved] = to
                }
                try wheel.checkpoint()
                try wheel.reclaim()
                while try wheel.compact() { compacted += 1 }
            }
            // Steps from 1 ms to a year.
            let step = Int64(pow(10.0, Double(rng.next() % 1100) / 100))
            now += step
            try wheel.advance(to: now)
            wheel.checkInvariants()
            if !ahead {
                // Live operations and replay change the state through the same transition.
                #expect(ReplayComparable(wheel.state) == ReplayComparable(try wheel.stateReplayedFromLog()), "round \(round)")
            }
            if restarts && round % 10 == 9 {
                try wheel.log.close()
                wheel = try reopen()
                try wheel.advance(to: now)
            }
        }
        now += tenYears + 86_400_000  // past every due time scheduled
        try wheel.advance(to: now)

        let fired = dest.fired
        let firedIDs = Set(fired.map(\.id))
        let expected = Set(due.keys).subtracting(cancelled)
        #expect(firedIDs.count == fired.count, "nothing fires twice")
        #expect(firedIDs.subtracting(expected).isEmpty, "only scheduled, uncancelled messages fire")
        #expect(expected.subtracting(firedIDs).sorted().prefix(5).map { due[$0]! } == [], "everything not cancelled fires")
        #expect(fired.allSatisfy { $0.at >= $0.message.dueAt }, "never early")
        let inOrder = inDueThenIDOrder(fired)
        #expect(inOrder, "due order, then publish order")
        #expect(wheel.pendingCount == 0)
        if ahead { #expect(compacted > 0, "compaction ran") }
    }

    /// A crash after the destination applied a hand-over but before the "fired" marker:
    /// the reopened wheel completes the marker instead of handing over again.
    @Test func aCrashBetweenHandOverAndMarkerFiresNothingTwice() throws {
        let dir = TemporaryDirectory()
        let dest = RecordingDestination()
        var wheel = try open(dir, dest)
        try wheel.advance(to: Self.epoch)
        try wheel.schedule((0..<10).map { message(Self.epoch + 10 + Int64($0 % 3), $0) })
        // Everything the wheel writes after the first hand-over is lost, as if the process
        // died right after `deliver` returned: reproduce by cutting the log back.
        let endBefore = wheel.log.endOffset
        try wheel.advance(to: Self.epoch + 10)
        #expect(dest.deliveries.count == 1)
        try wheel.log.close()
        truncateFile(dir.file("timer/00000000000000000000.timer"), to: endBefore)
        try? FileManager.default.removeItem(atPath: dir.file("timer/00000000000000000000.index"))

        wheel = try open(dir, dest)
        try wheel.advance(to: Self.epoch + 100)
        #expect(dest.fired.count == 10)
        #expect(Set(dest.fired.map(\.id)).count == 10, "the first hand-over was not repeated")
        // The two slots still due at +100 are handed over together, as one.
        #expect(dest.deliveries.map(\.sequence) == [1, 2])
    }

    /// Several slots due at one advance go in one hand-over; a crash after the destination
    /// applied it but before the slots' markers (the hand-over marker, synced before the
    /// delivery, survives) completes every one of those markers and delivers nothing twice.
    @Test func aMultiSlotHandOverIsCompletedWhole() throws {
        let dir = TemporaryDirectory()
        let dest = RecordingDestination()
        var wheel = try open(dir, dest)
        try wheel.advance(to: Self.epoch)
        try wheel.schedule((0..<12).map { message(Self.epoch + 10 + Int64($0 % 4), $0) })
        try wheel.schedule([message(Self.epoch + 50, 99)])
        try wheel.advance(to: Self.epoch + 20)
        #expect(dest.deliveries.count == 1)
        #expect(dest.fired.count == 12)
        // Cut the log just after the hand-over marker: the four "fired" markers are lost.
        var cut: Int64 = -1
        var at = wheel.log.startOffset
        while let e = try wheel.log.read(from: at, maxBytes: 1).first {
            if e.kind == .handOver { cut = e.position + Int64(e.bytes.count) }
            at = e.position + Int64(e.bytes.count)
        }
        #expect(cut > 0)
        try wheel.log.close()
        truncateFile(dir.file("timer/00000000000000000000.timer"), to: cut)
        try? FileManager.default.removeItem(atPath: dir.file("timer/00000000000000000000.index"))

        wheel = try open(dir, dest)
        try wheel.advance(to: Self.epoch + 100)
        #expect(dest.fired.count == 13)
        #expect(Set(dest.fired.map(\.id)).count == 13, "the first hand-over was not repeated")
        #expect(dest.deliveries.map(\.sequence) == [1, 2])
        #expect(wheel.pendingCount == 0)
    }

    /// A hand-over begun before a crash but applied by nobody (or, in the broker, by only
    /// some of its destinations) is made again over exactly the slots it had: slots that
    /// fell due since go in the next one, or a destination skipping the hand-over's number
    /// would drop them.
    @Test func aHandOverBegunBeforeACrashKeepsItsSlots() throws {
        let dir = TemporaryDirectory()
        let dest = RecordingDestination()
        var wheel = try open(dir, dest)
        try wheel.advance(to: Self.epoch)
        try wheel.schedule([message(Self.epoch + 10, 0), message(Self.epoch + 11, 1), message(Self.epoch + 50, 2)])
        try wheel.advance(to: Self.epoch + 20)
        #expect(dest.deliveries.map(\.sequence) == [1])
        // Lose the slots' markers and the delivery: the crash came right after the hand-over marker.
        var cut: Int64 = -1
        var at = wheel.log.startOffset
        while let e = try wheel.log.read(from: at, maxBytes: 1).first {
            if e.kind == .handOver { cut = e.position + Int64(e.bytes.count) }
            at = e.position + Int64(e.bytes.count)
        }
        try wheel.log.close()
        truncateFile(dir.file("timer/00000000000000000000.timer"), to: cut)
        try? FileManager.default.removeItem(atPath: dir.file("timer/00000000000000000000.index"))
        let fresh = RecordingDestination()

        wheel = try open(dir, fresh)
        #expect(fresh.deliveries.map { $0.messages.count } == [2], "redone as the wheel opens, before anything new can join it")
        try wheel.advance(to: Self.epoch + 100)
        #expect(fresh.deliveries.map(\.sequence) == [1, 2])
        #expect(fresh.deliveries.map { $0.messages.count } == [2, 1], "hand-over 1 keeps its two slots; the third message is hand-over 2")
    }

    /// Memory is bounded by the geometry alone, whatever is pending.
    @Test func wheelStateDoesNotGrowWithPendingMessages() throws {
        let dir = TemporaryDirectory()
        let dest = RecordingDestination()
        let wheel = try open(dir, dest)
        try wheel.advance(to: Self.epoch)
        let empty = wheel.stateBytes
        var rng = SplitMix64(seed: 7)
        let body: [UInt8] = Array("x".utf8)
        for _ in 0..<100 {
            let batch = (0..<10_000).map { _ in
                ScheduledMessage(dueAt: Self.epoch + 1_000 + Int64(rng.next() % (30 * 86_400_000)), publishedAt: Self.epoch, body: body)
            }
            try wheel.schedule(batch)
        }
        #expect(wheel.pendingCount == 1_000_000)
        #expect(wheel.stateBytes > empty)
        #expect(wheel.stateBytes <= 8 * 2 * 64 * 48 + 16 * 8, "one 48-byte slot per slot of 8 levels x 2 pages x 64, and the bitmaps")
    }

    /// A wheel holds slot pages only while they have pending entries: an idle partition's
    /// wheel costs its bitmaps, not its geometry's slots.
    @Test func slotPagesAreAllocatedWhenUsedAndReleasedWhenEmptied() throws {
        let dir = TemporaryDirectory()
        let dest = RecordingDestination()
        let wheel = try open(dir, dest)
        try wheel.advance(to: Self.epoch)
        #expect(wheel.slotPagesInUse == 0)
        let idle = wheel.stateBytes
        var rng = SplitMix64(seed: 11)
        let batch = (0..<5_000).map { _ in
            ScheduledMessage(dueAt: Self.epoch + 1 + Int64(rng.next() % (10 * 86_400_000)), publishedAt: Self.epoch, body: [1])
        }
        try wheel.schedule(batch)
        #expect(wheel.slotPagesInUse > 0 && wheel.stateBytes > idle)
        try wheel.advance(to: Self.epoch + 10 * 86_400_000 + 1)
        #expect(dest.fired.count == 5_000)
        #expect(wheel.pendingCount == 0)
        #expect(wheel.slotPagesInUse == 0, "every page released once its last slot fired")
        #expect(wheel.stateBytes == idle)
        // And pages come back for what is scheduled next.
        try wheel.schedule([ScheduledMessage(dueAt: Self.epoch + 11 * 86_400_000, publishedAt: Self.epoch, body: [2])])
        #expect(wheel.slotPagesInUse >= 1 && wheel.pendingCount == 1)
    }

    /// Opens from a checkpoint replay only what followed it, and the outcome is the same as
    /// with a full replay; a damaged checkpoint, or one the log cannot honour, falls back to
    /// the full replay.
    @Test(arguments: ["valid", "garbage", "ahead of the log"])
    func checkpointsShortenReplayWithoutChangingTheOutcome(kind: String) throws {
        let dir = TemporaryDirectory()
        let dest = RecordingDestination()
        var now = Self.epoch
        dest.clock = { now }
        var wheel = try open(dir, dest, checkpoint: true)
        try wheel.advance(to: now)
        var rng = SplitMix64(seed: 11)
        var ids: [Int64] = []
        for round in 0..<20 {
            ids += try wheel.schedule((0..<50).map { message(now + Int64(rng.next() % 10_000_000), round * 50 + $0) })
            now += Int64(rng.next() % 200_000)
            try wheel.advance(to: now)
        }
        try wheel.checkpoint()
        let afterCheckpoint = try wheel.schedule([message(now + 10, 9_998), message(now + 5_000_000, 9_999)])
        ids += afterCheckpoint
        try wheel.cancel(afterCheckpoint[1])
        let pending = wheel.pendingCount
        try wheel.log.close()

        switch kind {
        case "garbage":
            try Data([1, 2, 3, 4]).write(to: URL(fileURLWithPath: dir.file("wheel.checkpoint")))
        case "ahead of the log":
            var bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: dir.file("wheel.checkpoint"))))
            bytes.withUnsafeMutableBytes { LittleEndian.store(Int64(1) << 40, $0, 16) }
            let crc = bytes.withUnsafeBytes { CRC32C.checksum(UnsafeRawBufferPointer(rebasing: $0[8...])) }
            bytes.withUnsafeMutableBytes { LittleEndian.store(crc, $0, 4) }
            try Data(bytes).write(to: URL(fileURLWithPath: dir.file("wheel.checkpoint")))
        default: break
        }
        wheel = try open(dir, dest, checkpoint: true)
        #expect(wheel.recovery.fromCheckpoint == (kind == "valid"))
        if kind == "valid" {
            #expect(wheel.recovery.replayedEntries == 3, "two messages and a cancel after the checkpoint")
        } else {
            #expect(wheel.recovery.replayedEntries > 1000)
        }
        #expect(wheel.pendingCount == pending)
        now += 20_000_000
        try wheel.advance(to: now)
        let fired = dest.fired.map(\.id)
        #expect(Set(fired).count == fired.count)
        #expect(Set(fired) == Set(ids).subtracting([afterCheckpoint[1]]))
    }
}
