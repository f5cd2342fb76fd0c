import ChimeClient
import ChimeProtocol
import ChimeWorker
import Foundation
import Logging

/// Workload 8: jobs published first, then executed by worker processes, each job's body a
/// JSON object decoded by the worker and acked. Chime runs `ChimeWorker` (the real runtime:
/// shared group, pools, leases, queued acks); beanstalkd and Redis run their consumers'
/// best pattern (the same batches and pipelining as workload 3) with the same JSON decode
/// per job. The worker processes are this executable started with `--worker-process`.
enum WorkerWorkload {
    /// The job every worker runs: decoded, nothing done.
    struct NoOp: ChimeJob {
        static let jobName = "noop"
        var n: Int
        var pad: String
    }

    static let topic = "suite-jobs"
    static let group = "suite-jobs"

    /// A job's JSON, padded to about `size` bytes (the other workloads' body size).
    static func body(_ n: Int, size: Int) -> [UInt8] {
        let head = "{\"n\":\(n),\"pad\":\""
        let pad = String(repeating: "a", count: max(0, size - head.utf8.count - 2))
        return Array((head + pad + "\"}").utf8)
    }

    /// Publishes `count` jobs on `peer` (Chime: with the `chime-job` header, through the
    /// client's batched publish).
    static func publishJobs(_ peer: any Peer, port: Int, scale: Scale, count: Int) async throws {
        if peer.system == "chime" {
            var logger = Logger(label: "peer-bench")
            logger.logLevel = .critical
            let client = ChimeClient(ClientOptions(port: port, name: "peer-bench-jobs", connectAttempts: 1), logger: logger)
            let header = [WireHeader(name: JobHeader.name, value: Array(NoOp.jobName.utf8))]
            let tally = Tally()
            try await withThrowingTaskGroup(of: Void.self) { group in
                for _ in 0..<scale.inFlight {
                    group.addTask {
                        while true {
                            let numbers = tally.claim(scale.batch, limit: count)
                            guard !numbers.isEmpty else { return }
                            _ = try await client.publish(numbers.map { OutgoingRecord(headers: header, body: body($0, size: scale.bodySize)) }, to: topic)
                        }
                    }
                }
                try await group.waitForAll()
            }
            await client.close()
        } else {
            var all = scale
            all.messages = count
            all.timeCap = .seconds(86_400)
            _ = try await Workloads.publish(peer, port: port, scale: all, connections: 1) { _ in nil }
        }
    }

    /// Starts `processes` worker processes, waits for them, and returns the jobs done over
    /// the time from their start to the last job's end. `kind`: what the processes run,
    /// the peer's own worker unless `plainChime` (Chime's plain consume loop instead of
    /// `ChimeWorker`).
    static func run(
        _ peer: any Peer, port: Int, processes: Int, expected: Int, work: String, quick: Bool, kind: String? = nil
    ) async throws -> Throughput {
        let kind = kind ?? peer.system
        let exe = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")
        let started = nowMicroseconds()
        var children: [(pid: pid_t, out: String)] = []
        for i in 0..<processes {
            let out = "\(work)/worker-\(kind)-\(i).out"
            try? FileManager.default.removeItem(atPath: out)
            let pid = try ServerProcess.spawn(exe, ["--worker-process", kind, "--worker-port", "\(port)"] + (quick ? ["--quick"] : []), log: out)
            children.append((pid, out))
        }
        var jobs = 0
        var last: Int64 = started
        for child in children {
            var status: Int32 = 0
            while waitpid(child.pid, &status, 0) == -1 && errno == EINTR {}
            let text = (try? String(contentsOfFile: child.out, encoding: .utf8)) ?? ""
            guard let line = text.split(separator: "\n").last(where: { $0.hasPrefix("{") }),
                let result = try? JSONDecoder().decode(Result.self, from: Data(line.utf8))
            else { throw PeerProtocolError("worker process \(child.pid) of \(peer.label) ended without a result (status \(status)): \(text.suffix(2_000))") }
            jobs += result.jobs
            last = max(last, result.lastMicros)
        }
        guard jobs >= expected else { throw PeerProtocolError("\(peer.label): workers did \(jobs) of \(expected) jobs") }
        return Throughput(messages: jobs, seconds: Double(last - started) / 1e6)
    }

    /// The worker kind that runs Chime's plain consume loop (`nextBatch`, the same JSON
    /// decode per job, one `ack` per batch) instead of `ChimeWorker`: the baseline of the
    /// broker's CPU per job.
    static let plainChime = "plain-chime"

    struct Result: Codable {
        var jobs: Int
        var lastMicros: Int64
    }

