import ArgumentParser
import ChimeClient
import ChimeProtocol
import ChimeWorker
import Foundation
import Logging
import Synchronization

/// Issue 18's figures against a real `chime serve` (started here, on a fresh data
/// directory, from the `chime` built beside this program): lock acquire/release pairs per
/// second, callbacks parked and completed per second, the broker's memory for many parked
/// callbacks (each resumed exactly once at its timeout, and how late), completed callbacks, and the time
/// from `abort` to the job's task seeing its cancellation. Progress goes to standard error;
/// the report (text, then one JSON line) to standard output. Nothing here judges a figure:
/// goals are printed beside them.
@main
struct CoordinationBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "CoordinationBench",
        abstract: "Locks, callbacks and aborts against a real chime serve (bench/coordination.sh runs it).")

    @Option(help: "Lock names (each acquired and released once per pass).") var lockNames = 20_000
    @Option(help: "Requests in flight at once, on one client.") var inFlight = 64
    @Option(help: "Callbacks parked together (90 s timeout, resumed at it): memory, each once, lateness.") var callbacks = 100_000
    @Option(help: "Callbacks parked (1 h timeout), then completed: completions per second.") var completions = 10_000
    @Option(help: "Jobs aborted while running.") var aborts = 100
    @Option(help: "Children of the flow (no-op children, acked in batches).") var children = 100_000
    @Option(help: "The chime binary (default: beside this program).") var chime: String?
    @Option(help: "Where the broker's data directory goes (a fresh one inside).") var work = NSTemporaryDirectory()

    func run() async throws {
        let binary = chime ?? URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("chime").path
        let dir = URL(fileURLWithPath: work).appendingPathComponent("coordination-bench-\(getpid())").path
        try? FileManager.default.removeItem(atPath: dir)
        let server = try Server(binary: binary, data: dir + "/data")
        defer {
            server.stop()
            try? FileManager.default.removeItem(atPath: dir)
        }
        var logger = Logger(label: "coordination-bench")
        logger.logLevel = .warning
        let client = ChimeClient(ClientOptions(port: server.port, name: "coordination-bench"), logger: logger)
        var report = Report()
        report.add("machine", "\(ProcessInfo.processInfo.activeProcessorCount) cores, \(ProcessInfo.processInfo.physicalMemory >> 30) GiB")

        try await lockPairs(client, &report)
        try await parkedCallbacks(client, server, &report)
        try await callbackCompletions(client, &report)
        try await abortLatency(client, logger, &report)
        try await flowOfNoOps(client, &report)
        await client.close()
        report.print()
    }

    // MARK: - Locks

    /// Acquire and release of `lockNames` names, `inFlight` pairs at once.
    func lockPairs(_ client: ChimeClient, _ report: inout Report) async throws {
        progress("locks: \(lockNames) acquire/release pairs, \(inFlight) in flight")
        let names = (0..<lockNames).map { "bench-lock-\($0)" }
        let started = ContinuousClock.now
        let failures = try await forEach(names, inFlight: inFlight) { name in
            let lease = try await client.acquire(name, ttl: .seconds(30), wait: .zero)
            try await client.release(lease)
        }
        let seconds = seconds(ContinuousClock.now - started)
        report.add("lock acquire/release pairs per second", Double(lockNames) / seconds, unit: "/s")
        report.add("lock pairs refused or failed", Double(failures), unit: "")
    }

    // MARK: - Callbacks

    /// Publishes `count` jobs to a fresh topic and fetches them in group `group`, parking
    /// each (`park`, `inFlight` at a time). Returns what `park` returned per job body, and
    /// the consumer (to read the resumed jobs with).
    func parkAll<T: Sendable>(
        _ client: ChimeClient, topic: String, group: String, count: Int, _ park: @escaping @Sendable (ConsumedMessage) async throws -> T
    ) async throws -> (parked: [String: T], seconds: Double, consumer: Consumer.Iterator) {
        _ = try await client.createTopic(topic, settings: WireTopicSettings(
            partitions: 4, retentionMilliseconds: nil, retentionBytes: nil, maxMessageBytes: 1 << 20, maxAttempts: 5, dedupWindowMilliseconds: 0))
        _ = try await client.createGroup(group, settings: WireGroupSettings(leaseMilliseconds: 600_000))
        for start in stride(from: 0, to: count, by: 10_000) {
            _ = try await client.publish((start..<min(start + 10_000, count)).map { OutgoingRecord(body: Array("job \($0)".utf8)) }, to: topic)
        }
        var messages = client.consume(group: group, topics: [topic], prefetch: 2_000).makeAsyncIterator()
        var parked: [String: T] = [:]
        parked.reserveCapacity(count)
        let started = ContinuousClock.now
        while parked.count < count {
            let batch = try await messages.fetchBatch()
            let done = Mutex<[(String, T)]>([])
            _ = try await forEach(batch, inFlight: inFlight) { m in
                let value = try await park(m)
                done.withLock { $0.append((String(decoding: m.body, as: UTF8.self), value)) }
            }
            for (body, value) in done.withLock({ $0 }) { parked[body] = value }
            if parked.count % 100_000 < batch.count { progress("  parked \(parked.count)") }
        }
        return (parked, seconds(ContinuousClock.now - started), messages)
    }

    /// Parks `callbacks` jobs with a timeout nobody completes, measures the broker's memory
    /// while they wait, then reads them all back at their timeouts: each once, and how late.
    func parkedCallbacks(_ client: ChimeClient, _ server: Server, _ report: inout Report) async throws {
        let rssBefore = server.rssKiB()
        progress("callbacks: parking \(callbacks) jobs with a 90 s timeout (broker RSS \(rssBefore / 1024) MiB)")
        let timeout: Int64 = 90_000
        var (parked, parkSeconds, messages) = try await parkAll(client, topic: "bench-parked", group: "parked", count: callbacks) { m in
            let due = ChimeClient.nowMilliseconds() + timeout
            _ = try await m.awaitCallback(timeout: .milliseconds(timeout))
            return due
        }
        try await Task.sleep(for: .seconds(2))
        let rssParked = server.rssKiB()
        report.add("callbacks parked per second (fetch + park, \(inFlight) in flight)", Double(callbacks) / parkSeconds, unit: "/s")
        report.add("broker RSS growth for \(callbacks) parked callbacks", Double(rssParked - rssBefore) / 1024, unit: "MiB", goal: "≤ 64 MiB for 1,000,000")
        progress("callbacks: waiting for their timeouts")
        var seen: [String: Int] = [:]
        var lateness: [Double] = []
        var notTimedOut = 0
        while seen.count < callbacks {
            let batch = try await messages.fetchBatch()
            for m in batch {
                let body = String(decoding: m.body, as: UTF8.self)
                seen[body, default: 0] += 1
                if let due = parked[body] { lateness.append(Double(m.delivery.deliveredAt - due)) }
                if m.delivery.headers.first(where: { $0.name == "chime-callback" })?.value != Array("waiting".utf8) { notTimedOut += 1 }
            }
            _ = try await client.ack(batch)
        }
        parked = [:]
        lateness.sort()
        let twice = seen.values.filter { $0 > 1 }.count
        report.add("timed-out callbacks resumed, each once", Double(seen.count), unit: "", goal: "\(callbacks), none twice (twice: \(twice), not marked timed out: \(notTimedOut))")
        report.add("callback timeout lateness p50 (delivered − (parked + timeout))", percentile(lateness, 0.5), unit: "ms")
        report.add("callback timeout lateness p99", percentile(lateness, 0.99), unit: "ms")
        await messages.leave()
    }

    /// Parks `completions` jobs awaiting callbacks (1 h timeout), completes every token and
    /// consumes the resumed jobs: each once, with its payload; a second completion refused.
    func callbackCompletions(_ client: ChimeClient, _ report: inout Report) async throws {
        progress("completions: parking \(completions) jobs, then completing them")
        var (tokens, _, messages) = try await parkAll(client, topic: "bench-completed", group: "completers", count: completions) { m in
            try await m.awaitCallback(timeout: .seconds(3_600))
        }
        let entries = tokens.map { ($0.value, $0.key) }
        tokens = [:]
        let started = ContinuousClock.now
        let refused = try await forEach(entries, inFlight: inFlight) { token, body in
            try await client.complete(callback: token, payload: Array(body.utf8))
        }
        let completeSeconds = seconds(ContinuousClock.now - started)
        report.add("callback completions per second (\(completions) parked at once, \(inFlight) in flight)", Double(entries.count) / completeSeconds, unit: "/s")
        report.add("completions refused", Double(refused), unit: "")
        let again = try await forEach(Array(entries.prefix(1_000)), inFlight: inFlight) { token, _ in
            try await client.complete(callback: token, payload: [])
        }
        report.add("second completions refused (of \(min(1_000, entries.count)) tried)", Double(again), unit: "", goal: "all")
        var seen: [String: Int] = [:]
        var wrongPayload = 0
        while seen.count < entries.count {
            let batch = try await messages.fetchBatch()
            for m in batch {
                let body = String(decoding: m.body, as: UTF8.self)
                seen[body, default: 0] += 1
                if m.delivery.headers.first(where: { $0.name == "chime-callback-payload" })?.value != Array(body.utf8) { wrongPayload += 1 }
            }
            _ = try await client.ack(batch)
        }
        let twice = seen.values.filter { $0 > 1 }.count
        report.add("completed callbacks resumed, each once", Double(seen.count), unit: "", goal: "\(entries.count), none twice (twice: \(twice), wrong payload: \(wrongPayload))")
        await messages.leave()
    }

    // MARK: - Abort

    struct Sleeper: ChimeJob {
        static let jobName = "bench-sleeper"
        var n: Int
    }

    /// A ChimeWorker runs sleeping jobs; each is aborted by id, and the time from the
    /// abort's request to the job's task seeing its cancellation is measured.
    func abortLatency(_ client: ChimeClient, _ logger: Logger, _ report: inout Report) async throws {
        let topic = "bench-aborts"
        _ = try await client.createTopic(topic, settings: WireTopicSettings(
            partitions: 1, retentionMilliseconds: nil, retentionBytes: nil, maxMessageBytes: 1 << 20, maxAttempts: 5, dedupWindowMilliseconds: 0))
        progress("aborts: \(aborts) running jobs aborted one by one (default settings)")
        var ids: [Int: WireMessageID] = [:]
        for n in 0..<aborts { ids[n] = try await client.enqueue(Sleeper(n: n), to: topic) }
        let running = Mutex<Set<Int>>([])
        let cancelledAt = Mutex<[Int: ContinuousClock.Instant]>([:])
        let worker = ChimeWorker(client: client, options: .init(gracePeriod: .seconds(1), name: "bench-aborts"), logger: logger)
        worker.register(Sleeper.self, retry: .never) { job, _ in
            running.withLock { _ = $0.insert(job.n) }
            do {
                try await Task.sleep(for: .seconds(3_600))
            } catch {
                cancelledAt.withLock { $0[job.n] = .now }
                throw error
            }
        }
        worker.addPool(WorkerPool(group: "abort-bench", topics: [topic], concurrency: 8))
        let runner = Task { try await worker.run() }
        var latencies: [Double] = []
        for n in 0..<aborts {
            while !running.withLock({ $0.contains(n) }) { try await Task.sleep(for: .milliseconds(5)) }
            // Anywhere in the worker's polling cycle.
            try await Task.sleep(for: .milliseconds(Int.random(in: 0..<250)))
            let sent = ContinuousClock.now
            _ = try await client.abort(ids[n]!, reason: "bench")
            while cancelledAt.withLock({ $0[n] }) == nil { try await Task.sleep(for: .milliseconds(1)) }
            latencies.append(seconds(cancelledAt.withLock { $0[n]! } - sent) * 1_000)
        }
        runner.cancel()
        _ = try? await runner.value
        latencies.sort()
        report.add("abort → job task cancelled p50", percentile(latencies, 0.5), unit: "ms")
        report.add("abort → job task cancelled p99", percentile(latencies, 0.99), unit: "ms", goal: "≤ 1,000 ms")
    }

    // MARK: - Flows

    /// A flow of `children` no-op children: from the spawn's request to the continuation's
    /// delivery, the children fetched and acked in batches by one consumer (what a pool of
    /// workers does, minus the work).
    func flowOfNoOps(_ client: ChimeClient, _ report: inout Report) async throws {
        for topic in ["bench-split", "bench-children", "bench-reduce"] {
            _ = try await client.createTopic(topic, settings: WireTopicSettings(
                partitions: topic == "bench-children" ? 4 : 1, retentionMilliseconds: nil, retentionBytes: nil, maxMessageBytes: 1 << 20, maxAttempts: 5,
                dedupWindowMilliseconds: 0))
        }
        _ = try await client.createGroup("flow-bench", settings: WireGroupSettings(mode: .shared))
        progress("flow: \(children) no-op children")
        _ = try await client.publish(Array("split".utf8), to: "bench-split")
        var parents = client.consume(group: "flow-bench", topics: ["bench-split"]).makeAsyncIterator()
        let parent = try await parents.next()!
        let records = (0..<children).map { OutgoingRecord(body: Array("c\($0)".utf8)) }
        let started = ContinuousClock.now
        let flow = try await parent.spawn(records, on: "bench-children", then: OutgoingRecord(body: Array("reduce".utf8)), on: "bench-reduce")
        let spawned = ContinuousClock.now
        var kids = client.consume(group: "flow-bench", topics: ["bench-children"], prefetch: 5_000).makeAsyncIterator()
        var acked = 0
        while acked < children {
            let batch = try await kids.fetchBatch()
            _ = try await client.ack(batch)
            acked += batch.count
        }
        var reducers = client.consume(group: "flow-bench", topics: ["bench-reduce"]).makeAsyncIterator()
        _ = try await reducers.next()
        let done = ContinuousClock.now
        let total = seconds(done - started)
        report.add("flow: spawn of \(children) children (request to answer)", seconds(spawned - started) * 1_000, unit: "ms")
        report.add("flow: spawn to continuation delivered", total * 1_000, unit: "ms")
        report.add("flow: children per second, spawn to continuation", Double(children) / total, unit: "/s", goal: "≥ 100,000/s")
        let status = try await client.flow(flow)
        report.add("flow: outcomes counted", Double(status.succeeded), unit: "", goal: "\(children)")
        await parents.leave()
        await kids.leave()
        await reducers.leave()
    }

    // MARK: - Helpers

    /// Runs `body` for each item, `inFlight` at a time; returns how many threw.
    func forEach<T: Sendable>(_ items: [T], inFlight: Int, _ body: @escaping @Sendable (T) async throws -> Void) async throws -> Int {
        try await withThrowingTaskGroup(of: Int.self) { group in
            var next = 0
            var failed = 0
            func add() {
                let item = items[next]
                next += 1
                group.addTask {
                    do {
                        try await body(item)
                        return 0
                    } catch {
                        return 1
                    }
                }
            }
            while next < min(inFlight, items.count) { add() }
            while let f = try await group.next() {
                failed += f
                if next < items.count { add() }
            }
            return failed
        }
    }
}

