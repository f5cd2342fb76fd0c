import ArgumentParser
import ChimeClient
import ChimeProtocol
import Foundation
import Logging

/// The client side of bench/partitions.sh: many topics on one broker, created through the
/// protocol, then a trickle of traffic on every partition. The script starts and samples
/// the server; this program only talks to it. Each subcommand prints one JSON object on
/// standard output (progress goes to standard error).
@main
struct PartitionBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "PartitionBench",
        abstract: "Many partitions on one broker: create topics, trickle traffic over them, count them after a restart.",
        discussion: """
            bench/partitions.sh builds this, starts `chime serve`, samples it from /proc and
            records the results; run that rather than this.
            """,
        subcommands: [CreateTopics.self, Trickle.self, CountTopics.self])
}

/// What every subcommand needs: where the broker is and how the bench topics are named.
struct BenchTopics: ParsableArguments {
    @Option(help: "Broker port on 127.0.0.1.") var port: Int
    @Option(help: "Bench topics: <prefix>-00000 …") var prefix = "pb"
    @Option(help: "How many bench topics.") var topics: Int = 2_500
    @Option(help: "Partitions per topic.") var partitions: UInt32 = 4

    func name(_ i: Int) -> String { "\(prefix)-\(String(format: "%05d", i))" }

    func client(_ name: String) -> ChimeClient {
        var logger = Logger(label: "partition-bench")
        logger.logLevel = .warning
        return ChimeClient(ClientOptions(port: port, name: name, connectAttempts: 3), logger: logger)
    }

    func validate() throws {
        guard (1...65_535).contains(port), topics > 0, partitions > 0 else {
            throw ValidationError("--port must be 1...65535, --topics and --partitions positive")
        }
    }
}

/// Creates the bench topics, `inFlight` creates pipelined on one connection.
struct CreateTopics: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "create", abstract: "Create the bench topics.")
    @OptionGroup var bench: BenchTopics
    @Option(name: .customLong("in-flight"), help: "Creates in flight at once.") var inFlight = 32

    func run() async throws {
        let c = bench.client("partition-bench-create")
        let settings = WireTopicSettings(
            partitions: bench.partitions, retentionMilliseconds: 3_600_000, retentionBytes: nil, maxMessageBytes: 1 << 20, maxAttempts: 5,
            dedupWindowMilliseconds: 60_000)
        let started = ContinuousClock.now
        var created = 0
        var failure: String?
        var failedAt: Int?
        let step = max(1, bench.topics / 10)
        await withTaskGroup(of: (index: Int, error: String?).self) { group in
            var next = 0
            var running = 0
            while created < bench.topics, failure == nil || running > 0 {
                while failure == nil, running < inFlight, next < bench.topics {
                    let i = next
                    let name = bench.name(i)
                    group.addTask {
                        do {
                            _ = try await c.createTopic(name, settings: settings)
                            return (i, nil)
                        } catch {
                            return (i, "\(error)")
                        }
                    }
                    next += 1
                    running += 1
                }
                guard let done = await group.next() else { break }
                running -= 1
                if let error = done.error {
                    // The first failure is the finding; the creates already out still land.
                    if failure == nil || done.index < failedAt! {
                        failure = error
                        failedAt = done.index
                    }
                } else {
                    created += 1
                    if created % step == 0 {
                        say("create: \(created) of \(bench.topics) topics (\(created * Int(bench.partitions)) partitions), \(format(started.duration(to: .now).seconds)) s")
                    }
                }
            }
        }
        let seconds = started.duration(to: .now).seconds
        await c.close()
        var object: [String: Any] = [
            "phase": "create", "topics": bench.topics, "created": created, "partitions": created * Int(bench.partitions), "seconds": seconds,
        ]
        if let failure {
            object["error"] = failure
            object["failedAtTopic"] = failedAt!
        }
        printJSON(object)
    }
}

