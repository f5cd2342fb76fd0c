import ChimeStore
import ChimeTestSupport
import Foundation
import Logging
import Testing

@testable import ChimeWheel

/// The README's examples, as written there (temporary directories instead of data/), so
/// the README cannot drift from the API.
@Suite struct ReadmeExampleTests {
    final class Printer: FireDestination, @unchecked Sendable {
        var lastFireSequence: UInt64?
        var bodies: [String] = []
        func deliver(_ messages: [FiredMessage], fireSequence: UInt64) throws {
            for m in messages { bodies.append(String(decoding: m.message.body, as: UTF8.self)) }
            lastFireSequence = fireSequence
        }
    }

    @Test func theStoreExample() async throws {
        let dir = TemporaryDirectory()
        let log = try RecordLog.open(directory: dir.path + "/orders/0/ready",
                                     configuration: LogConfiguration(durability: .always),
                                     logger: Logger(label: "orders"))
        var batch = RecordBatchBuilder(compression: .lz4)
        batch.append(Record(timestamp: 1_764_000_000_000, key: Array("order-42".utf8), body: Array("{...}".utf8)))
        let appended = try await log.appendDurably(try batch.build())
        var seen: [(Int64, Int)] = []
        for b in try log.read(from: appended.baseOffset) {
            for r in try b.records() { seen.append((r.offset, r.record.body.count)) }
        }
        try log.close()
        #expect(seen.map(\.0) == [0] && seen.map(\.1) == [5])
    }

    @Test func theWheelExample() async throws {
        let dir = TemporaryDirectory()
        let logger = testLogger
        let printer = Printer()
        let timerLog = try TimerLog.open(directory: dir.path + "/orders/0/timer", logger: logger)
        let wheel = try TimingWheel(log: timerLog, checkpointPath: dir.path + "/orders/0/wheel.checkpoint",
                                    destination: printer, logger: logger)
        let loop = FiringLoop(wheel: wheel, logger: logger)
        let running = Task { try await loop.run() }
        let now = SystemWheelClock().now()
        let ids = try await loop.schedule([
            ScheduledMessage(dueAt: now + 3_600_000, publishedAt: now, body: Array("expire coupon 42".utf8)),  // an hour: a loaded suite can stall this test for tens of seconds
            // Far enough ahead that the calls below finish first even on a loaded machine.
            ScheduledMessage(dueAt: now + 1_500, publishedAt: now, body: Array("retry deployment".utf8)),
        ])
        let moved = try await loop.reschedule(ids[0], to: now + 7_200_000)
        #expect(moved > ids[1])
        try await loop.cancel(moved)
        // Cancelled: a second cancel finds nothing pending. (The count is not checked here:
        // on a loaded machine the other message may already have fired.)
        await #expect(throws: WheelError(.notPending, "message \(moved) is not pending (it fired or was cancelled)")) { try await loop.cancel(moved) }
        #expect(await loop.pendingCount <= 1)
        let giveUp = ContinuousClock.now + .seconds(60)  // a bound for a loaded machine, not a timing
        while await loop.pendingCount > 0, ContinuousClock.now < giveUp { try await Task.sleep(for: .milliseconds(1)) }
        running.cancel()
        _ = await running.result
        #expect(printer.bodies == ["retry deployment"])
        #expect(FileManager.default.fileExists(atPath: dir.path + "/orders/0/wheel.checkpoint"), "stopping leaves a checkpoint")
    }
}