    /// The worker process: works until no job came for a second once it has done some (or
    /// for 3 s from the start; quick: 0.3 s and 1 s), prints its `Result` as one JSON line.
    static func workerProcess(system: String, port: Int, bodySize: Int, quick: Bool) async throws {
        let done = JobTally(noJobMicros: quick ? 1_000_000 : 3_000_000)
        let idle: Int64 = quick ? 300_000 : 1_000_000
        var logger = Logger(label: "peer-bench-worker")
        logger.logLevel = .critical
        if system == "chime" {
            // Acks of many short jobs gathered for 10 ms (`ClientOptions.ackLinger`, off by
            // default): the worker's broker CPU per job is then the plain loop's.
            let client = ChimeClient(
                ClientOptions(port: port, name: "peer-bench-worker", connectAttempts: 3, ackLinger: .milliseconds(10)), logger: logger)
            let worker = ChimeWorker(client: client, options: .init(gracePeriod: .seconds(5), name: "peer-bench-worker"), logger: logger)
            worker.register(NoOp.self, retry: .never) { _, _ in done.add(1) }
            worker.addPool(WorkerPool(group: group, topics: [topic], concurrency: 64, prefetch: 2_000))
            let running = Task { try await worker.run() }
            try await done.waitUntilIdle(idle)
            running.cancel()
            _ = try? await running.value
            await client.close()
        } else {
            let consumer: any PeerConsumer
            let mover: (any PeerMover)?
            if system == plainChime {
                let client = ChimeClient(ClientOptions(port: port, name: "peer-bench-plain", connectAttempts: 3), logger: logger)
                consumer = ChimePeer.ChimeConsumer(client: client, group: group + "-plain", topic: topic)
                mover = nil
            } else {
                let peer: any Peer =
                    system == "beanstalkd" || system == "chime beanstalkd"
                    ? BeanstalkPeer(fsyncMilliseconds: 50, bodySize: bodySize) : RedisPeer(appendfsync: "everysec", bodySize: bodySize)
                consumer = try await peer.consumer(port: port, index: 0)
                mover = try await peer.mover(port: port)
            }
            let json = Data(body(1, size: bodySize))
            let decoder = JSONDecoder()
            let stop = Once()
            let watcher = Task {
                try? await done.waitUntilIdle(idle)
                stop.set()
                // Chime's fetch waits for messages as long as it takes: closing its client
                // ends the wait (the peers' takes come back empty after a poll).
                if let chime = consumer as? ChimePeer.ChimeConsumer { await chime.client.close() }
            }
            while !stop.isSet {
                let taken: Taken
                do {
                    taken = try await consumer.take(max: 1_000)
                } catch where stop.isSet {
                    break
                }
                guard !taken.dueTimes.isEmpty else { continue }
                // The same work per job as Chime's worker: the job's JSON decoded.
                for _ in taken.dueTimes { _ = try decoder.decode(NoOp.self, from: json) }
                done.add(try await consumer.ack(taken))
            }
            watcher.cancel()
            await mover?.stop()
            await consumer.close()
        }
        let result = Result(jobs: done.count, lastMicros: done.lastMicros)
        print(String(decoding: try JSONEncoder().encode(result), as: UTF8.self))
        fflush(nil)
    }
}

/// Workload 9 (Chime only): a worker process killed with SIGKILL while it holds 1,000
/// leased jobs (each running, none finishing); a second worker, already in the group and
/// idle, runs every one of them once the broker has noticed the first is gone. The figure
/// is the time from the SIGKILL to the last of the 1,000 starting again, beside the
/// group's session timeout.
enum FailoverWorkload {
    static let jobs = 1_000
    static let group = "suite-failover"

