import ChimeStore
import ChimeTestSupport
import Foundation
import Testing

@testable import ChimeWheel

@Suite struct FiringLoopTests {
    static let epoch: Int64 = 1_800_000_000_000

    /// Waits (bounded) until the loop sleeps, registered with the clock, with a deadline
    /// that satisfies `accept`; returns it.
    @discardableResult
    private func waitForSleep(_ loop: FiringLoop, _ clock: ManualClock, _ accept: (Int64) -> Bool) async throws -> Int64? {
        for _ in 0..<5_000 {
            if let d = await loop.sleepingUntil, accept(d), clock.deadlines.count == 1 { return d }
            try await Task.sleep(for: .milliseconds(1))
        }
        Issue.record("the loop never slept as expected; it sleeps until \(String(describing: await loop.sleepingUntil))")
        return nil
    }

    /// An empty wheel on a fresh timer log, its loop running on a manual clock; the
    /// destination records the clock's time of each hand-over.
    private func startLoop(fireLead: Int64) throws -> (TemporaryDirectory, ManualClock, RecordingDestination, FiringLoop, Task<Void, any Error>) {
        let dir = TemporaryDirectory()
        let clock = ManualClock(Self.epoch)
        let dest = RecordingDestination()
        dest.clock = { clock.now() }
        let log = try TimerLog.open(directory: dir.path, configuration: LogConfiguration(durability: .never), logger: testLogger)
        let wheel = try TimingWheel(log: log, destination: dest, logger: testLogger)
        let loop = FiringLoop(wheel: wheel, clock: clock, fireLead: fireLead, logger: testLogger)
        return (dir, clock, dest, loop, Task { try await loop.run() })
    }

    @Test func sleepsUntilTheNextSlotAndWakesEarlyForAnEarlierOne() async throws {
        let (dir, clock, dest, loop, running) = try startLoop(fireLead: 0)
        _ = dir

        try await waitForSleep(loop, clock) { $0 == .max }  // idle: nothing pending, no deadline
        #expect(clock.deadlines == [nil])
        let late = try await loop.schedule([ScheduledMessage(dueAt: Self.epoch + 1_000, publishedAt: Self.epoch, body: Array("late".utf8))])
        // It wakes no later than the message's due time (earlier to cascade it down a level).
        let first = try await waitForSleep(loop, clock) { $0 > Self.epoch && $0 <= Self.epoch + 1_000 }
        #expect(first != nil)
        let early = try await loop.schedule([ScheduledMessage(dueAt: Self.epoch + 50, publishedAt: Self.epoch, body: Array("early".utf8))])
        try await waitForSleep(loop, clock) { $0 == Self.epoch + 50 }  // woken early, sleeping less
        #expect(dest.fired.isEmpty)

        clock.set(Self.epoch + 49)
        try await Task.sleep(for: .milliseconds(20))
        #expect(dest.fired.isEmpty, "nothing before its due time")
        clock.set(Self.epoch + 50)
        try await waitForSleep(loop, clock) { $0 > Self.epoch + 50 }
        #expect(dest.fired.map(\.id) == early)
        #expect(dest.fired.first?.at == Self.epoch + 50)

        clock.set(Self.epoch + 5_000)  // a late wake-up: what is overdue fires at once, then idle
        try await waitForSleep(loop, clock) { $0 == .max }
        #expect(dest.fired.map(\.id) == early + late)
        #expect(await loop.pendingCount == 0)
        running.cancel()
        _ = await running.result
    }

    @Test func catchesUpOnEverythingOverdueInDueOrder() async throws {
        let dir = TemporaryDirectory()
        let clock = ManualClock(Self.epoch)
        let dest = RecordingDestination()
        let log = try TimerLog.open(directory: dir.path, configuration: LogConfiguration(durability: .never), logger: testLogger)
        let wheel = try TimingWheel(log: log, destination: dest, logger: testLogger)
        try wheel.advance(to: Self.epoch)
        let ids = try wheel.schedule((0..<100).map {
            ScheduledMessage(dueAt: Self.epoch + Int64((100 - $0) * 86_400_000), publishedAt: Self.epoch, body: [UInt8($0)])
        })
        // The broker was down for a year: the loop starts long after everything was due.
        clock.set(Self.epoch + 365 * 86_400_000)
        let loop = FiringLoop(wheel: wheel, clock: clock, logger: testLogger)
        let running = Task { try await loop.run() }
        try await waitForSleep(loop, clock) { $0 == .max }
        #expect(dest.fired.map(\.id) == ids.reversed(), "every overdue message, in due order")
        running.cancel()
        _ = await running.result
    }

