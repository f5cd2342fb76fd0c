import Foundation

/// How hard the workloads push; `quick` is CI's smoke run.
struct Scale: Sendable {
    var messages: Int
    var timeCap: Duration
    var batch: Int
    var inFlight: Int
    var burst: Int
    var latenessRate: Int
    var latenessSeconds: Int
    var memoryCounts: [Int]
    var bodySize: Int
    /// Time to publish a scheduled workload before its first message falls due, beyond
    /// what the peer's measured publish rate needs.
    var leadMilliseconds: Int64
    /// Jobs per run of the worker workload.
    var workerJobs: Int

    static let full = Scale(
        messages: 1_000_000, timeCap: .seconds(10), batch: 1_000, inFlight: 16, burst: 1_000_000, latenessRate: 50_000, latenessSeconds: 30,
        memoryCounts: [1_000_000, 10_000_000], bodySize: 100, leadMilliseconds: 2_000,
        workerJobs: 500_000)
    static let quick = Scale(
        messages: 10_000, timeCap: .seconds(1), batch: 500, inFlight: 4, burst: 5_000, latenessRate: 5_000, latenessSeconds: 1,
        memoryCounts: [20_000], bodySize: 100, leadMilliseconds: 500, workerJobs: 5_000)
}

/// Messages done over the time they took.
struct Throughput: Sendable {
    var messages: Int
    var seconds: Double
    var rate: Double { seconds > 0 ? Double(messages) / seconds : 0 }
}

/// Counts shared by a workload's tasks.
final class Tally: @unchecked Sendable {
    private let lock = NSLock()
    private var issued = 0
    private var done = 0
    private var lateness: [Int64] = []
    private var early = 0
    private var latestReceive: Int64 = 0
    private var lastAt: ContinuousClock.Instant?
    /// Due time (ms) → worst lateness (µs) of the messages received 3 ms or more late.
    private var lateByDue: [Int64: Int64] = [:]

    /// Claims the numbers of up to `n` more of `limit` messages; empty when all are claimed.
    func claim(_ n: Int, limit: Int) -> Range<Int> {
        lock.withLock {
            let k = max(0, min(n, limit - issued))
            defer { issued += k }
            return issued..<(issued + k)
        }
    }

    func finish(_ n: Int) {
        lock.withLock {
            done += n
            lastAt = .now
        }
    }
    var finished: Int { lock.withLock { done } }
    var lastFinish: ContinuousClock.Instant? { lock.withLock { lastAt } }

    /// Room for `n` lateness samples, so that the array never grows while consumers wait
    /// on the lock (a copy of millions of samples is a stall of milliseconds, every
    /// consumer of every system held up by the harness).
    func reserveSamples(_ n: Int) {
        lock.withLock { lateness.reserveCapacity(n) }
    }

    /// Messages due at `dueTimes` (ms) received at `now` (µs): lateness kept in µs.
    func received(_ dueTimes: [Int64], atMicroseconds now: Int64) {
        lock.withLock {
            latestReceive = max(latestReceive, now)
            for d in dueTimes {
                let late = now - d * 1_000
                lateness.append(late)
                if late < 0 { early += 1 }
                if late >= 3_000 { lateByDue[d] = max(lateByDue[d] ?? 0, late) }
            }
        }
    }
    var receivedCount: Int { lock.withLock { lateness.count } }
    /// The due times (ms) whose messages were 3 ms or more late, with the worst lateness (µs).
    var stalls: [(due: Int64, worst: Int64)] { lock.withLock { lateByDue.sorted { $0.key < $1.key }.map { ($0.key, $0.value) } } }
    var samples: (lateness: [Int64], early: Int, latest: Int64) { lock.withLock { (lateness, early, latestReceive) } }
}

enum Workloads {
    /// `messages` published over `connections` producers, each with `inFlight` batches
    /// out at once; no new batch after the time cap.
    static func publish(
        _ peer: any Peer, port: Int, scale: Scale, connections: Int, due: @escaping @Sendable (Int) -> Int64?
    ) async throws -> Throughput {
        let producers = try await (0..<connections).asyncMap { _ in try await peer.producer(port: port) }
        let tally = Tally()
        let started = ContinuousClock.now
        let deadline = started + scale.timeCap
        try await withThrowingTaskGroup(of: Void.self) { group in
            for p in producers {
                for _ in 0..<scale.inFlight {
                    group.addTask {
                        while ContinuousClock.now < deadline {
                            let numbers = tally.claim(scale.batch, limit: scale.messages)
                            guard !numbers.isEmpty else { return }
                            try await p.publish(numbers.map { due($0) })
                            tally.finish(numbers.count)
                        }
                    }
                }
            }
            try await group.waitForAll()
        }
        let elapsed = started.duration(to: tally.lastFinish ?? .now)
        for p in producers { await p.close() }
        return Throughput(messages: tally.finished, seconds: elapsed.seconds)
    }

