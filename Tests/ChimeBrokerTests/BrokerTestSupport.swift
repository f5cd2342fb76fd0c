import ChimeBroker
import ChimeStore
import ChimeTestSupport
import ChimeWheel
import Logging

enum BrokerFixture {
    static let epoch: Int64 = 1_800_000_000_000

    static func options(_ dir: String, clock: any WheelClock, durability: DurabilityPolicy = .never) -> BrokerOptions {
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
        OutgoingMessage(key: key.map { Array($0.utf8) }, body: Array(s.utf8), due: at.map(Due.at), dedupKey: dedup.map { Array($0.utf8) })
    }
}

extension Delivery {
    var text: String { String(decoding: body, as: UTF8.self) }
}
