import ChimeStore
import ChimeTestSupport
import Foundation
import Glibc
import Testing

@testable import ChimeWheel

/// A message fires once, and is known as pending until it has, across crashes, failed
/// writes, damaged markers and clock steps: each test names one way that once went wrong.
@Suite struct FireExactlyOnceTests {
    static let epoch: Int64 = 1_800_000_000_000

    private func open(_ dir: TemporaryDirectory, _ dest: RecordingDestination, calls: FileSystemCalls = .system, durability: DurabilityPolicy = .never) throws -> TimingWheel {
        let log = try TimerLog.open(directory: dir.path + "/timer", configuration: LogConfiguration(durability: durability), calls: calls, logger: testLogger)
        return try TimingWheel(log: log, checkpointPath: dir.file("wheel.checkpoint"), destination: dest, logger: testLogger)
    }

    private func m(_ due: Int64, _ text: String = "x") -> ScheduledMessage {
        ScheduledMessage(dueAt: due, publishedAt: Self.epoch, body: Array(text.utf8))
    }

    /// A crash after a hand-over but before its marker, then a schedule for an earlier
    /// time before the first advance: the redone hand-over must keep its number, so the new
    /// message is neither skipped nor the old one delivered twice.
    @Test func anEarlierScheduleAfterACrashDoesNotStealTheAppliedHandOver() throws {
        let dir = TemporaryDirectory()
        let dest = RecordingDestination()
        var wheel = try open(dir, dest)
        try wheel.advance(to: Self.epoch)
        let a = try wheel.schedule([m(Self.epoch + 10, "a")])[0]
        let before = wheel.log.endOffset
        try wheel.advance(to: Self.epoch + 10)
        try wheel.log.close()
        truncateFile(dir.file("timer/00000000000000000000.timer"), to: before)  // the marker is lost
        try? FileManager.default.removeItem(atPath: dir.file("timer/00000000000000000000.index"))

        wheel = try open(dir, dest)
        let b = try wheel.schedule([m(Self.epoch + 5, "b")])[0]
        try wheel.advance(to: Self.epoch + 100)
        #expect(dest.fired.map(\.id) == [a, b])
        #expect(dest.deliveries.map(\.sequence) == [1, 2])
    }

    /// The timer log is durable before the destination records a hand-over's number.
    @Test func theTimerLogIsDurableBeforeAHandOver() throws {
        let dir = TemporaryDirectory()
        let dest = RecordingDestination()
        let wheel = try open(dir, dest, durability: .always)
        try wheel.advance(to: Self.epoch)
        try wheel.schedule([m(Self.epoch + 10)])
        let scheduledEnd = wheel.log.endOffset
        #expect(wheel.log.durableOffset < scheduledEnd, "nothing synced it yet")
        var durableAtHandOver: Int64 = -1
        dest.clock = { durableAtHandOver = wheel.log.durableOffset; return 0 }
        try wheel.advance(to: Self.epoch + 10)
        #expect(durableAtHandOver >= scheduledEnd)
        try wheel.log.close()
    }

    /// A marker write that fails after the destination applied the hand-over must not
    /// make the same process hand it over again.
    @Test func aFailedMarkerWriteDoesNotHandOverTwice() throws {
        let dir = TemporaryDirectory()
        let dest = RecordingDestination()
        let full = FullDiskSwitch()
        let wheel = try open(dir, dest, calls: full.calls)
        try wheel.advance(to: Self.epoch)
        try wheel.schedule([m(Self.epoch + 10)])
        dest.clock = { full.on = true; return 0 }  // the disk fills right after the hand-over
        #expect(throws: StoreError.self) { try wheel.advance(to: Self.epoch + 10) }
        full.on = false
        dest.clock = { 0 }
        try wheel.advance(to: Self.epoch + 20)
        #expect(dest.deliveries.count == 1)
        #expect(wheel.pendingCount == 0)
    }

    @Test func cancelKnowsWhatIsStillPending() throws {
        let dir = TemporaryDirectory()
        let dest = RecordingDestination()
        let wheel = try open(dir, dest)
        try wheel.advance(to: Self.epoch + 300)
        let ids = try wheel.schedule([m(Self.epoch + 310), m(Self.epoch + 250), m(Self.epoch + 400)])
        try wheel.cancel(ids[1])  // overdue but not fired yet: cancellable
        #expect((#expect(throws: WheelError.self) { try wheel.cancel(ids[1]) })?.code == .notPending, "twice")
        try wheel.advance(to: Self.epoch + 310)
        #expect((#expect(throws: WheelError.self) { try wheel.cancel(ids[0]) })?.code == .notPending, "fired")
        #expect(wheel.pendingCount == 1)
        try wheel.advance(to: Self.epoch + 1_000)
        #expect(dest.fired.map(\.id) == [ids[0], ids[2]])
        #expect(wheel.pendingCount == 0)
    }