    /// One producer publishing messages due now while `consumers` consumers take and ack
    /// them: from the first publish to the last ack. The producer stops at the time cap;
    /// the run ends when everything published is acked.
    static func endToEnd(_ peer: any Peer, port: Int, scale: Scale, consumers: Int) async throws -> Throughput {
        let producer = try await peer.producer(port: port)
        let takers = try await (0..<consumers).asyncMap { try await peer.consumer(port: port, index: $0) }
        let mover = try await peer.mover(port: port)
        let published = Tally()
        let acked = Tally()
        let producing = Once()
        let started = ContinuousClock.now
        let deadline = started + scale.timeCap
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                try await withThrowingTaskGroup(of: Void.self) { lanes in
                    for _ in 0..<scale.inFlight {
                        lanes.addTask {
                            while ContinuousClock.now < deadline {
                                let numbers = published.claim(scale.batch, limit: scale.messages)
                                guard !numbers.isEmpty else { return }
                                try await producer.publish([Int64?](repeating: nil, count: numbers.count))
                                published.finish(numbers.count)
                            }
                        }
                    }
                    try await lanes.waitForAll()
                }
                producing.set()
            }
            group.addTask {
                try await consumeAll(takers, acked: acked, sample: nil) { producing.isSet && acked.finished >= published.finished }
            }
            try await group.waitForAll()
        }
        let elapsed = started.duration(to: acked.lastFinish ?? .now)
        await mover?.stop()
        for c in takers { await c.close() }
        await producer.close()
        return Throughput(messages: acked.finished, seconds: elapsed.seconds)
    }

    /// Every consumer taking and acking until `done` says so; then the ones still waiting
    /// for messages are cancelled.
    static func consumeAll(
        _ takers: [any PeerConsumer], acked: Tally, sample: Tally?, until done: @escaping @Sendable () -> Bool
    ) async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            for c in takers {
                group.addTask { try await consume(c, until: done, acked: acked, sample: sample) }
            }
            group.addTask {
                while !done() { try await Task.sleep(for: .milliseconds(5)) }
                throw CancellationError()
            }
            do {
                while try await group.next() != nil {}
            } catch is CancellationError {
                group.cancelAll()
                while true {
                    do {
                        guard try await group.next() != nil else { break }
                    } catch is CancellationError {
                        continue
                    } catch {
                        // A consumer cut off while waiting, after the work was done, is fine.
                        if !done() { throw error }
                    }
                }
            }
        }
    }

    /// Takes and acks (a few acks in flight) until `done` says so.
    static func consume(
        _ c: any PeerConsumer, until done: @escaping @Sendable () -> Bool, acked: Tally, sample: Tally?, max: Int = 1_000
    ) async throws {
        try await withThrowingTaskGroup(of: Void.self) { acks in
            var pending = 0
            while !done() {
                let taken = try await c.take(max: max)
                guard !taken.dueTimes.isEmpty else { continue }
                sample?.received(taken.dueTimes, atMicroseconds: nowMicroseconds())
                acks.addTask {
                    acked.finish(try await c.ack(taken))
                }
                pending += 1
                if pending >= 4 {
                    try await acks.next()
                    pending -= 1
                }
            }
            try await acks.waitForAll()
        }
    }

    /// Publishes `total` messages, message `i` due at `due(i)`, as fast as the peer takes
    /// them; returns when the last is acknowledged.
    static func publishAll(_ peer: any Peer, port: Int, scale: Scale, total: Int, due: @escaping @Sendable (Int) -> Int64) async throws -> Throughput {
        var all = scale
        all.messages = total
        all.timeCap = .seconds(86_400)
        return try await publish(peer, port: port, scale: all, connections: 1) { due($0) }
    }

    /// `total` messages, message `i` due at `due(start, i)` with `start` `lead` ms from now,
    /// published first and then consumed by `consumers` as they fall due: each message's
    /// receive time − due time.
    static func deliverScheduled(
        _ peer: any Peer, port: Int, scale: Scale, total: Int, consumers: Int, lead: Int64, due: @escaping @Sendable (Int64, Int) -> Int64
    ) async throws -> Scheduled {
        let start = nowMilliseconds() + lead
        _ = try await publishAll(peer, port: port, scale: scale, total: total) { due(start, $0) }
        let published = nowMilliseconds()
        let takers = try await (0..<consumers).asyncMap { try await peer.consumer(port: port, index: $0) }
        let mover = try await peer.mover(port: port)
        let acked = Tally()
        let sample = Tally()
        sample.reserveSamples(total + total / 10)  // and deliveries made again
        try await consumeAll(takers, acked: acked, sample: sample) { acked.finished >= total }
        await mover?.stop()
        for c in takers { await c.close() }
        let (lateness, early, latest) = sample.samples
        if ProcessInfo.processInfo.environment["CHIME_BENCH_STALLS"] != nil {
            for s in sample.stalls { print("stall: due +\(s.due - start) ms, worst \(s.worst / 1_000) ms late") }
        }
        return Scheduled(lateness: lateness, early: early, lastReceivedAt: latest, start: start, publishedAt: published)
    }

    struct Scheduled {
        /// Received − due, µs.
        var lateness: [Int64]
        var early: Int
        /// µs since the epoch.
        var lastReceivedAt: Int64
        /// The first due time.
        var start: Int64
        /// When the last publish was acknowledged: after `start`, publishing overran.
        var publishedAt: Int64
    }
}

extension Sequence {
    func asyncMap<T>(_ transform: (Element) async throws -> T) async rethrows -> [T] {
        var out: [T] = []
        for e in self { out.append(try await transform(e)) }
        return out
    }
}

extension Duration {
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}

final class Once: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    func set() { lock.withLock { value = true } }
    var isSet: Bool { lock.withLock { value } }
}
