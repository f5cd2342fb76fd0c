import ChimeStore
import ChimeTestSupport
import Foundation
import Testing

@testable import ChimeWheel

/// Compaction, reclaim and the writes around them keep every live message, and fire each
/// once, across crashes at any write: each doc comment names the way it once went wrong.
@Suite struct CompactionCrashSafetyTests {
    static let epoch: Int64 = 1_800_000_000_000

    func open(_ dir: TemporaryDirectory, _ dest: RecordingDestination, _ calls: FileSystemCalls) throws -> TimingWheel {
        let log = try TimerLog.open(
            directory: dir.path + "/timer", configuration: LogConfiguration(segmentBytes: 4096, durability: .always), calls: calls, logger: testLogger)
        return try TimingWheel(
            log: log, checkpointPath: dir.file("wheel.checkpoint"), destination: dest, reclaimChunkBytes: 4096,
            compactionMinimumBytes: 4096, logger: testLogger)
    }

    /// Reschedule = cancel + new message in "one append"; when the active segment has room
    /// for the cancel only, the append takes two writes (roll in between). A crash after the
    /// first leaves the cancel alone: the acknowledged message never fires, nor its replacement.
    @Test(arguments: [1, 2])
    func aRescheduleTornAtASegmentRollCountsAsNeitherPart(extra: Int) throws {
        func script(_ crashAt: Int?) throws -> (writesBefore: Int, others: [Int64], crashed: Bool) {
            let dir = TemporaryDirectory()
            let dest = RecordingDestination()
            let injector = CrashAtWrite(after: crashAt)
            var now = Self.epoch
            dest.clock = { now }
            var wheel = try open(dir, dest, injector.calls)
            try wheel.advance(to: now)
            let a = try wheel.schedule([ScheduledMessage(dueAt: now + 60_000, publishedAt: now, body: [1])])[0]
            // Fill the active segment so that 50 bytes remain: a 48-byte cancel fits, a message does not.
            let used = Int(wheel.log.endOffset - wheel.log.segmentInfos.last!.baseOffset)
            let filler = try wheel.schedule([
                ScheduledMessage(dueAt: now + 1, publishedAt: now, body: [UInt8](repeating: 9, count: 4096 - 50 - 66 - used))
            ])[0]
            try wheel.log.flush()
            let before = injector.writes
            var crashed = false
            func crashAndReopen() throws {
                crashed = true
                try? wheel.log.close()
                wheel = try open(dir, dest, .system)
            }
            do {
                try wheel.reschedule(a, dueAt: now + 60_000, to: now + 90_000)
            } catch {
                try crashAndReopen()
            }
            now += 200_000
            // A crash point past the reschedule falls in the fire (a roll's own writes, the
            // sealed segment's index, happen in the background).
            do {
                try wheel.advance(to: now)
            } catch {
                try crashAndReopen()
                try wheel.advance(to: now)
            }
            let ids = dest.fired.map(\.id)
            #expect(ids.contains(filler))
            return (before, ids.filter { $0 != filler }, crashed)
        }
        let reference = try script(nil)
        #expect(reference.others.count == 1, "the replacement fires")
        let run = try script(reference.writesBefore + extra)
        // Whether or not the reschedule happened, the acknowledged message fires once: as
        // itself or as its replacement.
        #expect(run.others.count == 1, "crash at write \(reference.writesBefore + extra) (crashed: \(run.crashed)): fired \(run.others)")
    }

