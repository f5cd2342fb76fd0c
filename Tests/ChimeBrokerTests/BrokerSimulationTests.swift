import ChimeBroker
import ChimeStore
import ChimeTestSupport
import Foundation
import Testing

/// A seeded simulation of the whole broker: publish now, after a delay and at a wall-clock
/// time; fire; fetch and ack; step the wall clock; restart; crash (a copy of the data
/// directory taken while it runs, as SIGKILL leaves it); fill the disk or fail its syncs.
/// After every step it checks that nothing is delivered before its due time (on broker
/// time, the clock delays count on), and nothing is delivered to the group again once its
/// ack was acknowledged; at the end, that every message whose publish was acknowledged was
/// delivered. `make test` runs a short budget; `make soak` runs many seeds for long
/// (CHIME_SIMULATION_STEPS, CHIME_SIMULATION_SEEDS). A failure names its seed and step.
@Suite struct BrokerSimulationTests {
    static var steps: Int { Int(ProcessInfo.processInfo.environment["CHIME_SIMULATION_STEPS"] ?? "") ?? 400 }
    static var seeds: [UInt64] {
        let given = ProcessInfo.processInfo.environment["CHIME_SIMULATION_SEEDS"]?.split(separator: ",").compactMap { UInt64($0) } ?? []
        return given.isEmpty ? [1, 2, 3] : given
    }

    @Test(arguments: seeds)
    func nothingAcknowledgedIsLostNothingFiresEarlyAndNothingAckedComesBack(seed: UInt64) async throws {
        let simulation = try await BrokerSimulation(seed: seed)
        for step in 0..<Self.steps { try await simulation.step(step) }
        try await simulation.drainAndCheck()
    }
}

/// The broker under simulation and what its answers promised.
final class BrokerSimulation {
    static let groupSettings = GroupSettings(leaseMilliseconds: 5_000, sessionTimeoutMilliseconds: 10 * 86_400_000)
    let seed: UInt64
    var rng: SplitMix64
    let clock = ManualClock(BrokerFixture.epoch)
    let faults = DiskFaults()
    /// Data directories: the current one last (a crash moves to a copy).
    var directories: [TemporaryDirectory] = []
    var broker: Broker
    var member: UInt64
    var step = 0

    /// Published and acknowledged: the earliest broker time each may be delivered.
    var due: [String: Int64] = [:]
    /// Publishes that failed: each may or may not exist.
    var uncertain: Set<String> = []
    /// Acks the broker acknowledged: never to be delivered again.
    var acked: Set<String> = []
    var delivered: Set<String> = []
    var published = 0
    var counts: [String: Int] = [:]

    init(seed: UInt64) async throws {
        self.seed = seed
        rng = SplitMix64(seed: seed)
        directories = [TemporaryDirectory("chime-simulation")]
        broker = try await Self.open(directories[0].path, clock: clock, faults: faults)
        try broker.createTopic("jobs", settings: TopicSettings(partitions: 3, maxAttempts: 1_000))
        member = try await broker.join(group: "g", member: "m", topics: ["jobs"], settings: Self.groupSettings).memberID
    }

    static func open(_ path: String, clock: ManualClock, faults: DiskFaults) async throws -> Broker {
        var options = BrokerFixture.options(path, clock: clock, durability: .always)
        options.fileSystem = faults.calls
        return try await Broker.open(options, logger: BrokerFixture.logger)
    }

    private func random(_ range: ClosedRange<Int64>) -> Int64 { range.lowerBound + Int64(rng.next() % UInt64(range.upperBound - range.lowerBound + 1)) }
    private func chance(_ percent: UInt64) -> Bool { rng.next() % 100 < percent }
    private var place: String { "seed \(seed), step \(step)" }

    func step(_ n: Int) async throws {
        step = n
        switch rng.next() % 100 {
        case 0..<30: try await publish()
        case 30..<45: try await advance(by: random(0...1_500))
        case 45..<55:
            // To a millisecond before the next due time: a message fired a millisecond early
            // would be there for the next fetch.
            if let next = due.values.filter({ $0 > clock.now() }).min() { try await advance(by: next - 1 - clock.now()) }
        case 55..<80: try await consume(max: Int(random(1...20)), ackPercent: 70)
        case 80..<84: clock.stepWall(by: random(-3_600_000...3_600_000))
        case 84..<89: try await restart()
        case 89..<93: try await crash()
        default: injectFault()
        }
        if faults.full || faults.syncFails, chance(30) {
            faults.full = false
            faults.syncFails = false
        }
    }

    private func count(_ what: String) { counts[what, default: 0] += 1 }