    /// Returns the seconds from the SIGKILL to the last job started by the second worker.
    static func run(port: Int, work: String, sessionTimeout: Duration) async throws -> Double {
        var logger = Logger(label: "peer-bench")
        logger.logLevel = .critical
        let client = ChimeClient(ClientOptions(port: port, name: "peer-bench-failover", connectAttempts: 1), logger: logger)
        try await client.createGroup(
            group, settings: WireGroupSettings(mode: .shared, leaseMilliseconds: 3_600_000, sessionTimeoutMilliseconds: Int64(sessionTimeout.seconds * 1000)))
        let header = [WireHeader(name: JobHeader.name, value: Array(WorkerWorkload.NoOp.jobName.utf8))]
        _ = try await client.publish((0..<jobs).map { OutgoingRecord(headers: header, body: WorkerWorkload.body($0, size: 100)) }, to: WorkerWorkload.topic)
        await client.close()
        let exe = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")
        let holderOut = "\(work)/failover-holder.out"
        let takerOut = "\(work)/failover-taker.out"
        for f in [holderOut, takerOut] { try? FileManager.default.removeItem(atPath: f) }
        let holder = try ServerProcess.spawn(exe, ["--worker-process", "chime-hold", "--worker-port", "\(port)"], log: holderOut)
        try await waitForLine("holding", in: holderOut, timeout: .seconds(60))
        let taker = try ServerProcess.spawn(exe, ["--worker-process", "chime-take", "--worker-port", "\(port)"], log: takerOut)
        try await waitForLine("joined", in: takerOut, timeout: .seconds(60))
        let killedAt = nowMicroseconds()
        kill(holder, SIGKILL)
        var status: Int32 = 0
        while waitpid(holder, &status, 0) == -1 && errno == EINTR {}
        while waitpid(taker, &status, 0) == -1 && errno == EINTR {}
        let text = (try? String(contentsOfFile: takerOut, encoding: .utf8)) ?? ""
        guard let line = text.split(separator: "\n").last(where: { $0.hasPrefix("{") }),
            let result = try? JSONDecoder().decode(WorkerWorkload.Result.self, from: Data(line.utf8)), result.jobs >= jobs
        else { throw PeerProtocolError("the second worker did not start every job: \(text.suffix(2_000))") }
        return Double(result.lastMicros - killedAt) / 1e6
    }

    static func waitForLine(_ needle: String, in file: String, timeout: Duration) async throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if let text = try? String(contentsOfFile: file, encoding: .utf8), text.contains(needle) { return }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw PeerProtocolError("no \"\(needle)\" in \(file) within \(timeout)")
    }

    /// The worker processes: `chime-hold` starts every job and never finishes one (says
    /// "holding" once it runs them all); `chime-take` says "joined", then exits with its
    /// `Result` once it has started every job.
    static func workerProcess(holding: Bool, port: Int) async throws {
        var logger = Logger(label: "peer-bench-worker")
        logger.logLevel = .critical
        let client = ChimeClient(ClientOptions(port: port, name: "peer-bench-failover", connectAttempts: 3), logger: logger)
        let started = JobTally()
        let worker = ChimeWorker(client: client, options: .init(gracePeriod: .seconds(1), name: holding ? "holder" : "taker"), logger: logger)
        worker.register(WorkerWorkload.NoOp.self, retry: .never) { _, _ in
            started.add(1)
            try await Task.sleep(for: .seconds(3_600))
        }
        worker.addPool(WorkerPool(group: group, topics: [WorkerWorkload.topic], concurrency: jobs, prefetch: jobs))
        let running = Task { try await worker.run() }
        if holding {
            while started.count < jobs { try await Task.sleep(for: .milliseconds(10)) }
            print("holding")
            fflush(nil)
            try await Task.sleep(for: .seconds(3_600))
        } else {
            // Joined once the group lists a second member.
            while true {
                let stats = try await client.stats(groups: [group], includeMembers: true)
                if (stats.groups.first?.memberCount ?? 0) >= 2 { break }
                try await Task.sleep(for: .milliseconds(10))
            }
            print("joined")
            fflush(nil)
            while started.count < jobs { try await Task.sleep(for: .milliseconds(2)) }
            print(String(decoding: try JSONEncoder().encode(WorkerWorkload.Result(jobs: started.count, lastMicros: started.lastMicros)), as: UTF8.self))
            fflush(nil)
            running.cancel()
            exit(0)
        }
    }
}

/// Jobs done and when the last one ended.
final class JobTally: @unchecked Sendable {
    private let lock = NSLock()
    private var done = 0
    private var last: Int64 = 0
    private let started = nowMicroseconds()
    private let noJobMicros: Int64

    init(noJobMicros: Int64 = 3_000_000) { self.noJobMicros = noJobMicros }

    func add(_ n: Int) {
        guard n > 0 else { return }
        let now = nowMicroseconds()
        lock.withLock {
            done += n
            last = now
        }
    }
    var count: Int { lock.withLock { done } }
    var lastMicros: Int64 { lock.withLock { last } }

    /// Returns once nothing was added for `idle` µs after the first job, or for
    /// `noJobMicros` from the start when no job came at all (the other worker processes
    /// took them all).
    func waitUntilIdle(_ idle: Int64) async throws {
        while true {
            try await Task.sleep(for: .milliseconds(50))
            let (n, l) = lock.withLock { (done, last) }
            let now = nowMicroseconds()
            if n > 0 ? now - l > idle : now - started > noJobMicros { return }
        }
    }
}