    /// Replay restores the wheel time from what was placed, so a schedule after a restart
    /// cannot land in a span the wheel had already left.
    @Test func replayRestoresTheWheelTime() throws {
        let dir = TemporaryDirectory()
        let dest = RecordingDestination()
        var wheel = try open(dir, dest)
        let base: Int64 = Self.epoch
        try wheel.advance(to: base)
        try wheel.schedule([m(base + 50)])
        try wheel.advance(to: base + 50)  // a marker at +50
        try wheel.advance(to: base + 4_196)
        let x = try wheel.schedule([m(base + 5_400, "x")])[0]
        try wheel.log.close()

        wheel = try open(dir, dest)
        #expect(wheel.time >= base + 4_196)
        let y = try wheel.schedule([m(base + 1_923, "y")])[0]  // overdue now: fires at once
        try wheel.advance(to: base + 2_000)
        #expect(dest.fired.map(\.id).contains(y))
        try wheel.advance(to: base + 6_000)
        #expect(dest.fired.map(\.id).suffix(2) == [y, x])
        #expect(wheel.pendingCount == 0)
    }

    @Test func overdueSchedulesFireEvenAfterTheClockSteppedBack() throws {
        let dir = TemporaryDirectory()
        let dest = RecordingDestination()
        let wheel = try open(dir, dest)
        try wheel.advance(to: Self.epoch + 3_600_000)
        try wheel.advance(to: Self.epoch)  // step back
        let id = try wheel.schedule([m(Self.epoch + 5)])[0]
        try wheel.advance(to: Self.epoch + 10)
        #expect(dest.fired.map(\.id) == [id])
    }

    /// A damaged "fired" marker must not make its slot fire again after a restart.
    @Test func aDamagedFiredMarkerDoesNotRefire() throws {
        let dir = TemporaryDirectory()
        let dest = RecordingDestination()
        var wheel = try open(dir, dest)
        try wheel.advance(to: Self.epoch)
        try wheel.schedule([m(Self.epoch + 10, "a"), m(Self.epoch + 20, "b")])
        try wheel.advance(to: Self.epoch + 10)
        try wheel.advance(to: Self.epoch + 30)
        #expect(dest.deliveries.count == 2, "one hand-over per advance here")
        // Find the first "fired" marker and damage it.
        var marker: Int64 = -1
        var at = wheel.log.startOffset
        while marker < 0, let e = try wheel.log.read(from: at, maxBytes: 1).first {
            if e.kind == .slotFired { marker = e.position }
            at = e.position + Int64(e.bytes.count)
        }
        try wheel.log.close()
        try flipBit(dir.file("timer/00000000000000000000.timer"), at: marker + 30)
        try? FileManager.default.removeItem(atPath: dir.file("timer/00000000000000000000.index"))

        wheel = try open(dir, dest)
        try wheel.advance(to: Self.epoch + 1_000)
        #expect(dest.deliveries.count == 2, "nothing handed over again")
        #expect(wheel.pendingCount == 0)
    }

    /// A destination further ahead than one hand-over is not this log's destination (or the
    /// log lost data): opening refuses instead of marking unfired messages fired.
    @Test func aDestinationFarAheadOfTheLogIsRefused() throws {
        let dir = TemporaryDirectory()
        let dest = RecordingDestination()
        try dest.deliver([], fireSequence: 5)
        let error = #expect(throws: WheelError.self) { _ = try open(dir, dest, durability: .always) }
        #expect(error?.code == .foreignDestination)
    }
}

/// Fails every write with ENOSPC while on.
final class FullDiskSwitch: @unchecked Sendable {
    private let lock = NSLock()
    private var _on = false
    var on: Bool {
        get { lock.withLock { _on } }
        set { lock.withLock { _on = newValue } }
    }
    var calls: FileSystemCalls {
        FileSystemCalls(
            pwritev: { fd, iov, count, offset in self.on ? -Int(ENOSPC) : FileSystemCalls.system.pwritev(fd, iov, count, offset) },
            fdatasync: FileSystemCalls.system.fdatasync,
            ftruncate: FileSystemCalls.system.ftruncate)
    }
}
