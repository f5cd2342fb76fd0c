import ChimeBroker
import ChimeStore
import ChimeTestSupport
import ChimeWheel
import Foundation
import Logging

/// A clock the test moves by hand. Sleeps end when the task is cancelled (the broker's
/// maintenance task in manual mode sleeps; nothing else does).
final class TestClock: WheelClock, @unchecked Sendable {
    private let lock = NSLock()
    private var current: Int64

    init(_ start: Int64) { current = start }

    func now() -> Int64 { lock.withLock { current } }
    func advance(by ms: Int64) { lock.withLock { current += ms } }
    func set(_ ms: Int64) { lock.withLock { current = ms } }

    func sleep(until deadline: Int64?) async {
        while !Task.isCancelled { try? await Task.sleep(for: .milliseconds(5)) }
    }
}

enum BrokerFixture {
    static let epoch: Int64 = 1_800_000_000_000

    static func options(_ dir: String, clock: TestClock, durability: DurabilityPolicy = .never) -> BrokerOptions {
        BrokerOptions(
            directory: dir, durability: durability, readySegmentBytes: 1 << 20, timerSegmentBytes: 1 << 20, groupSegmentBytes: 1 << 16,
            clock: clock, firing: .manual, randomSeed: 42)
    }

    static var logger: Logger {
        var l = Logger(label: "test")
        l.logLevel = .critical
        return l
    }
}

extension OutgoingMessage {
    static func text(_ s: String, key: String? = nil, at: Int64? = nil, dedup: String? = nil) -> OutgoingMessage {
        OutgoingMessage(key: key.map { Array($0.utf8) }, body: Array(s.utf8), deliverAt: at, dedupKey: dedup.map { Array($0.utf8) })
    }
}

extension Delivery {
    var text: String { String(decoding: body, as: UTF8.self) }
}