func progress(_ line: String) {
    FileHandle.standardError.write(Data("[coordination] \(line)\n".utf8))
}

func seconds(_ d: Duration) -> Double {
    Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
}

func percentile(_ sorted: [Double], _ p: Double) -> Double {
    guard !sorted.isEmpty else { return .nan }
    return sorted[min(sorted.count - 1, Int((Double(sorted.count) * p).rounded(.down)))]
}

/// Figures in order, printed as aligned text and one JSON line.
struct Report {
    struct Row {
        var name: String
        var value: String
        var number: Double?
        var goal: String?
    }
    var rows: [Row] = []

    mutating func add(_ name: String, _ text: String) { rows.append(Row(name: name, value: text)) }

    mutating func add(_ name: String, _ value: Double, unit: String, goal: String? = nil) {
        let shown = value >= 100 ? String(format: "%.0f", value) : String(format: "%.2f", value)
        rows.append(Row(name: name, value: unit.isEmpty ? shown : "\(shown) \(unit)", number: value, goal: goal))
    }

    func print() {
        let width = rows.map(\.name.count).max() ?? 0
        for r in rows {
            Swift.print(r.name.padding(toLength: width, withPad: " ", startingAt: 0) + "  " + r.value + (r.goal.map { "   (goal: \($0))" } ?? ""))
        }
        var json: [String: Any] = [:]
        for r in rows { json[r.name] = r.number ?? r.value }
        let data = try! JSONSerialization.data(withJSONObject: json, options: [.sortedKeys])
        Swift.print(String(decoding: data, as: UTF8.self))
    }
}

