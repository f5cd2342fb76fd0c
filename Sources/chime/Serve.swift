import ArgumentParser
import ChimeBroker
import ChimeServer
import ChimeStore
import Dispatch
import Foundation
import Logging

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Open the data directory and run the broker engine until stopped.",
        discussion: """
            Takes the data directory's lock, opens every topic and partition in it \
            (recovering what a crash left: torn tails cut, damage reported), catches up on \
            every scheduled message that fell due while it was down, and keeps firing \
            scheduled messages on time, and serves the broker protocol on --host:--port \
            (127.0.0.1:7420 by default) and the admin HTTP API with Prometheus /metrics on \
            --admin-host:--admin-port (127.0.0.1:7421). Stop it with Ctrl-C or SIGTERM: it stops accepting, \
            closes connections, writes every checkpoint, so the next start needs no replay.

            Examples:
              chime serve --data ./data
              chime serve --host 0.0.0.0 --token "$(cat /etc/chime/token)"
              chime serve --data /var/lib/chime --durability interval=5 --retention-hours 72
            """
    )

    @Option(name: .long, help: "Data directory (created if missing).")
    var data: String = "./data"

    @Option(name: .long, help: "Address the broker protocol listens on. Anything but loopback needs --token.")
    var host: String = "127.0.0.1"

    @Option(name: .long, help: "Broker protocol port (0: any free port).")
    var port: Int = 7420

    @Option(name: .long, help: "Accepted client token (repeat for several). Without one, clients need no token.")
    var token: [String] = []

    @Option(name: .customLong("admin-host"), help: "Address the admin HTTP port listens on (health, topics, groups, /metrics).")
    var adminHost: String = "127.0.0.1"

    @Option(name: .customLong("admin-port"), help: "Admin HTTP port (0: any free port). Needs the --token when tokens are set, but for /health.")
    var adminPort: Int = 7421

    @Flag(name: .customLong("no-admin"), help: "Serve no admin HTTP port (and collect no metrics).")
    var noAdmin = false

    @Option(name: .long, help: "When a publish is durable: always (group commit), interval=<ms>, never.")
    var durability: String = "always"

    @Option(name: .customLong("segment-mib"), help: "Ready-log segment size in MiB before a new segment file starts.")
    var segmentMiB: Int = 256

    @Option(name: .long, help: "Partitions of topics created on first use.")
    var partitions: Int = 4

    @Option(name: .long, help: "Retention of topics created on first use: delete sealed segments older than this many hours (default 168).")
    var retentionHours: Double = 168

    @Option(name: .customLong("retention-mib"), help: "Retention of topics created on first use: keep at most this many MiB per partition (default: no limit).")
    var retentionMiB: Int?

    @Flag(name: .customLong("no-auto-create"), help: "Refuse unknown topics instead of creating them on first use.")
    var noAutoCreate = false

    @Flag(name: .long, help: "Log every recovery step.")
    var verbose = false

    func run() async throws {
        let logger = {
            var logger = Logger(label: "chime")
            logger.logLevel = verbose ? .debug : .info
            return logger
        }()
        guard let policy = DurabilityPolicy(durability) else {
            throw ValidationError("--durability must be always, never or interval=<ms>, not '\(durability)'")
        }
        guard segmentMiB > 0, segmentMiB < 4096 else { throw ValidationError("--segment-mib must be between 1 and 4095") }
        guard (1...4096).contains(partitions) else { throw ValidationError("--partitions must be between 1 and 4096") }
        guard retentionHours.isFinite && retentionHours > 0 else {
            throw ValidationError("--retention-hours must be a positive number of hours")
        }
        if let mib = retentionMiB, mib <= 0 { throw ValidationError("--retention-mib must be a positive number of MiB") }
        guard (0...65_535).contains(adminPort) else { throw ValidationError("--admin-port must be between 0 and 65535") }
        // Before the broker opens: the engine makes its metric objects as it opens.
        let registry = noAdmin ? nil : ChimeMetrics.bootstrap()
        let topic = TopicSettings(
            partitions: partitions, retentionMilliseconds: Int64(retentionHours * 3_600_000), retentionBytes: retentionMiB.map { Int64($0) << 20 })
        let options = BrokerOptions(
            directory: data, autoCreateTopics: !noAutoCreate, defaultTopic: topic, durability: policy, readySegmentBytes: segmentMiB << 20)

        let broker = try await Broker.open(options, logger: logger)
        let topics = broker.listTopics()
        var partitionCount = 0
        var scheduled = 0
        var bytes: Int64 = 0
        for t in topics {
            for p in try await broker.partitionStats(topic: t.name) {
                partitionCount += 1
                scheduled += p.scheduled
                bytes += p.readyBytes + p.timerBytes
            }
        }
        say("chime: data directory \(data): \(topics.count) topic(s), \(partitionCount) partition(s), \(scheduled) scheduled message(s) pending, \(Format.bytes(bytes)), durability \(policy)")
        guard (0...65_535).contains(port) else { throw ValidationError("--port must be between 0 and 65535") }
        let server: ChimeServer
        do {
            server = try await ChimeServer.start(
                broker: broker, options: ServerOptions(host: host, port: port, tokens: token, serverName: "chime"), logger: logger)
        } catch {
            await broker.close()
            throw ValidationError("cannot listen on \(host):\(port): \(error)")
        }
        say("chime: serving the broker protocol on \(host):\(server.port)\(token.isEmpty ? "" : " (token required)"). Ctrl-C to stop.")
        var admin: AdminServer? = nil
        if !noAdmin {
            do {
                let started = try await AdminServer.start(
                    broker: broker, options: AdminOptions(host: adminHost, port: adminPort, tokens: token), registry: registry,
                    connectionCount: { server.connectionCount }, logger: logger)
                say("chime: admin HTTP on \(adminHost):\(try await started.port()) (/health, /v1/topics, /v1/groups, /metrics)")
                admin = started
            } catch {
                await server.stop()
                await broker.close()
                throw ValidationError("cannot listen on \(adminHost):\(adminPort) (admin HTTP): \(error)")
            }
        }
        await waitForTerminationSignal()
        say("chime: stopping")
        await admin?.stop()
        await server.stop()
        await broker.close()
        say("chime: stopped cleanly")
    }

    private func waitForTerminationSignal() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let queue = DispatchQueue(label: "chime.signals")
            let box = SignalSources()
            for sig in [SIGINT, SIGTERM] {
                signal(sig, SIG_IGN)
                let source = DispatchSource.makeSignalSource(signal: sig, queue: queue)
                source.setEventHandler {
                    if box.fire() { continuation.resume() }
                }
                source.resume()
                box.sources.append(source)
            }
        }
    }
}

/// Status lines reach a pipe or a log file at once, not when a buffer fills.
private func say(_ line: String) {
    print(line)
    fflush(nil)
}

/// Keeps the signal sources alive and resumes the waiter once.
private final class SignalSources: @unchecked Sendable {
    var sources: [DispatchSourceSignal] = []
    private var fired = false
    private let lock = NSLock()
    func fire() -> Bool {
        lock.withLock {
            defer { fired = true }
            return !fired
        }
    }
}
