import ChimeClient
import ChimeProtocol
import ChimeSchedule
import Foundation
import Logging
import Synchronization

/// Chime's schedules at scale (issue 17): `count` schedules firing every second on a real
/// `chime serve`, their occurrences consumed for `seconds`; lateness as a consumer sees it
/// (received − occurrence), occurrences missing and twice, the server's resident memory
/// per schedule, and the time a restart takes to serve again with them all.
enum ScheduleWorkload {
    static let topic = "suite-schedules"
    static let group = "suite-schedules"

    struct Result {
        var createdPerSecond: Double
        var latenessMs: (p50: Double, p99: Double, max: Double)
        /// The broker's side of it: deliveredAt (when a fetch took it) − occurrence.
        var deliveredMs: (p50: Double, p99: Double)
        var occurrences: Int
        var missing: Int
        var duplicates: Int
        var rssBefore: Int
        var rssCreated: Int
        var rssRun: Int
        var restartSeconds: Double
        var rssRestarted: Int
    }

    static func client(_ port: Int, _ name: String) -> ChimeClient {
        var logger = Logger(label: "peer-bench")
        logger.logLevel = .critical
        return ChimeClient(ClientOptions(port: port, name: name, connectAttempts: 1), logger: logger)
    }

    static func run(_ peer: ChimePeer, work: String, count: Int, seconds: Int, say: (String) -> Void) async throws -> Result {
        let data = "\(work)/chime-schedules-\(UUID().uuidString.prefix(8))"
        let port = ServerProcess.freePort()
        var server = try await ServerProcess.start(peer, data: data, port: port)
        var finished = false
        defer {
            server.stop()
            // A failed run keeps the server's data and log to look at.
            if finished {
                try? FileManager.default.removeItem(atPath: data)
                try? FileManager.default.removeItem(atPath: data + ".log")
            } else {
                say("the schedules workload failed; the server's log: \(data).log")
            }
        }
        let admin = client(port, "schedule-bench")
        _ = try await admin.createTopic(
            topic, settings: WireTopicSettings(partitions: 8, retentionMilliseconds: 600_000, retentionBytes: nil, maxMessageBytes: 1 << 20, maxAttempts: 5, dedupWindowMilliseconds: 0))
        try await Task.sleep(for: .seconds(1))
        let rssBefore = server.residentBytes()

        // Created over 8 connections, 32 requests in flight each.
        let created = ContinuousClock.now
        let next = SharedCounter()
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            for c in 0..<8 {
                let creator = client(port, "schedule-bench-\(c)")
                for _ in 0..<32 {
                    tasks.addTask {
                        while true {
                            let n = next.value.wrappingAdd(1, ordering: .relaxed).oldValue
                            guard n < count else { return }
                            let s = Schedule(
                                name: "s\(n)", spec: .every(intervalMs: 1_000, anchorMs: 0), target: ScheduleTarget(topic: topic, body: Array("\(n)".utf8)),
                                options: ScheduleOptions(misfire: .all))
                            _ = try await creator.schedule(s)
                        }
                    }
                }
            }
            try await tasks.waitForAll()
        }
        let createSeconds = created.duration(to: .now).seconds
        say("created \(count) schedules in \(String(format: "%.1f", createSeconds)) s")
        try await Task.sleep(for: .seconds(2))
        let rssCreated = server.residentBytes()

        // Consumed by two consumers for `seconds`; judged over the whole seconds in between.
        let startMs = Int64(Date().timeIntervalSince1970 * 1000)
        let endMs = startMs + Int64(seconds) * 1000
        let seen = Shared<[Int: [Int64]]>([:])
        let lateness = Shared<[Int64]>([])
        let delivered = Shared<[Int64]>([])
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            for c in 0..<2 {
                tasks.addTask {
                    let consumer = client(port, "schedule-bench-consumer-\(c)")
                    var it = consumer.consume(group: group, topics: [topic], prefetch: 4_000).makeAsyncIterator()
                    while Int64(Date().timeIntervalSince1970 * 1000) < endMs + 3_000 {
                        let batch = try await it.fetchBatch()
                        let now = Int64(Date().timeIntervalSince1970 * 1000)
                        var late: [Int64] = []
                        var atDelivery: [Int64] = []
                        var got: [(Int, Int64)] = []
                        late.reserveCapacity(batch.count)
                        for m in batch {
                            guard let at = m.delivery.headers.first(where: { $0.name == "chime-occurrence" }).flatMap({ Int64(String(decoding: $0.value, as: UTF8.self)) }),
                                let n = Int(String(decoding: m.body, as: UTF8.self))
                            else { continue }
                            got.append((n, at))
                            if at >= startMs && at < endMs {
                                late.append(now - at)
                                atDelivery.append(m.delivery.deliveredAt - at)
                            }
                        }
                        seen.value.withLock { s in for (n, at) in got { s[n, default: []].append(at) } }
                        lateness.value.withLock { $0.append(contentsOf: late) }
                        delivered.value.withLock { $0.append(contentsOf: atDelivery) }
                        if !batch.isEmpty { _ = try await consumer.ack(batch) }
                    }
                    await it.leave()
                    await consumer.close()
                }
            }
            try await tasks.waitForAll()
        }
        let rssRun = server.residentBytes()
        // Every second in the window, for every schedule.
        let first = (startMs + 1_999) / 1_000 * 1_000
        let last = (endMs - 1_000) / 1_000 * 1_000
        var missing = 0
        var duplicates = 0
        var occurrences = 0
        let all = seen.value.withLock { $0 }
        for n in 0..<count {
            let times = (all[n] ?? []).filter { $0 >= first && $0 <= last }
            occurrences += times.count
            let distinct = Set(times)
            duplicates += times.count - distinct.count
            missing += Int((last - first) / 1_000 + 1) - distinct.count
        }
        let sorted = lateness.value.withLock { $0 }.sorted()
        func p(_ q: Double) -> Double { sorted.isEmpty ? .nan : Double(percentile(sorted, q)) }
        let sortedDelivered = delivered.value.withLock { $0 }.sorted()
        func d(_ q: Double) -> Double { sortedDelivered.isEmpty ? .nan : Double(percentile(sortedDelivered, q)) }
        await admin.close()

        // A clean stop, then the time until the server answers again, every schedule loaded.
        server.stop()
        server = try await ServerProcess.start(peer, data: data, port: port)
        let restart = server.startup.seconds
        try await Task.sleep(for: .seconds(1))
        let rssRestarted = server.residentBytes()
        finished = true
        return Result(
            createdPerSecond: Double(count) / createSeconds, latenessMs: (p(0.50), p(0.99), Double(sorted.last ?? 0)), deliveredMs: (d(0.50), d(0.99)), occurrences: occurrences,
            missing: missing, duplicates: duplicates, rssBefore: rssBefore, rssCreated: rssCreated, rssRun: rssRun, restartSeconds: restart,
            rssRestarted: rssRestarted)
    }
}

/// State shared by the workload's tasks.
final class Shared<T: Sendable>: Sendable {
    let value: Mutex<T>
    init(_ initial: T) { value = Mutex(initial) }
}

final class SharedCounter: Sendable {
    let value = Atomic<Int>(0)
}