/// `chime serve` on a free port, its admin port off.
final class Server: @unchecked Sendable {
    let process = Process()
    let port: Int

    init(binary: String, data: String) throws {
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = ["serve", "--data", data, "--port", "0", "--no-admin"]
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = FileHandle.nullDevice
        try process.run()
        var output = ""
        while !output.contains("Ctrl-C to stop") {
            let chunk = pipe.fileHandleForReading.availableData
            if chunk.isEmpty { break }
            output += String(decoding: chunk, as: UTF8.self)
        }
        let line = output.split(separator: "\n").first { $0.contains("serving the broker protocol on") } ?? ""
        let address = line.components(separatedBy: "protocol on ").last?.split(separator: " ").first ?? ""
        port = Int(address.split(separator: ":").last?.prefix { $0.isNumber } ?? "") ?? -1
        guard port > 0 else { throw ValidationError("chime serve did not start: \(output)") }
    }

    /// Its resident set (VmRSS), KiB.
    func rssKiB() -> Int {
        let status = (try? String(contentsOfFile: "/proc/\(process.processIdentifier)/status", encoding: .utf8)) ?? ""
        let line = status.split(separator: "\n").first { $0.hasPrefix("VmRSS:") } ?? ""
        return Int(line.split(separator: " ").dropFirst().first ?? "") ?? 0
    }

    func stop() {
        process.terminate()
        process.waitUntilExit()
    }
}
