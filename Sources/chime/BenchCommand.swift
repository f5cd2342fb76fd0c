import ArgumentParser
import ChimeClient
import ChimeProtocol
import Foundation
import Logging

struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure a running broker over TCP: publish, scheduled publish, end to end, fire lateness.",
        discussion: """
            Runs against the broker at --host:--port (start one with `chime serve`; \
            bench/net.sh does both and records the results). Each case uses a topic of its \
            own (bench-<case>-<time>) and deletes it after, so a broker with real data keeps \
            no bench messages; the consumer group of a case that consumes is named like its \
            topic and is deleted with it. A case that fails leaves its topic (and group). Each case prints a verdict against its target; with --strict a missed \
            target makes the exit status 1 (without it the verdicts are information only).

            Cases:
              publish      --messages N in batches of --batch, --in-flight batches at once, one
                           connection; then the same spread over --connections connections
              scheduled    the same with every message due in an hour (nothing fires)
              e2e          one producer and one consumer at once: publish → deliver → ack
              lateness     --rate messages per second falling due for --seconds seconds,
                           consumed as they fire; lateness = receive time − due time
              consume      --messages N published first, then consumed by one consumer: the
                           plain loop (`for try await m in consume(…) { try await m.ack() }`),
                           then the batch API (`nextBatch()` and one `ack(batch)` per batch)

            Examples:
              chime bench
              chime bench --only lateness --rate 50000 --seconds 10
              chime bench --only consume --messages 200000
              chime bench --messages 200000 --json
            """)

    @OptionGroup var broker: BrokerAddress
    @Option(name: .long, help: "Messages per throughput case.") var messages: Int = 1_000_000
    @Option(name: .long, help: "Body size in bytes.") var size: Int = 100
    @Option(name: .long, help: "Messages per publish call.") var batch: Int = 1_000
    @Option(name: .customLong("in-flight"), help: "Publish calls in flight per connection.") var inFlight: Int = 16
    @Option(name: .long, help: "Producer connections of the multi-connection publish case.") var connections: Int = 4
    @Option(name: .long, help: "Partitions of each bench topic.") var partitions: UInt32 = 4
    @Option(name: .long, help: "Due messages per second in the lateness case.") var rate: Int = 50_000
    @Option(name: .long, help: "Seconds the lateness case spreads its due times over.") var seconds: Int = 10
    @Option(name: .long, help: "Cases to run, comma-separated: publish,scheduled,e2e,lateness,consume.") var only: String = "publish,scheduled,e2e,lateness"
    @Flag(name: .long, help: "One JSON object per case on standard output.") var json = false
    @Flag(name: .long, help: "Exit with status 1 when a case misses its target.") var strict = false

    func validate() throws {
        guard messages > 0, size >= 0, batch > 0, batch <= Publish.maxRecords, inFlight > 0, connections > 0, rate > 0, seconds > 0 else {
            throw ValidationError("--messages, --batch, --in-flight, --connections, --rate and --seconds must be positive (--batch at most \(Publish.maxRecords))")
        }
        let known: Set<String> = ["publish", "scheduled", "e2e", "lateness", "consume"]
        for c in only.split(separator: ",") where !known.contains(String(c)) {
            throw ValidationError("unknown case '\(c)'; cases are publish, scheduled, e2e, lateness, consume")
        }
    }

    func run() async throws {
        let cases = Set(only.split(separator: ",").map(String.init))
        let stamp = Int(Date().timeIntervalSince1970)
        let body = [UInt8](repeating: 0x62, count: size)
        var verdicts: [Bool] = []
        do {
            if cases.contains("publish") {
                let one = try await publishCase("publish-1", topic: "bench-publish-\(stamp)", connections: 1, body: body, deliverIn: nil)
                verdicts.append(report(one, target: 1_000_000))
                let many = try await publishCase("publish-\(connections)", topic: "bench-publish\(connections)-\(stamp)", connections: connections, body: body, deliverIn: nil)
                verdicts.append(report(many, target: 1_000_000))
            }
            if cases.contains("scheduled") {
                let s = try await publishCase("scheduled", topic: "bench-scheduled-\(stamp)", connections: 1, body: body, deliverIn: 3_600_000)
                verdicts.append(report(s, target: 500_000))
            }
            if cases.contains("e2e") {
                verdicts.append(report(try await endToEnd(topic: "bench-e2e-\(stamp)", body: body), target: 300_000))
            }
            if cases.contains("lateness") {
                verdicts.append(try await lateness(topic: "bench-lateness-\(stamp)", body: body))
            }
            if cases.contains("consume") {
                verdicts.append(report(try await consumeCase(plainLoop: true, topic: "bench-loop-\(stamp)", body: body), target: 100_000))
                verdicts.append(report(try await consumeCase(plainLoop: false, topic: "bench-batch-\(stamp)", body: body), target: 100_000))
            }
        } catch let e as ClientError {
            throw clientFailure(e)
        }
        let missed = verdicts.filter { !$0 }.count
        if strict && missed > 0 { throw CommandFailure(description: "\(missed) of \(verdicts.count) cases missed their target") }
    }

    // MARK: - Cases

    struct Throughput {
        let name: String
        let messages: Int
        let seconds: Double
        var rate: Double { Double(messages) / seconds }
    }

    private func client(_ name: String) throws -> ChimeClient { try broker.client(name: name) }

    private func makeTopic(_ c: ChimeClient, _ topic: String) async throws {
        try await c.createTopic(
            topic,
            settings: WireTopicSettings(
                partitions: partitions, retentionMilliseconds: 3_600_000, retentionBytes: nil, maxMessageBytes: 1 << 20, maxAttempts: 5,
                dedupWindowMilliseconds: 60_000))
    }

    /// `messages` over `connections` clients, `inFlight` calls of `batch` each at a time.
    private func publishCase(_ name: String, topic: String, connections: Int, body: [UInt8], deliverIn: Int64?) async throws -> Throughput {
        let admin = try client("chime-bench")
        try await makeTopic(admin, topic)
        let clients = try (0..<connections).map { try client("chime-bench-\($0)") }
        // Every connection opened and the topic's partitions known before the clock starts.
        for c in clients { _ = try await c.topics() }
        let progress = Progress(name, total: messages)
        let started = ContinuousClock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            for (i, c) in clients.enumerated() {
                let share = messages / connections + (i < messages % connections ? 1 : 0)
                group.addTask { try await publish(share, via: c, topic: topic, body: body, deliverIn: deliverIn, progress: progress) }
            }
            try await group.waitForAll()
        }
        let elapsed = started.duration(to: .now)
        progress.finish()
        for c in clients { await c.close() }
        try await cleanUp(topic, via: admin)
        await admin.close()
        return Throughput(name: name, messages: messages, seconds: elapsed.seconds)
    }

    private func publish(_ count: Int, via c: ChimeClient, topic: String, body: [UInt8], deliverIn: Int64?, progress: Progress) async throws {
        try await withThrowingTaskGroup(of: Int.self) { group in
            var queued = 0
            var running = 0
            var done = 0
            while done < count {
                while running < inFlight && queued < count {
                    let n = min(batch, count - queued)
                    queued += n
                    running += 1
                    let due = deliverIn.map { ChimeClient.nowMilliseconds() + $0 }
                    group.addTask {
                        _ = try await c.publish((0..<n).map { i in OutgoingRecord(due: due.map { .at($0 + Int64(i % 1000)) }, body: body) }, to: topic)
                        return n
                    }
                }
                let n = try await group.next()!
                running -= 1
                done += n
                progress.add(n)
            }
        }
    }

    /// One producer and one consumer at once; timed from the first publish to the last ack.
    private func endToEnd(topic: String, body: [UInt8]) async throws -> Throughput {
        let producer = try client("chime-bench-producer")
        let consumer = try client("chime-bench-consumer")
        try await makeTopic(producer, topic)
        _ = try await producer.topics()
        let group = topic
        let progress = Progress("e2e", total: messages)
        let started = ContinuousClock.now
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask {
                try await publish(messages, via: producer, topic: topic, body: body, deliverIn: nil, progress: Progress(nil, total: messages))
            }
            tasks.addTask {
                try await consume(messages, via: consumer, group: group, topic: topic, progress: progress) { _ in }
            }
            try await tasks.waitForAll()
        }
        let elapsed = started.duration(to: .now)
        progress.finish()
        await consumer.close()
        try await cleanUp(topic, via: producer)
        await producer.close()
        return Throughput(name: "e2e", messages: messages, seconds: elapsed.seconds)
    }

    /// Deletes a case's topic, then its group (named like the topic; a case that consumed
    /// nothing has none).
    private func cleanUp(_ topic: String, via c: ChimeClient) async throws {
        try await c.deleteTopic(topic)
        do {
            try await c.deleteGroup(topic)
        } catch let error as ClientError where error.wireCode == .unknownGroup {
        }
    }

    /// Consumes `count` messages a fetched batch at a time, acking each batch in one request
    /// (a few ack requests in flight while the next batch is fetched).
    private func consume(
        _ count: Int, via c: ChimeClient, group: String, topic: String, progress: Progress, each: @escaping @Sendable (WireDelivery) -> Void
    ) async throws {
        var got = 0
        var iterator = c.consume(group: group, topics: [topic], prefetch: 5_000).makeAsyncIterator()
        try await withThrowingTaskGroup(of: Void.self) { acks in
            var pending = 0
            while got < count {
                let batch = try await iterator.nextBatch()
                guard !batch.isEmpty else { break }
                for m in batch { each(m.delivery) }
                acks.addTask {
                    let refused = try await c.ack(batch).compactMap { $0 }
                    if let first = refused.first { throw first }
                }
                pending += 1
                if pending >= 8 {
                    try await acks.next()
                    pending -= 1
                }
                got += batch.count
                progress.add(batch.count)
            }
            try await acks.waitForAll()
        }
        await iterator.leave()
    }

    /// `messages` published first (untimed), then consumed and acked by one consumer: the
    /// plain loop a newcomer writes, one `ack()` per message; or the batch API.
    private func consumeCase(plainLoop: Bool, topic: String, body: [UInt8]) async throws -> Throughput {
        let name = plainLoop ? "consume-loop" : "consume-batch"
        let producer = try client("chime-bench-producer")
        try await makeTopic(producer, topic)
        _ = try await producer.topics()
        try await publish(messages, via: producer, topic: topic, body: body, deliverIn: nil, progress: Progress(nil, total: messages))
        let consumer = try client("chime-bench-consumer")
        let group = topic
        let progress = Progress(name, total: messages)
        let started = ContinuousClock.now
        if plainLoop {
            var got = 0
            var messagesIn = consumer.consume(group: group, topics: [topic]).makeAsyncIterator()
            while let m = try await messagesIn.next() {
                try await m.ack()
                got += 1
                if got % 10_000 == 0 { progress.add(10_000) }
                if got == messages { break }
            }
            await consumer.flushAcks()  // timed until the broker has every ack
            await messagesIn.leave()
        } else {
            try await consume(messages, via: consumer, group: group, topic: topic, progress: progress) { _ in }
        }
        let elapsed = started.duration(to: .now)
        progress.finish()
        await consumer.close()
        try await cleanUp(topic, via: producer)
        await producer.close()
        return Throughput(name: name, messages: messages, seconds: elapsed.seconds)
    }

    /// `rate` messages a second due over `seconds` seconds (published ahead of time),
    /// consumed as they fall due.
    /// Returns whether the target (p99 ≤ 5 ms, nothing early) was met.
    private func lateness(topic: String, body: [UInt8]) async throws -> Bool {
        let producer = try client("chime-bench-producer")
        let consumer = try client("chime-bench-consumer")
        try await makeTopic(producer, topic)
        _ = try await producer.topics()
        let total = rate * seconds
        let lead: Int64 = 3_000 + Int64(total / 200)  // time to publish them all first
        let start = ChimeClient.nowMilliseconds() + lead
        say("lateness: publishing \(total) messages due \(rate)/s over \(seconds) s, the first in \(lead) ms")
        var published = 0
        while published < total {
            let n = min(batch, total - published)
            let first = published
            _ = try await producer.publish(
                (0..<n).map { i in OutgoingRecord(due: .at(start + Int64((first + i) * 1_000 / rate)), body: body) }, to: topic)
            published += n
        }
        if ChimeClient.nowMilliseconds() >= start { say("lateness: warning: publishing took longer than the lead; early messages count late") }
        let samples = Samples(capacity: total)
        let progress = Progress("lateness", total: total)
        try await consume(total, via: consumer, group: topic, topic: topic, progress: progress) { d in
            samples.add(received: ChimeClient.nowMilliseconds(), due: d.dueAt, delivered: d.deliveredAt)
        }
        progress.finish()
        let (received, delivered) = samples.sorted()
        func pct(_ v: [Int64], _ p: Double) -> Int64 { v.isEmpty ? 0 : v[min(v.count - 1, Int(Double(v.count) * p))] }
        let early = received.filter { $0 < 0 }.count
        if json {
            print(
                "{\"case\":\"lateness\",\"messages\":\(total),\"ratePerSecond\":\(rate),\"receivedP50Ms\":\(pct(received, 0.5)),\"receivedP99Ms\":\(pct(received, 0.99)),"
                    + "\"receivedMaxMs\":\(received.last ?? 0),\"handedOutP50Ms\":\(pct(delivered, 0.5)),\"handedOutP99Ms\":\(pct(delivered, 0.99)),"
                    + "\"handedOutMaxMs\":\(delivered.last ?? 0),\"early\":\(early)}")
        } else {
            print(
                "lateness at \(rate) due/s over \(seconds) s (\(total) messages): received − due p50 \(pct(received, 0.5)) ms, p99 \(pct(received, 0.99)) ms, max \(received.last ?? 0) ms"
                    + " (target p99 ≤ 5 ms: \(pct(received, 0.99) <= 5 ? "met" : "NOT met")); handed out by the broker − due p50 \(pct(delivered, 0.5)) ms, p99 \(pct(delivered, 0.99)) ms, max \(delivered.last ?? 0) ms; early: \(early)"
            )
        }
        fflush(nil)
        await consumer.close()
        try await cleanUp(topic, via: producer)
        await producer.close()
        return pct(received, 0.99) <= 5 && early == 0
    }

    /// Prints a case's result with its verdict; returns whether the target was met.
    private func report(_ t: Throughput, target: Double) -> Bool {
        defer { fflush(nil) }
        if json {
            print("{\"case\":\"\(t.name)\",\"messages\":\(t.messages),\"bytes\":\(size),\"seconds\":\(String(format: "%.3f", t.seconds)),\"messagesPerSecond\":\(Int(t.rate))}")
        } else {
            let verdict = t.rate >= target ? "met" : "NOT met"
            print(
                "\(t.name.padding(toLength: 14, withPad: " ", startingAt: 0)) \(t.messages) messages of \(size) B in \(String(format: "%.2f", t.seconds)) s: \(Int(t.rate)) messages/s (target ≥ \(Int(target)): \(verdict))"
            )
        }
        return t.rate >= target
    }
}

