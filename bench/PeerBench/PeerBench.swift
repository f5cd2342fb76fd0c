import ArgumentParser
import Foundation

@main
struct PeerBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "PeerBench",
        abstract: "Chime beside beanstalkd and a Redis delayed queue: the same workloads, one harness, one run.",
        discussion: """
            Starts each system on 127.0.0.1 with its data in --work, runs every workload on a
            fresh server, stops it, and writes <out>/<date>-<host>.json, <out>/latest.md and a
            lateness chart. bench/suite.sh builds this, installs the peers and measures the disk
            first; run that rather than this.

            Workloads (100-byte bodies): publish (1 and 4 connections), scheduled publish
            (delays 1 s – 1 h), end to end (1 and 4 consumers), burst (all due in one second),
            lateness (a steady rate falling due), memory with messages pending, restart with
            them (clean stop and SIGKILL), workers (jobs published, then run by 1 and 4
            worker processes), failover (Chime: a worker SIGKILLed holding 1,000 jobs),
            schedules (Chime: 100,000 schedules firing every second for 60 s; memory and
            restart with them).
            """)

    @Flag(help: "Smoke run for CI: small counts, one run; figures mean nothing.") var quick = false
    @Option(help: "Runs per figure (the median is reported).") var runs: Int?
    @Option(help: "The chime executable.") var chime = ".build-bench/release/chime"
    @Option(help: "Scratch directory for the servers' data (emptied as it goes).") var work = "bench/.suite-data"
    @Option(help: "Where results go.") var out = "bench/results"
    @Option(help: "fio's figures as JSON (sequentialWriteMBps, fdatasyncP50Microseconds, fdatasyncP99Microseconds).") var disk: String?
    @Option(help: "Workloads to run, comma-separated: publish,scheduled,e2e,burst,lateness,memory,restart,workers,failover,schedules.")
    var only = "publish,scheduled,e2e,burst,lateness,memory,restart,workers,failover,schedules"
    @Option(help: "Schedules of the schedules workload (default 100,000; 1,000 with --quick).") var schedules: Int?
    @Option(help: "Seconds the schedules workload consumes their occurrences (default 60; 3 with --quick).") var scheduleSeconds: Int?
    @Option(help: "Systems to run, comma-separated: chime,beanstalkd,redis,chime-beanstalkd (chime-beanstalkd: `chime beanstalkd` driven by the beanstalkd client code).")
    var systems = "chime,beanstalkd,redis,chime-beanstalkd"

    @Option(help: .hidden) var workerProcess: String?
    @Option(help: .hidden) var workerPort: Int?

    func run() async throws {
        if let system = workerProcess, let port = workerPort {
            if system.hasPrefix("chime-") {
                try await FailoverWorkload.workerProcess(holding: system == "chime-hold", port: port)
            } else {
                try await WorkerWorkload.workerProcess(system: system, port: port, bodySize: (quick ? Scale.quick : Scale.full).bodySize, quick: quick)
            }
            return
        }
        var suite = try Suite(options: self)
        try await suite.run()
    }
}

/// The whole suite: which peers, which workloads, and the report they fill.
struct Suite {
    let scale: Scale
    let runs: Int
    let workloads: Set<String>
    let schedules: Int
    let scheduleSeconds: Int
    let work: String
    let out: String
    let chime: ChimePeer
    /// Every setting compared in the throughput workloads.
    let matched: [any Peer]
    /// One setting per system for the scheduled-delivery, memory and restart workloads:
    /// Chime at its strictest, each peer at its default (beanstalkd) or its usual
    /// production setting (Redis everysec): the peers' faster side.
    let each: [any Peer]
    var report: Report
    private let started = ContinuousClock.now