    private func publish() async throws {
        var messages: [OutgoingMessage] = []
        var dueAfter: [Int64] = []
        for _ in 0..<random(1...5) {
            published += 1
            let body = "m\(published)"
            let delay = random(1...3_000)
            switch rng.next() % 5 {
            case 0, 1:
                messages.append(OutgoingMessage(body: Array(body.utf8)))
                dueAfter.append(0)
            case 2, 3:
                messages.append(OutgoingMessage(body: Array(body.utf8), due: .after(delay)))
                dueAfter.append(delay)
            default:
                // A wall-clock time: converted on receipt by the difference between the clocks.
                messages.append(OutgoingMessage(body: Array(body.utf8), due: .at(clock.wallNow() + delay)))
                dueAfter.append(delay)
            }
        }
        let receivedAt = clock.now()
        do {
            _ = try await broker.publish(topic: "jobs", messages)
            for (m, after) in zip(messages, dueAfter) { due[String(decoding: m.body, as: UTF8.self)] = receivedAt + after }
            count("publish")
        } catch {
            for m in messages { uncertain.insert(String(decoding: m.body, as: UTF8.self)) }
            count("publish refused")
        }
    }

    private func advance(by ms: Int64) async throws {
        clock.advance(by: ms)
        do { try await broker.fireDue() } catch { count("fire failed") }
    }

    /// Fetches once and acks `ackPercent` of what came; checks every delivery.
    @discardableResult
    private func consume(max: Int, ackPercent: UInt64) async throws -> Int {
        let got: [Delivery]
        do {
            got = try await broker.fetch(group: "g", member: member, max: max)
        } catch {
            count("fetch refused")
            return 0
        }
        for d in got {
            let body = String(decoding: d.body, as: UTF8.self)
            #expect(due[body] != nil || uncertain.contains(body), "\(place): \(body) was delivered but never published")
            #expect(!acked.contains(body), "\(place): \(body) was delivered again after its ack was acknowledged")
            if let earliest = due[body] {
                #expect(d.deliveredAt >= earliest, "\(place): \(body) delivered at \(d.deliveredAt), before its due time \(earliest)")
            }
            delivered.insert(body)
        }
        let toAck = got.filter { _ in chance(ackPercent) }
        if !toAck.isEmpty {
            do {
                let results = try await broker.ack(group: "g", member: member, toAck.map(\.receipt))
                for (d, error) in zip(toAck, results) where error == nil { acked.insert(String(decoding: d.body, as: UTF8.self)) }
            } catch {
                count("ack refused")
            }
        }
        return got.count
    }

    private func rejoin() async throws {
        member = try await broker.join(group: "g", member: "m", topics: ["jobs"], settings: Self.groupSettings).memberID
    }

    private func restart() async throws {
        faults.full = false
        faults.syncFails = false
        await broker.close()
        broker = try await Self.open(directories.last!.path, clock: clock, faults: faults)
        try await rejoin()
        count("restart")
    }

    /// Continues on a copy of the data directory taken while the broker runs: what a
    /// SIGKILL leaves (every write the broker made is in the copy; nothing after it).
    private func crash() async throws {
        faults.full = false
        faults.syncFails = false
        let image = TemporaryDirectory("chime-simulation-crash")
        try FileManager.default.removeItem(atPath: image.path)
        try FileManager.default.copyItem(atPath: directories.last!.path, toPath: image.path)
        await broker.close()
        directories.append(image)
        broker = try await Self.open(image.path, clock: clock, faults: faults)
        try await rejoin()
        count("crash")
    }

    private func injectFault() {
        if chance(50) { faults.full = true } else { faults.syncFails = true }
        count("fault")
    }

    /// Everything due is fired and consumed, every lease runs out and comes back, until
    /// nothing more arrives; then every acknowledged publish must have been delivered.
    func drainAndCheck() async throws {
        step = -1
        try await restart()
        clock.advance(by: 10_000)
        var quiet = 0
        while quiet < 3 {
            try await advance(by: 6_000)  // past every lease
            var got = 0
            while true {
                let n = try await consume(max: 500, ackPercent: 100)
                if n == 0 { break }
                got += n
            }
            quiet = got == 0 ? quiet + 1 : 0
        }
        print("simulation seed \(seed): \(counts), \(due.count) published, \(delivered.count) delivered, \(acked.count) acked")
        let lost = due.keys.filter { !delivered.contains($0) }.sorted()
        #expect(lost.isEmpty, "seed \(seed): acknowledged publishes never delivered: \(lost.prefix(20))")
        #expect(counts["publish", default: 0] > 0 && delivered.count > 0, "seed \(seed): the simulation did some work: \(counts)")
        await broker.close()
    }
}