    /// A cascade torn at a segment roll leaves some links without the slotCleared marker;
    /// after reopening the cascade is redone, so the lower slot holds two links to the same
    /// message (fire dedupes them). Compacting that slot subtracts each message's bytes once
    /// per link: the chunk of the original messages reaches zero while a straggler X in it
    /// is still live, and the reclaim after the next checkpoint deletes X. Run for a
    /// level-2 slot (cascaded into level 1) and a level-3 slot (into level 2).
    @Test(arguments: [
        (span: Int64(4096), slotsAhead: Int64(5), dueInSlot: Int64(100), crashPoints: 6),
        (span: Int64(1 << 18), slotsAhead: Int64(3), dueInSlot: Int64(5 * 4096 + 100), crashPoints: 10),
    ])
    func aTornCascadeThenCompactionKeepsEveryLiveMessage(span: Int64, slotsAhead: Int64, dueInSlot: Int64, crashPoints: Int) throws {
        struct Run { var writesBefore = 0; var lost: [Int64] = []; var twice = 0; var xChunkLive: Int32? = nil; var crashed = false }
        func script(_ crashAt: Int?) throws -> Run {
            var run = Run()
            let dir = TemporaryDirectory()
            let dest = RecordingDestination()
            let injector = CrashAtWrite(after: crashAt)
            var now = Self.epoch
            dest.clock = { now }
            var wheel = try open(dir, dest, injector.calls)
            try wheel.advance(to: now)
            let day: Int64 = 86_400_000
            let x = try wheel.schedule([ScheduledMessage(dueAt: now + 10 * day, publishedAt: now, body: [7])])[0]
            let s = (now & ~(span - 1)) + slotsAhead * span  // a slot start ahead
            let ms = try wheel.schedule((0..<120).map { _ in ScheduledMessage(dueAt: s + dueInSlot, publishedAt: now, body: [1]) })
            // Dead bytes: short delays that fire.
            for _ in 0..<4 {
                try wheel.schedule((0..<100).map { k in ScheduledMessage(dueAt: now + 1 + Int64(k), publishedAt: now, body: [UInt8](repeating: 3, count: 100)) })
            }
            try wheel.advance(to: now + 200)
            now = s - 1
            try wheel.advance(to: now)
            // Pad the active segment so 2,000 bytes remain: the cascade's 120 links (5,760
            // bytes) start in it and go on in a new segment.
            var used = Int(wheel.log.endOffset - wheel.log.segmentInfos.last!.baseOffset)
            var pad: [Int64] = []
            if 4096 - used < 2000 + 67 {  // not enough room to pad: roll first
                pad += try wheel.schedule([ScheduledMessage(dueAt: s + 20 * day, publishedAt: now, body: [UInt8](repeating: 5, count: 4096 - used))])
                used = Int(wheel.log.endOffset - wheel.log.segmentInfos.last!.baseOffset)
            }
            pad += try wheel.schedule([ScheduledMessage(dueAt: s + 20 * day, publishedAt: now, body: [UInt8](repeating: 5, count: 4096 - used - 2000 - 66))])
            try wheel.log.flush()
            run.writesBefore = injector.writes
            now = s + 50
            do {
                try wheel.advance(to: now)  // cascades the 120 messages' slot
            } catch {
                run.crashed = true
                try? wheel.log.close()
                wheel = try open(dir, dest, .system)
                try wheel.advance(to: now)
            }
            if !run.crashed {  // the crash point lies past the cascade: go on with healthy calls
                try? wheel.log.close()
                wheel = try open(dir, dest, .system)
            }
            try wheel.checkpoint()
            _ = try wheel.compact()  // one step, as the firing loop does between checkpoints
            run.xChunkLive = wheel.liveChunks[x >> 12]
            try wheel.checkpoint()
            try wheel.reclaim()
            do { while try wheel.compact() {} } catch {}
            now += 30 * day
            try wheel.advance(to: now)
            let fired = dest.fired.map(\.id)
            let expected = Set([x] + ms + pad)
            run.lost = expected.subtracting(fired).sorted()
            run.twice = fired.count - Set(fired).count
            return run
        }
        let reference = try script(nil)
        #expect(reference.lost.isEmpty && reference.twice == 0)
        for n in reference.writesBefore..<(reference.writesBefore + crashPoints) {
            let run = try script(n)
            #expect(run.lost.isEmpty, "crash at write \(n) (crashed: \(run.crashed)): lost \(run.lost.count) messages, x chunk live \(String(describing: run.xChunkLive))")
            #expect(run.twice == 0)
        }
    }

    func stragglerSetup(_ wheel: TimingWheel, _ tick: (Int64) throws -> Int64) throws -> [Int64] {
        var now = try tick(0)
        let day: Int64 = 86_400_000
        var ids = try wheel.schedule([ScheduledMessage(dueAt: now + 3_600_000, publishedAt: now, body: [1, 2, 3])])
        ids += try wheel.schedule([ScheduledMessage(dueAt: now + 10 * day, publishedAt: now, body: [4, 5, 6])])
        for _ in 0..<6 {
            try wheel.schedule((0..<100).map { k in ScheduledMessage(dueAt: now + 1 + Int64(k), publishedAt: now, body: [UInt8](repeating: 3, count: 100)) })
            now = try tick(200)
        }
        return ids
    }

    /// `reclaim()` deletes only what the checkpoint it relies on no longer counts live, so a
    /// reopen from that checkpoint never counts deleted bytes.
    @Test func reclaimWaitsForACheckpointThatNoLongerCountsWhatItDeletes() throws {
        let dir = TemporaryDirectory()
        let dest = RecordingDestination()
        var now = Self.epoch
        dest.clock = { now }
        var wheel = try open(dir, dest, .system)
        try wheel.advance(to: now)
        _ = try stragglerSetup(wheel) { now += $0; try wheel.advance(to: now); return now }
        try wheel.checkpoint()
        while try wheel.compact() {}
        // That checkpoint's live counts still refer to what compaction emptied: nothing goes
        // until the next one.
        #expect(try wheel.reclaim().isEmpty)
        try wheel.checkpoint()
        let deleted = try wheel.reclaim()
        let live = wheel.liveChunks
        try wheel.log.close()
        wheel = try open(dir, dest, .system)  // from the checkpoint
        #expect(!deleted.isEmpty)
        #expect(wheel.liveChunks == live, "counted live after reopen: \(wheel.liveChunks.sorted { $0.key < $1.key }) vs \(live.sorted { $0.key < $1.key })")
        try wheel.checkpoint()
        #expect(try wheel.reclaim().isEmpty || true)
        #expect(wheel.liveChunks.keys.allSatisfy { $0 << 12 >= wheel.log.startOffset }, "live bytes counted below the log start: reclaim can never delete again")
    }