    init(options o: PeerBench) throws {
        scale = o.quick ? .quick : .full
        runs = o.runs ?? (o.quick ? 1 : 3)
        workloads = Set(o.only.split(separator: ",").map(String.init))
        schedules = o.schedules ?? (o.quick ? 1_000 : 100_000)
        scheduleSeconds = o.scheduleSeconds ?? (o.quick ? 3 : 60)
        work = o.work
        out = o.quick ? o.out + "/quick" : o.out
        let systems = Set(o.systems.split(separator: ",").map(String.init))
        chime = ChimePeer(executable: o.chime, bodySize: scale.bodySize)
        var matched: [any Peer] = []
        var each: [any Peer] = []
        if systems.contains("chime") {
            matched.append(chime)
            each.append(chime)
        }
        if systems.contains("beanstalkd") {
            matched += [BeanstalkPeer(fsyncMilliseconds: 0, bodySize: scale.bodySize), BeanstalkPeer(fsyncMilliseconds: 50, bodySize: scale.bodySize)]
            each.append(BeanstalkPeer(fsyncMilliseconds: 50, bodySize: scale.bodySize))
        }
        if systems.contains("chime-beanstalkd") {
            let peer = BeanstalkPeer(fsyncMilliseconds: 0, bodySize: scale.bodySize, chime: o.chime)
            matched.append(peer)
            each.append(peer)
        }
        if systems.contains("redis") {
            matched += [RedisPeer(appendfsync: "always", bodySize: scale.bodySize), RedisPeer(appendfsync: "everysec", bodySize: scale.bodySize)]
            each.append(RedisPeer(appendfsync: "everysec", bodySize: scale.bodySize))
        }
        self.matched = matched
        self.each = each
        var disk: DiskLimits?
        if let path = o.disk {
            disk = try JSONDecoder().decode(DiskLimits.self, from: Data(contentsOf: URL(fileURLWithPath: path)))
        }
        report = Report(
            startedAt: ISO8601DateFormatter().string(from: Date()), host: ProcessInfo.processInfo.hostName, machine: Machine.describe(chime: o.chime),
            quick: o.quick, runs: runs, disk: disk)
    }

    func say(_ line: String) {
        let t = started.duration(to: .now).seconds
        FileHandle.standardError.write("[suite \(String(format: "%6.1f", t)) s] \(line)\n".data(using: .utf8)!)
    }

    /// A fresh server for `peer` on an empty data directory, set up; stopped after `body`.
    func withServer<T>(_ peer: any Peer, _ body: (ServerProcess) async throws -> T) async throws -> T {
        let data = "\(work)/\(peer.system)-\(UUID().uuidString.prefix(8))"
        let server = try await ServerProcess.start(peer, data: data, port: ServerProcess.freePort())
        do {
            try await peer.setUp(port: server.port)
            let result = try await body(server)
            server.stop()
            try? FileManager.default.removeItem(atPath: data)
            try? FileManager.default.removeItem(atPath: data + ".log")
            return result
        } catch {
            server.kill()
            say("\(peer.label) failed: \(error); its log: \(data).log")
            throw error
        }
    }

    mutating func add(_ workload: String, _ metric: String, unit: String, _ peer: any Peer, runs: [Double], higherIsBetter: Bool, note: String? = nil) {
        report.rows.append(
            Row(workload: workload, metric: metric, unit: unit, system: peer.system, durability: peer.durability, runs: runs, higherIsBetter: higherIsBetter, note: note))
        let shown = runs.map { fmt($0) }.joined(separator: " / ")
        say("\(workload) · \(metric) · \(peer.label): \(shown) \(unit)")
    }

