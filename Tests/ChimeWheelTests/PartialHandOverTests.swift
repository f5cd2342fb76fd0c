import ChimeStore
import ChimeTestSupport
import Foundation
import Testing

@testable import ChimeWheel

/// A destination made of several logs, as the broker's: each destination number is one
/// log, parts are applied in destination order, and a part whose log already holds this
/// hand-over's number is skipped (applied before). `failOnce` makes the delivery of that
/// destination throw once, after the parts before it were applied.
final class MultiLogDestination: FireDestination, @unchecked Sendable {
    private let lock = NSLock()
    private var tags: [UInt32: UInt64] = [:]
    private var _received: [UInt32: [String]] = [:]
    var failOnce: UInt32?
    var received: [UInt32: [String]] { lock.withLock { _received } }

    var lastFireSequence: UInt64? { lock.withLock { tags.values.min() } }

    func deliver(_ messages: [FiredMessage], fireSequence: UInt64) throws {
        let parts = Dictionary(grouping: messages, by: \.message.destination)
        for d in parts.keys.sorted() {
            if let t = lock.withLock({ tags[d] }), t >= fireSequence { continue }  // applied before
            if failOnce == d {
                failOnce = nil
                throw StoreError(.io, "injected failure of destination \(d)")
            }
            lock.withLock {
                tags[d] = fireSequence
                _received[d, default: []] += parts[d]!.map { String(decoding: $0.message.body, as: UTF8.self) }
            }
        }
    }
}

/// A hand-over to several logs that fails part-way is retried over the same slots, and the
/// messages in it cannot be cancelled meanwhile.
@Suite struct PartialHandOverTests {
    static let epoch: Int64 = 1_800_000_000_000

    private func message(_ due: Int64, _ text: String, destination: UInt32 = 0) -> ScheduledMessage {
        ScheduledMessage(dueAt: due, publishedAt: Self.epoch, destination: destination, key: nil, headers: [], body: Array(text.utf8))
    }

    private func open(_ dir: TemporaryDirectory, _ destination: FireDestination) throws -> TimingWheel {
        let log = try TimerLog.open(
            directory: dir.path + "/timer", configuration: LogConfiguration(segmentBytes: 1 << 20, durability: .always), logger: testLogger)
        return try TimingWheel(log: log, checkpointPath: dir.file("wheel.checkpoint"), destination: destination, logger: testLogger)
    }

    /// A hand-over to two logs whose second part fails is retried by the firing loop. The
    /// retry must cover the same slots as the first try: the first log already holds the
    /// hand-over's number and skips its part, so a slot that fell due meanwhile and joined
    /// the retry would have its messages for that log dropped, and marked fired.
    @Test func failedPartialHandOverIsRetriedOverTheSameSlots() throws {
        let dir = TemporaryDirectory()
        let dest = MultiLogDestination()
        let wheel = try open(dir, dest)
        let t = Self.epoch
        try wheel.advance(to: t)
        try wheel.schedule([message(t + 10, "a"), message(t + 10, "retry-a", destination: 7)])
        try wheel.schedule([message(t + 12, "b")])
        dest.failOnce = 7
        #expect(throws: StoreError.self) { try wheel.advance(to: t + 10) }
        #expect(dest.received[0] == ["a"])  // part 0 applied, part 1 failed
        // The loop retries later, when the slot of "b" is due as well.
        try wheel.advance(to: t + 20)
        #expect(dest.received[7] == ["retry-a"])
        #expect(dest.received[0] == ["a", "b"], "a message of a slot that fell due during the retry was lost")
        #expect(wheel.pendingCount == 0)
    }

    /// While a partly applied hand-over waits for its retry, a message of its slots must not
    /// be reported cancelled: its part may be applied already.
    @Test func cancelDuringAFailedHandOverIsRefused() throws {
        let dir = TemporaryDirectory()
        let dest = MultiLogDestination()
        let wheel = try open(dir, dest)
        let t = Self.epoch
        try wheel.advance(to: t)
        let ids = try wheel.schedule([message(t + 10, "a"), message(t + 10, "retry-a", destination: 7)])
        dest.failOnce = 7
        #expect(throws: StoreError.self) { try wheel.advance(to: t + 10) }
        #expect(dest.received[0] == ["a"])
        // "a" was delivered: a cancel that succeeded would be a lie.
        #expect((#expect(throws: WheelError.self) { try wheel.cancel(ids[0]) })?.code == .beingFired)
        try wheel.advance(to: t + 10)
        #expect(dest.received[0] == ["a"])
        #expect(dest.received[7] == ["retry-a"])
    }
}