/// Every partition gets `perPartition` messages spread evenly over `seconds` (odd ones due
/// 2–5 s after their publish, even ones at once); one group consumes the first
/// `groupTopics` topics and acks what it gets.
struct Trickle: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "trickle", abstract: "A few messages on every partition over a few seconds.")
    @OptionGroup var bench: BenchTopics
    @Option(help: "Seconds the publishes are spread over.") var seconds = 20
    @Option(name: .customLong("per-partition"), help: "Messages per partition.") var perPartition = 4
    @Option(name: .customLong("group-topics"), help: "Topics the consumer group reads (the first ones).") var groupTopics = 250
    @Option(help: "Publishing connections.") var connections = 4
    @Option(name: .customLong("in-flight"), help: "Publish calls in flight at most.") var inFlight = 512

    func run() async throws {
        let partitionCount = bench.topics * Int(bench.partitions)
        let total = partitionCount * perPartition
        let readTopics = min(groupTopics, bench.topics)
        let expected = readTopics * Int(bench.partitions) * perPartition
        let clients = (0..<connections).map { bench.client("partition-bench-trickle-\($0)") }
        let consumerClient = bench.client("partition-bench-group")
        let stats = TrickleStats()
        let deadline = ContinuousClock.now + .seconds(seconds + 15)
        let body = [UInt8](repeating: 0x74, count: 100)
        say("trickle: \(total) messages over \(seconds) s (\(perPartition) per partition, half due 2–5 s ahead); one group on \(readTopics) topics")
        let started = ContinuousClock.now
        let readNames = (0..<readTopics).map(bench.name)
        async let consumed: Void = Self.consume(consumerClient, topics: readNames, expected: expected, until: deadline, stats: stats)
        await withTaskGroup(of: Void.self) { group in
            var running = 0
            var next = 0
            let interval = Double(seconds) / Double(total)
            while next < total {
                // Everything due by now goes out; then a 10 ms tick.
                let due = min(total, Int(started.duration(to: .now).seconds / interval) + 1)
                while next < due {
                    if running >= inFlight {
                        await group.next()
                        running -= 1
                    }
                    let k = next % partitionCount
                    let j = next / partitionCount
                    let topic = bench.name(k / Int(bench.partitions))
                    let partition = Int32(k % Int(bench.partitions))
                    let c = clients[next % clients.count]
                    let due: WireDue? = j % 2 == 1 ? .at(ChimeClient.nowMilliseconds() + 2_000 + Int64(k % 3_000)) : nil
                    group.addTask {
                        let sent = ContinuousClock.now
                        do {
                            _ = try await c.publish([OutgoingRecord(due: due, body: body)], to: topic, partition: partition)
                            stats.published(milliseconds: sent.duration(to: .now).seconds * 1_000)
                        } catch {
                            stats.failed("\(error)")
                        }
                    }
                    running += 1
                    next += 1
                }
                try? await Task.sleep(for: .milliseconds(10))
            }
            await group.waitForAll()
        }
        let publishSeconds = started.duration(to: .now).seconds
        say("trickle: published in \(format(publishSeconds)) s; waiting for the group's last deliveries")
        await consumed
        for c in clients { await c.close() }
        await consumerClient.close()
        var object = stats.summary()
        object["phase"] = "trickle"
        object["messages"] = total
        object["publishSeconds"] = publishSeconds
        object["groupTopics"] = readTopics
        object["groupExpected"] = expected
        printJSON(object)
    }

    /// Reads and acks until `expected` arrived or the deadline passed (a fetch waits up to
    /// 2 s on the broker, so the deadline is checked between fetches).
    private static func consume(
        _ c: ChimeClient, topics: [String], expected: Int, until deadline: ContinuousClock.Instant, stats: TrickleStats
    ) async {
        guard expected > 0 else { return }
        var iterator = c.consume(group: "pb-trickle", topics: topics, prefetch: 1_000).makeAsyncIterator()
        var got = 0
        while got < expected, ContinuousClock.now < deadline {
            do {
                let batch = try await iterator.nextBatch()
                let now = ChimeClient.nowMilliseconds()
                for m in batch { stats.consumed(lateMilliseconds: now - m.delivery.dueAt, scheduled: m.delivery.dueAt > m.delivery.publishedAt) }
                got += batch.count
                let refused = try await c.ack(batch).compactMap { $0 }
                if let first = refused.first { stats.failed("ack: \(first)") }
            } catch {
                stats.failed("consume: \(error)")
                try? await Task.sleep(for: .milliseconds(200))
            }
        }
        await iterator.leave()
    }
}

/// Lists the topics after a restart: how many bench topics came back, and how long the
/// first answer took.
struct CountTopics: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "count", abstract: "Count the bench topics the broker lists.")
    @OptionGroup var bench: BenchTopics

    func run() async throws {
        let c = bench.client("partition-bench-count")
        let started = ContinuousClock.now
        var object: [String: Any] = ["phase": "count"]
        do {
            let listed = try await c.topics().filter { $0.name.hasPrefix(bench.prefix + "-") }
            object["topics"] = listed.count
            object["partitions"] = listed.reduce(0) { $0 + Int($1.settings.partitions) }
        } catch {
            object["error"] = "\(error)"
        }
        object["seconds"] = started.duration(to: .now).seconds
        await c.close()
        printJSON(object)
    }
}

/// Counts and latencies of the trickle, from many tasks.
final class TrickleStats: @unchecked Sendable {
    private let lock = NSLock()
    private var publishMilliseconds: [Double] = []
    private var failures = 0
    private var firstFailure: String?
    private var consumedCount = 0
    private var scheduledLateMilliseconds: [Int64] = []
    private var early = 0

    func published(milliseconds: Double) { lock.withLock { publishMilliseconds.append(milliseconds) } }

    func failed(_ error: String) {
        lock.withLock {
            failures += 1
            if firstFailure == nil { firstFailure = error }
        }
    }

    func consumed(lateMilliseconds: Int64, scheduled: Bool) {
        lock.withLock {
            consumedCount += 1
            if scheduled {
                scheduledLateMilliseconds.append(lateMilliseconds)
                if lateMilliseconds < 0 { early += 1 }
            }
        }
    }

    func summary() -> [String: Any] {
        lock.withLock {
            let publish = publishMilliseconds.sorted()
            let late = scheduledLateMilliseconds.sorted()
            var object: [String: Any] = [
                "published": publish.count, "failed": failures, "publishP50Ms": percentile(publish, 0.5), "publishP99Ms": percentile(publish, 0.99),
                "publishMaxMs": publish.last ?? 0, "consumed": consumedCount, "scheduledConsumed": late.count,
                "scheduledLateP50Ms": percentile(late.map(Double.init), 0.5), "scheduledLateP99Ms": percentile(late.map(Double.init), 0.99),
                "scheduledLateMaxMs": late.last ?? 0, "early": early,
            ]
            if let firstFailure { object["firstError"] = firstFailure }
            return object
        }
    }
}

private func percentile(_ sorted: [Double], _ p: Double) -> Double {
    sorted.isEmpty ? 0 : sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))]
}

private func format(_ seconds: Double) -> String { String(format: "%.1f", seconds) }

private func say(_ line: String) {
    FileHandle.standardError.write((line + "\n").data(using: .utf8)!)
}

private func printJSON(_ object: [String: Any]) {
    let data = try! JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
    print(String(decoding: data, as: UTF8.self))
    fflush(nil)
}

extension Duration {
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}