private func say(_ line: String) {
    FileHandle.standardError.write((line + "\n").data(using: .utf8)!)
}

extension Duration {
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}

/// Progress on standard error, at most once a second.
final class Progress: @unchecked Sendable {
    private let name: String?
    private let total: Int
    private let lock = NSLock()
    private var done = 0
    private var last = Date()

    init(_ name: String?, total: Int) {
        self.name = name
        self.total = total
    }

    func add(_ n: Int) {
        let line: String? = lock.withLock {
            done += n
            guard let name, Date().timeIntervalSince(last) >= 1 else { return nil }
            last = Date()
            return "\(name): \(done) of \(total)"
        }
        if let line { say(line) }
    }

    func finish() {}
}

/// Lateness samples (ms), from the consumer's loop.
final class Samples: @unchecked Sendable {
    private let lock = NSLock()
    private var received: [Int64] = []
    private var delivered: [Int64] = []

    init(capacity: Int) {
        received.reserveCapacity(capacity)
        delivered.reserveCapacity(capacity)
    }

    func add(received r: Int64, due: Int64, delivered d: Int64) {
        lock.withLock {
            received.append(r - due)
            delivered.append(d - due)
        }
    }

    func sorted() -> ([Int64], [Int64]) {
        lock.withLock { (received.sorted(), delivered.sorted()) }
    }
}