    @Test func aFireLeadHandsEachSlotOverThatManyMillisecondsBeforeItIsDue() async throws {
        let (dir, clock, dest, loop, running) = try startLoop(fireLead: 5)
        _ = dir
        try await waitForSleep(loop, clock) { $0 == .max }

        let ids = try await loop.schedule([ScheduledMessage(dueAt: Self.epoch + 50, publishedAt: Self.epoch, body: Array("noon".utf8))])
        try await waitForSleep(loop, clock) { $0 == Self.epoch + 45 }  // the lead before its due time
        clock.set(Self.epoch + 44)
        try await Task.sleep(for: .milliseconds(20))
        #expect(dest.fired.isEmpty, "not before the lead")
        clock.set(Self.epoch + 45)
        try await waitForSleep(loop, clock) { $0 == .max }  // the destination shows it when due
        #expect(dest.fired.map(\.id) == ids)
        #expect(dest.fired.first?.at == Self.epoch + 45)
        #expect(await loop.pendingCount == 0)

        // A message due within the lead is handed over at once.
        let soon = try await loop.schedule([ScheduledMessage(dueAt: Self.epoch + 47, publishedAt: Self.epoch, body: Array("soon".utf8))])
        for _ in 0..<5_000 where dest.fired.count < 2 { try await Task.sleep(for: .milliseconds(1)) }
        #expect(dest.fired.map(\.id) == ids + soon)
        #expect(dest.fired.last?.at == Self.epoch + 45)
        running.cancel()
        _ = await running.result
    }

    @Test func aScheduleDueWithinTheLeadOfTheNextWakeUpWakesTheLoopEarlier() async throws {
        let (dir, clock, dest, loop, running) = try startLoop(fireLead: 5)
        _ = dir
        try await waitForSleep(loop, clock) { $0 == .max }
        _ = try await loop.schedule([ScheduledMessage(dueAt: Self.epoch + 40, publishedAt: Self.epoch, body: [1])])
        try await waitForSleep(loop, clock) { $0 == Self.epoch + 35 }
        // Due after the loop's wake-up, but its lead starts before it.
        _ = try await loop.schedule([ScheduledMessage(dueAt: Self.epoch + 38, publishedAt: Self.epoch, body: [2])])
        try await waitForSleep(loop, clock) { $0 == Self.epoch + 33 }
        running.cancel()
        _ = await running.result
    }

    @Test func theSystemClockSleepsUntilTheDeadline() async {
        let clock = SystemWheelClock()
        let deadline = clock.now() + 30
        await clock.sleep(until: deadline)
        #expect(clock.now() >= deadline, "never wakes before the deadline")
    }

    @Test func checkpointsWhileWorkingAndOnceMoreWhenStopped() async throws {
        let dir = TemporaryDirectory()
        let clock = ManualClock(Self.epoch)
        let dest = RecordingDestination()
        func wheel() throws -> sending TimingWheel {
            let log = try TimerLog.open(directory: dir.path + "/timer", configuration: LogConfiguration(durability: .never), logger: testLogger)
            return try TimingWheel(log: log, checkpointPath: dir.file("wheel.checkpoint"), destination: dest, logger: testLogger)
        }
        let loop = FiringLoop(wheel: try wheel(), clock: clock, checkpointPolicy: .every(1_000), logger: testLogger)
        let running = Task { try await loop.run() }
        try await waitForSleep(loop, clock) { $0 == .max }
        #expect(!FileManager.default.fileExists(atPath: dir.file("wheel.checkpoint")), "nothing to save yet")
        clock.set(Self.epoch + 1_500)
        _ = try await loop.schedule([ScheduledMessage(dueAt: Self.epoch + 900_000, publishedAt: Self.epoch, body: [1])])
        // The schedule wakes the loop, which checkpoints because the interval has passed.
        for _ in 0..<2_000 where !FileManager.default.fileExists(atPath: dir.file("wheel.checkpoint")) {
            try await Task.sleep(for: .milliseconds(1))
        }
        #expect(FileManager.default.fileExists(atPath: dir.file("wheel.checkpoint")), "the loop checkpoints once the interval has passed")
        _ = try await loop.schedule([ScheduledMessage(dueAt: Self.epoch + 800_000, publishedAt: Self.epoch, body: [2])])
        running.cancel()
        _ = await running.result
        // The final checkpoint covers the second schedule too: reopening replays nothing.
        let reopened = try wheel()
        #expect(reopened.recovery.fromCheckpoint)
        #expect(reopened.recovery.replayedEntries == 0)
        #expect(reopened.pendingCount == 2)
    }

    /// A loop on a manual clock with a checkpoint path, and what a test needs to watch it.
    private struct CheckpointingLoop {
        let dir = TemporaryDirectory()
        let clock = ManualClock(FiringLoopTests.epoch)
        let loop: FiringLoop
        var path: String { dir.file("wheel.checkpoint") }