    mutating func run() async throws {
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        say("\(matched.count) settings, \(runs) run(s) per figure, \(scale.messages) messages per throughput case, at most \(scale.timeCap) each")
        var scheduledRate: [String: Double] = [:]
        let body = Double(scale.bodySize)

        if workloads.contains("publish") {
            for connections in [1, 4] {
                for peer in matched {
                    var rates: [Double] = []
                    var diskRates: [Double] = []
                    for _ in 0..<runs {
                        let (t, bytes) = try await withServer(peer) { s in
                            let t = try await Workloads.publish(peer, port: s.port, scale: scale, connections: connections) { _ in nil }
                            return (t, Machine.directoryBytes(s.data))
                        }
                        rates.append(t.rate)
                        diskRates.append(Double(bytes) / t.seconds / 1e6)
                    }
                    add("1. publish, due now", "\(connections) connection\(connections == 1 ? "" : "s")", unit: "msg/s", peer, runs: rates, higherIsBetter: true)
                    if peer.system == "chime" && connections == 1 {
                        report.chimePublishMBps = medianOf(rates) * body / 1e6
                        report.chimeDiskWriteMBps = medianOf(diskRates)
                    }
                }
            }
        }

        if workloads.contains("scheduled") {
            for peer in matched {
                var rates: [Double] = []
                for _ in 0..<runs {
                    let t = try await withServer(peer) { s in
                        try await Workloads.publish(peer, port: s.port, scale: scale, connections: 1) { i in
                            nowMilliseconds() + spread(i, in: 1_000...3_600_000)
                        }
                    }
                    rates.append(t.rate)
                }
                add("2. publish, scheduled 1 s – 1 h ahead", "1 connection", unit: "msg/s", peer, runs: rates, higherIsBetter: true)
                scheduledRate[peer.label] = rates.max()
            }
        }

        if workloads.contains("e2e") {
            for consumers in [1, 4] {
                for peer in matched {
                    var rates: [Double] = []
                    for _ in 0..<runs {
                        let t = try await withServer(peer) { s in try await Workloads.endToEnd(peer, port: s.port, scale: scale, consumers: consumers) }
                        rates.append(t.rate)
                    }
                    add("3. end to end: publish → deliver → ack", "\(consumers) consumer\(consumers == 1 ? "" : "s")", unit: "msg/s", peer, runs: rates, higherIsBetter: true)
                }
            }
        }

        if workloads.contains("workers") {
            let quick = scale.workerJobs == Scale.quick.workerJobs
            let workload = "8. workers: \(scale.workerJobs) jobs published, then run and acked"
            for processes in [1, 4] {
                let label = "\(processes) worker process\(processes == 1 ? "" : "es")"
                // Each peer's own worker, then (Chime) its plain consume loop in the same
                // processes: the broker's CPU per job of the worker runtime against the
                // plain consume it is built on.
                var kinds: [(peer: any Peer, kind: String?)] = each.map { ($0, nil) }
                if let chime = each.first(where: { $0.system == "chime" }) { kinds.append((chime, WorkerWorkload.plainChime)) }
                for (peer, kind) in kinds {
                    var rates: [Double] = []
                    var cpu: [Double] = []
                    for _ in 0..<runs {
                        let t = try await withServer(peer) { s in
                            try await WorkerWorkload.publishJobs(peer, port: s.port, scale: scale, count: scale.workerJobs)
                            let before = s.cpuSeconds()
                            let t = try await WorkerWorkload.run(
                                peer, port: s.port, processes: processes, expected: scale.workerJobs, work: work, quick: quick, kind: kind)
                            cpu.append((s.cpuSeconds() - before) / Double(t.messages) * 1e6)
                            return t
                        }
                        rates.append(t.rate)
                    }
                    let how = kind == nil ? "" : ", plain consume loop"
                    add(workload, label + how, unit: "jobs/s", peer, runs: rates, higherIsBetter: true)
                    add(workload, "server CPU per 1,000 jobs, " + label + how, unit: "ms", peer, runs: cpu, higherIsBetter: false)
                }
            }
        }

        if workloads.contains("failover"), let peer = each.first(where: { $0.system == "chime" }) {
            let session: Duration = .seconds(2)
            var seconds: [Double] = []
            for _ in 0..<runs {
                seconds.append(try await withServer(peer) { s in try await FailoverWorkload.run(port: s.port, work: work, sessionTimeout: session) })
            }
            add(
                "9. failover: a worker SIGKILLed holding \(FailoverWorkload.jobs) leased jobs", "SIGKILL to the last job running elsewhere",
                unit: "s", peer, runs: seconds, higherIsBetter: false,
                note: "session timeout \(session.seconds) s; target ≤ session timeout + 1 s")
        }

        if workloads.contains("schedules"), let peer = each.first(where: { $0.system == "chime" }) as? ChimePeer {
            var results: [ScheduleWorkload.Result] = []
            for _ in 0..<runs {
                results.append(try await ScheduleWorkload.run(peer, work: work, count: schedules, seconds: scheduleSeconds) { say($0) })
            }
            let name = "10. schedules: \(schedules) firing every second for \(scheduleSeconds) s"
            let judged = results.map { "\($0.occurrences) occurrences, \($0.missing) missing, \($0.duplicates) twice" }.joined(separator: "; ")
            add(name, "lateness p50 (received − occurrence)", unit: "ms", peer, runs: results.map(\.latenessMs.p50), higherIsBetter: false, note: judged)
            add(name, "lateness p99", unit: "ms", peer, runs: results.map(\.latenessMs.p99), higherIsBetter: false, note: "goal ≤ 5 ms, 0 missing, 0 twice")
            add(name, "lateness max", unit: "ms", peer, runs: results.map(\.latenessMs.max), higherIsBetter: false)
            add(name, "lateness at delivery p50 (broker's deliveredAt − occurrence)", unit: "ms", peer, runs: results.map(\.deliveredMs.p50), higherIsBetter: false)
            add(name, "lateness at delivery p99", unit: "ms", peer, runs: results.map(\.deliveredMs.p99), higherIsBetter: false)
            add(name, "schedules created", unit: "/s", peer, runs: results.map(\.createdPerSecond), higherIsBetter: true, note: "8 connections × 32 requests in flight")
            add(
                name, "resident memory per schedule (after creating)", unit: "B", peer,
                runs: results.map { Double($0.rssCreated - $0.rssBefore) / Double(schedules) }, higherIsBetter: false)
            add(
                name, "resident memory per schedule (after the run)", unit: "B", peer,
                runs: results.map { Double($0.rssRun - $0.rssBefore) / Double(schedules) }, higherIsBetter: false)
            add(name, "restart after a clean stop, to serving", unit: "s", peer, runs: results.map(\.restartSeconds), higherIsBetter: false)
            add(name, "resident memory after the restart", unit: "MB", peer, runs: results.map { Double($0.rssRestarted) / 1e6 }, higherIsBetter: false)
        }

        /// Time to publish `n` messages ahead of their due time, with room to spare.
        func lead(_ peer: any Peer, _ n: Int) -> Int64 {
            let rate = scheduledRate[peer.label] ?? 20_000
            return Int64(Double(n) / rate * 1_500) + scale.leadMilliseconds
        }

        if workloads.contains("burst") {
            for peer in each {
                var lasts: [Double] = []
                var overran = false
                for _ in 0..<runs {
                    let r = try await withServer(peer) { s in
                        try await Workloads.deliverScheduled(
                            peer, port: s.port, scale: scale, total: scale.burst, consumers: 4, lead: lead(peer, scale.burst)
                        ) { start, _ in start }
                    }
                    overran = overran || r.publishedAt > r.start
                    lasts.append(Double(r.lastReceivedAt - r.start * 1_000) / 1e6)
                }
                add(
                    "4. burst: \(scale.burst) messages due in the same second, 4 consumers", "last delivered after due", unit: "s", peer, runs: lasts,
                    higherIsBetter: false, note: overran ? "publishing overran the due time" : nil)
            }
        }

        if workloads.contains("lateness") {
            var chart: [(String, [Int64])] = []
            for peer in each {
                var p50: [Double] = []
                var p99: [Double] = []
                var maxes: [Double] = []
                var early = 0
                var pooled: [Int64] = []
                var overran = false
                let total = scale.latenessRate * scale.latenessSeconds
                for _ in 0..<runs {
                    let rate = Int64(scale.latenessRate)
                    let r = try await withServer(peer) { s in
                        try await Workloads.deliverScheduled(peer, port: s.port, scale: scale, total: total, consumers: 4, lead: lead(peer, total)) { start, i in
                            start + Int64(i) * 1_000 / rate
                        }
                    }
                    overran = overran || r.publishedAt > r.start
                    let sorted = r.lateness.sorted()
                    p50.append(Double(percentile(sorted, 0.50)) / 1_000)
                    p99.append(Double(percentile(sorted, 0.99)) / 1_000)
                    maxes.append(Double(sorted.last ?? 0) / 1_000)
                    early += r.early
                    pooled += sorted
                }
                let w = "5. lateness at \(scale.latenessRate) due/s for \(scale.latenessSeconds) s, 4 consumers (received − due)"
                let note = overran ? "publishing overran the first due time" : nil
                add(w, "p50", unit: "ms", peer, runs: p50, higherIsBetter: false, note: note)
                add(w, "p99", unit: "ms", peer, runs: p99, higherIsBetter: false, note: note)
                add(w, "max", unit: "ms", peer, runs: maxes, higherIsBetter: false, note: note)
                report.latenessEarly[peer.label] = early
                chart.append((peer.label, pooled.sorted()))
            }
            try Chart.lateness(chart, directory: out, quick: report.quick)
        }

        if workloads.contains("memory") || workloads.contains("restart") {
            for peer in each {
                try await memoryAndRestart(peer)
            }
        }

        try write()
    }

