import ChimeBroker
import ChimeStore
import ChimeTestSupport
import Testing

/// One broker on a temporary directory and a manual clock, that a scenario can close and
/// open again on the same directory and clock (a restart).
final class Scenario {
    let dir: TemporaryDirectory
    let clock: ManualClock
    let options: BrokerOptions
    private(set) var broker: Broker

    private init(dir: TemporaryDirectory, clock: ManualClock, options: BrokerOptions, broker: Broker) {
        self.dir = dir
        self.clock = clock
        self.options = options
        self.broker = broker
    }

    static func make(_ configure: (inout BrokerOptions) -> Void = { _ in }) async throws -> Scenario {
        let dir = TemporaryDirectory("chime-scenario")
        let clock = ManualClock(BrokerFixture.epoch)
        var options = BrokerFixture.options(dir.path, clock: clock)
        configure(&options)
        let broker = try await Broker.open(options, logger: BrokerFixture.logger)
        return Scenario(dir: dir, clock: clock, options: options, broker: broker)
    }

    var now: Int64 { clock.now() }

    /// Closes the broker and opens it again on the same directory and clock; `whileStopped`
    /// runs in between (a test editing the data directory).
    func restart(whileStopped: () throws -> Void = {}) async throws {
        await broker.close()
        try whileStopped()
        broker = try await Broker.open(options, logger: BrokerFixture.logger)
    }

    /// Moves the clock and fires what fell due.
    @discardableResult
    func advance(by ms: Int64) async throws -> Int {
        clock.advance(by: ms)
        return try await broker.fireDue()
    }

    /// Fetches until a fetch returns nothing (without acking).
    func fetchAll(_ group: String, _ member: UInt64, batch: Int = 100) async throws -> [Delivery] {
        var out: [Delivery] = []
        while true {
            let got = try await broker.fetch(group: group, member: member, max: batch)
            if got.isEmpty { return out }
            out += got
        }
    }

    /// Fetches and acks until nothing is left for `member`; returns what it got, in order.
    func consumeAll(_ group: String, _ member: UInt64, batch: Int = 100) async throws -> [Delivery] {
        var out: [Delivery] = []
        while true {
            let got = try await broker.fetch(group: group, member: member, max: batch)
            if got.isEmpty { return out }
            let results = try await broker.ack(group: group, member: member, got.map(\.receipt))
            #expect(results.allSatisfy { $0 == nil }, "acks refused: \(results.compactMap { $0 })")
            out += got
        }
    }
}

extension Array where Element == Delivery {
    var texts: [String] { map(\.text) }
    var textSet: Set<String> { Set(map(\.text)) }
    /// Texts per partition, in delivery order.
    var byPartition: [Int: [String]] { Dictionary(grouping: self, by: \.partition).mapValues { $0.map(\.text) } }
}

extension Delivery {
    func header(_ name: String) -> String? {
        headers.first { $0.name == name }.map { String(decoding: $0.value, as: UTF8.self) }
    }
}

/// Expects `body` to throw a `BrokerError` with `code`.
func expectBrokerError<T>(
    _ code: BrokerError.Code, sourceLocation: SourceLocation = #_sourceLocation, _ body: () async throws -> T
) async {
    do {
        _ = try await body()
        Issue.record("expected \(code), got no error", sourceLocation: sourceLocation)
    } catch let error as BrokerError {
        #expect(error.code == code, "expected \(code), got \(error)", sourceLocation: sourceLocation)
    } catch {
        Issue.record("expected \(code), got \(error)", sourceLocation: sourceLocation)
    }
}

func bytes(_ s: String) -> [UInt8] { Array(s.utf8) }