        init(policy: CheckpointPolicy) throws {
            let log = try TimerLog.open(directory: dir.path + "/timer", configuration: LogConfiguration(durability: .never), logger: testLogger)
            let wheel = try TimingWheel(log: log, checkpointPath: dir.file("wheel.checkpoint"), destination: RecordingDestination(), logger: testLogger)
            loop = FiringLoop(wheel: wheel, clock: clock, checkpointPolicy: policy, logger: testLogger)
        }

        /// The checkpoint file's inode (an atomic rewrite changes it); nil before the first.
        func inode() -> UInt64? {
            var st = stat()
            return stat(path, &st) == 0 ? UInt64(st.st_ino) : nil
        }

        func waitForInode(otherThan old: UInt64?) async throws -> UInt64? {
            for _ in 0..<2_000 where inode() == old { try await Task.sleep(for: .milliseconds(1)) }
            return inode()
        }

        /// The wheel reopened from what is on disk.
        func reopened() throws -> TimingWheel {
            let log = try TimerLog.open(directory: dir.path + "/timer", configuration: LogConfiguration(durability: .never), logger: testLogger)
            return try TimingWheel(log: log, checkpointPath: path, destination: RecordingDestination(), logger: testLogger)
        }
    }

    @Test func aRunningLoopCheckpointsOnlyWhenTheChangeIsWorthIt() async throws {
        let t = try CheckpointingLoop(policy: CheckpointPolicy(interval: 1_000, bytes: 4_096, maximumInterval: 10_000))
        let loop = t.loop
        let running = Task { try await loop.run() }
        /// Schedules messages due before the loop's planned wake-up (so it wakes and looks),
        /// then waits until it sleeps again.
        func schedule(dueIn offset: Int64, count: Int, bodyBytes: Int) async throws {
            let planned = await t.loop.sleepingUntil ?? .max
            _ = try await t.loop.schedule((0..<count).map { _ in
                ScheduledMessage(dueAt: Self.epoch + offset, publishedAt: Self.epoch, body: [UInt8](repeating: 7, count: bodyBytes))
            })
            try await waitForSleep(t.loop, t.clock) { $0 < planned }
        }
        try await waitForSleep(t.loop, t.clock) { $0 == .max }

        t.clock.set(Self.epoch + 1_500)
        try await schedule(dueIn: 86_400_000, count: 1, bodyBytes: 10)
        try await Task.sleep(for: .milliseconds(50))
        #expect(t.inode() == nil, "one small entry after the interval: not worth a checkpoint yet")

        t.clock.set(Self.epoch + 2_000)
        try await schedule(dueIn: 10_000, count: 50, bodyBytes: 100)
        let first = try await t.waitForInode(otherThan: nil)
        #expect(first != nil, "4 KiB appended and the interval passed: a checkpoint")

        t.clock.set(Self.epoch + 5_000)
        try await schedule(dueIn: 7_000, count: 1, bodyBytes: 10)
        try await Task.sleep(for: .milliseconds(50))
        #expect(t.inode() == first, "a small change 3 s later waits")

        let pending = await t.loop.pendingCount
        running.cancel()
        _ = await running.result
        #expect(pending == 52)
        let reopened = try t.reopened()
        #expect(reopened.pendingCount == pending)
        #expect(reopened.recovery.replayedEntries == 0, "the stop wrote a last checkpoint")
    }

    @Test func aSmallChangeIsCheckpointedAtTheMaximumIntervalWithNothingElseWakingTheLoop() async throws {
        let t = try CheckpointingLoop(policy: CheckpointPolicy(interval: 1_000, bytes: 1 << 20, maximumInterval: 10_000))
        let loop = t.loop
        let running = Task { try await loop.run() }
        try await waitForSleep(t.loop, t.clock) { $0 == .max }
        t.clock.set(Self.epoch + 1_000)
        _ = try await t.loop.schedule([ScheduledMessage(dueAt: Self.epoch + 86_400_000, publishedAt: Self.epoch, body: [1])])
        let wake = try await waitForSleep(t.loop, t.clock) { $0 != .max }
        #expect(wake == Self.epoch + 11_000, "the loop plans to wake when the change has waited the maximum interval")
        #expect(t.inode() == nil)
        t.clock.set(Self.epoch + 11_000)
        #expect(try await t.waitForInode(otherThan: nil) != nil, "it wakes then and checkpoints")
        try await waitForSleep(t.loop, t.clock) { $0 > Self.epoch + 11_000 }
        running.cancel()
        _ = await running.result
        #expect(try t.reopened().pendingCount == 1)
    }
}