    /// Resident memory with N scheduled messages pending (due 1–2 h ahead), for each N;
    /// then, with the largest N, restarts: clean stop and SIGKILL, `runs` times each.
    mutating func memoryAndRestart(_ peer: any Peer) async throws {
        let limit = 8 << 30
        for (k, count) in scale.memoryCounts.enumerated() {
            let last = k == scale.memoryCounts.count - 1
            let data = "\(work)/\(peer.system)-memory"
            try? FileManager.default.removeItem(atPath: data)
            var server = try await ServerProcess.start(peer, data: data, port: ServerProcess.freePort())
            defer { try? FileManager.default.removeItem(atPath: data) }
            try await peer.setUp(port: server.port)
            var stored = 0
            var capped = false
            let chunk = max(scale.batch, count / 10)
            while stored < count {
                let n = min(chunk, count - stored)
                let first = stored
                _ = try await Workloads.publishAll(peer, port: server.port, scale: scale, total: n) { i in
                    nowMilliseconds() + spread(first + i, in: 3_600_000...7_200_000)
                }
                stored += n
                say("memory · \(peer.label): \(stored) of \(count) pending, resident \(server.residentBytes() >> 20) MiB")
                if server.residentBytes() > limit {
                    capped = true
                    break
                }
            }
            try await Task.sleep(for: .seconds(scale.messages > 100_000 ? 2 : 0.2))
            let rss = Double(server.residentBytes()) / 1_048_576
            let label = count >= 1_000_000 ? "\(count / 1_000_000)M" : "\(count)"
            if workloads.contains("memory") {
                add(
                    "6. resident memory with scheduled messages pending", "\(label) pending", unit: "MiB", peer, runs: [rss], higherIsBetter: false,
                    note: capped ? "stopped at \(stored) pending: over 8 GiB" : nil)
            }
            if last && workloads.contains("restart") {
                var clean: [Double] = []
                var killed: [Double] = []
                var lost = 0
                for kind in ["clean stop", "SIGKILL"] {
                    for _ in 0..<runs {
                        if kind == "clean stop" { server.stop() } else { server.kill() }
                        server = try await ServerProcess.start(peer, data: data, port: server.port)
                        let seconds = server.startup.seconds
                        let left = try await peer.scheduledCount(port: server.port)
                        lost += max(0, stored - left)
                        if kind == "clean stop" { clean.append(seconds) } else { killed.append(seconds) }
                        say("restart · \(peer.label) after \(kind): serving in \(fmt(seconds)) s, \(left) of \(stored) pending")
                    }
                }
                let w = "7. restart with \(label) pending: start to serving"
                add(w, "after a clean stop", unit: "s", peer, runs: clean, higherIsBetter: false, note: "\(lost) lost over all restarts")
                add(w, "after SIGKILL", unit: "s", peer, runs: killed, higherIsBetter: false, note: "\(lost) lost over all restarts")
            }
            server.stop()
            try? FileManager.default.removeItem(atPath: data + ".log")
        }
    }

    func write() throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        let day = String(report.startedAt.prefix(10))
        let json = "\(out)/\(day)-\(report.host).json"
        try encoder.encode(report).write(to: URL(fileURLWithPath: json))
        let md = "\(out)/latest.md"
        try report.markdown().write(toFile: md, atomically: true, encoding: .utf8)
        say("wrote \(json) and \(md)")
        if !report.quick { print(report.markdown()) }
    }
}

func percentile(_ sorted: [Int64], _ p: Double) -> Int64 {
    sorted.isEmpty ? 0 : sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))]
}