    /// One unreadable message read through a link in a slot compaction wants to rewrite
    /// makes every compact() call throw on that same slot (it is always found first): no
    /// other slot is ever compacted, the log never shrinks (fire tolerates the damage).
    @Test func aDamagedMessageBehindALinkDoesNotBlockCompaction() throws {
        let dir = TemporaryDirectory()
        let dest = RecordingDestination()
        var now = Self.epoch
        dest.clock = { now }
        let wheel = try open(dir, dest, .system)
        try wheel.advance(to: now)
        let span3: Int64 = 1 << 18
        let s1 = (now & ~(span3 - 1)) + 3 * span3
        let m1 = try wheel.schedule([ScheduledMessage(dueAt: s1 + 5, publishedAt: now, body: [1, 2, 3])])[0]
        // A second due time in m1's slot, so that it cascades entry by entry (a slot whose
        // entries share one due time moves down whole, without links).
        try wheel.schedule([ScheduledMessage(dueAt: s1 + 6, publishedAt: now, body: [7])])
        let m2 = try wheel.schedule([ScheduledMessage(dueAt: now + 10 * 86_400_000, publishedAt: now, body: [4, 5, 6])])[0]
        for _ in 0..<6 {
            try wheel.schedule((0..<100).map { k in ScheduledMessage(dueAt: now + 1 + Int64(k), publishedAt: now, body: [UInt8](repeating: 3, count: 100)) })
            now += 200
            try wheel.advance(to: now)
        }
        now = s1 - span3 + 10  // m1's level-3 slot is now the next one: cascade it ahead (a link to m1)
        try wheel.advance(to: now)
        while try wheel.cascadeAhead(maxEntries: 100) {}
        try wheel.log.flush()
        let f = fopen(dir.path + "/timer/00000000000000000000.timer", "r+b")!
        fseek(f, Int(m1) + 66, SEEK_SET)  // a body byte of m1
        fputc(0x55, f)
        fclose(f)
        var errors = 0
        for _ in 0..<5 {  // what the firing loop does: checkpoint, reclaim, a pass; a failed pass is retried after the next checkpoint
            try wheel.checkpoint()
            try wheel.reclaim()
            do { while try wheel.compact() {} } catch { errors += 1 }
        }
        #expect(errors == 0, "compact() failed \(errors) times")
        #expect(wheel.log.startOffset > m2, "the healthy straggler was never moved: log start \(wheel.log.startOffset), disk \(wheel.log.endOffset - wheel.log.startOffset), live \(wheel.liveBytes)")
    }

    /// Reclaim deletes segments holding only markers, so the last slotFired marker can go.
    /// A whole-log replay (checkpoint damaged, or any v2 checkpoint after the upgrade to v3:
    /// "ignored and the log replayed") then restarts the fire numbering at 1.
    @Test(arguments: [DurabilityPolicy.always, .never])
    func aWholeLogReplayAfterReclaimKeepsTheFireNumbering(durability: DurabilityPolicy) throws {
        let dir = TemporaryDirectory()
        let dest = RecordingDestination()
        var now = Self.epoch
        dest.clock = { now }
        func open() throws -> TimingWheel {
            let log = try TimerLog.open(
                directory: dir.path + "/timer", configuration: LogConfiguration(segmentBytes: 4096, durability: durability), logger: testLogger)
            return try TimingWheel(log: log, checkpointPath: dir.file("wheel.checkpoint"), destination: dest, reclaimChunkBytes: 1, logger: testLogger)
        }
        var wheel = try open()
        try wheel.advance(to: now)
        try wheel.schedule([ScheduledMessage(dueAt: now + 1, publishedAt: now, body: [1])])
        now += 5
        try wheel.advance(to: now)  // hand-over 1
        let x = try wheel.schedule([ScheduledMessage(dueAt: now + 10 * 86_400_000, publishedAt: now, body: [UInt8](repeating: 2, count: 4000))])[0]
        try wheel.checkpoint()
        let deleted = try wheel.reclaim()
        try wheel.log.close()
        #expect(!deleted.isEmpty)
        // The checkpoint becomes unusable (damage, or a v2 file read by this build).
        let f = fopen(dir.file("wheel.checkpoint"), "r+b")!
        fseek(f, 8, SEEK_SET); fputc(2, f); fclose(f)
        do {
            wheel = try open()
        } catch {
            Issue.record("\(durability): the wheel no longer opens: \(error)")
            return
        }
        now += 11 * 86_400_000
        try wheel.advance(to: now)
        #expect(dest.fired.contains { $0.id == x }, "\(durability): the straggler never fired (its hand-over was taken for an already applied one)")
    }
}
