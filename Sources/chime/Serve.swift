import ArgumentParser
import ChimeBroker
import ChimeProtocol
import ChimeServer
import ChimeStore
import Foundation
import Logging
import NIOCore
import ServiceLifecycle

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Open the data directory and run the broker engine until stopped.",
        discussion: """
            Takes the data directory's lock, opens every topic and partition in it \
            (recovering what a crash left: torn tails cut, damage reported), catches up on \
            every scheduled message that fell due while it was down, and keeps firing \
            scheduled messages on time, and serves the broker protocol on --host:--port \
            (127.0.0.1:7420 by default), and the admin HTTP API with Prometheus /metrics on \
            --admin-host:--admin-port (127.0.0.1:7421). Stop it with Ctrl-C or SIGTERM: it \
            stops accepting, answers the requests it has read, closes connections, writes \
            every checkpoint and exits 0, so the next start needs no replay.

            Settings come from --config FILE (TOML or JSON), then CHIME_* environment \
            variables, then flags; each overrides the one before.

            Examples:
              chime serve --data ./data
              chime serve --host 0.0.0.0 --token "$(cat /etc/chime/token)"
              chime serve --tls-cert /etc/chime/server.pem --tls-key /etc/chime/server.key
              chime serve --data /var/lib/chime --durability interval=5 --retention-hours 72
              chime serve --config /etc/chime/chime.toml
              CHIME_PORT=7500 chime serve
            """
    )

    @Option(name: .long, help: "Configuration file, TOML or JSON (see README: every setting, its variable and its flag).")
    var config: String?

    @Option(name: .long, help: "Data directory, created if missing (default ./data; $CHIME_DATA).")
    var data: String?

    @Option(name: .long, help: "Address the broker protocol listens on (default 127.0.0.1; $CHIME_HOST). Anything but loopback wants --token.")
    var host: String?

    @Option(name: .long, help: "Broker protocol port; 0 picks a free one (default 7420; $CHIME_PORT).")
    var port: Int?

    @Option(name: .long, help: "Accepted token, repeat for several: SECRET (everything) or SCOPE[@PATTERN+…]:SECRET, SCOPE read, publish or admin (see `chime tokens create`). Default none: no authentication, and admin writes need <data>/admin-token ($CHIME_TOKENS, comma-separated).")
    var token: [String] = []

    @Option(name: .customLong("tls-cert"), help: "Serve TLS with this certificate chain (PEM; needs --tls-key; $CHIME_TLS_CERT).")
    var tlsCert: String?

    @Option(name: .customLong("admin-host"), help: "Address the admin HTTP port listens on: health, topics, groups, /metrics (default 127.0.0.1; $CHIME_ADMIN_HOST).")
    var adminHost: String?

    @Option(name: .customLong("admin-port"), help: "Admin HTTP port; 0 picks a free one. Needs a token when tokens are set, but for /health (default 7421; $CHIME_ADMIN_PORT).")
    var adminPort: Int?

    @Flag(name: .customLong("no-admin"), help: "Serve no admin HTTP port and collect no metrics ($CHIME_ADMIN=false).")
    var noAdmin = false

    @Option(name: .customLong("admin-max-connections"), help: "Most admin HTTP connections at once; one more is closed at once (default 128; $CHIME_ADMIN_MAX_CONNECTIONS).")
    var adminMaxConnections: Int?

    @Option(
        name: .customLong("admin-idle-timeout-seconds"),
        help: "Close an admin HTTP connection that has not sent a whole request for this long (default 30; $CHIME_ADMIN_IDLE_TIMEOUT_SECONDS).")
    var adminIdleTimeoutSeconds: Int?

    @Option(name: .customLong("tls-key"), help: "The private key of --tls-cert (PEM, unencrypted; $CHIME_TLS_KEY).")
    var tlsKey: String?

    @Option(name: .long, help: "When a publish is durable: always (group commit), interval=<ms>, never (default always; $CHIME_DURABILITY).")
    var durability: String?

    @Option(name: .customLong("segment-mib"), help: "Ready-log segment size in MiB (default 256; $CHIME_SEGMENT_MIB).")
    var segmentMiB: Int?

    @Option(name: .long, help: "Partitions of topics created on first use (default 4; $CHIME_PARTITIONS).")
    var partitions: Int?

    @Option(name: .long, help: "Retention of topics created on first use, in hours (default 168; $CHIME_RETENTION_HOURS).")
    var retentionHours: Double?

    @Option(name: .customLong("retention-mib"), help: "Retention of topics created on first use: at most this many MiB per partition (default no limit; $CHIME_RETENTION_MIB).")
    var retentionMiB: Int?

    @Flag(name: .customLong("no-auto-create"), help: "Refuse unknown topics instead of creating them on first use ($CHIME_AUTO_CREATE_TOPICS=false).")
    var noAutoCreate = false

    @Option(name: .customLong("max-connections"), help: "Most client connections at once (default 1024).")
    var maxConnections: Int?

    @Option(
        name: .customLong("max-unauthenticated-connections"),
        help: "Most connections awaiting their hello at once, apart from --max-connections (default 64; $CHIME_MAX_UNAUTHENTICATED_CONNECTIONS).")
    var maxUnauthenticatedConnections: Int?

    @Option(name: .customLong("hello-timeout-seconds"), help: "Seconds a connection has to say hello (default 10; $CHIME_HELLO_TIMEOUT_SECONDS).")
    var helloTimeoutSeconds: Int?

    @Option(name: .customLong("max-hello-bytes"), help: "Largest frame before the hello is accepted (default 4096; $CHIME_MAX_HELLO_BYTES).")
    var maxHelloBytes: Int?

    @Option(
        name: .customLong("beanstalk-port"),
        help: "Also speak beanstalkd's protocol on this port, on --host (default off; 0 picks a free one). See `chime beanstalkd` and README, \"Coming from beanstalkd\".")
    var beanstalkPort: Int?

    @Flag(name: .long, help: "Log every recovery step ($CHIME_LOG_LEVEL=debug).")
    var verbose = false

    /// The flags as the top configuration layer: only what was given.
    var flags: ServeConfiguration {
        var c = ServeConfiguration()
        c.data = data
        c.host = host
        c.port = port
        c.tokens = token.isEmpty ? nil : token
        c.durability = durability
        c.segmentMiB = segmentMiB
        c.partitions = partitions
        c.retentionHours = retentionHours
        c.retentionMiB = retentionMiB
        c.autoCreateTopics = noAutoCreate ? false : nil
        c.maxConnections = maxConnections
        c.maxUnauthenticatedConnections = maxUnauthenticatedConnections
        c.helloTimeoutSeconds = helloTimeoutSeconds
        c.maxHelloBytes = maxHelloBytes
        c.logLevel = verbose ? "debug" : nil
        c.tlsCert = tlsCert
        c.tlsKey = tlsKey
        c.adminHost = adminHost
        c.adminPort = adminPort
        c.admin = noAdmin ? false : nil
        c.adminMaxConnections = adminMaxConnections
        c.adminIdleTimeoutSeconds = adminIdleTimeoutSeconds
        return c
    }

    func run() async throws {
        let settings: ServeConfiguration
        if let problem = ServeConfiguration.emptyTokenProblem(token, setting: "--token") { throw ValidationError(problem.description) }
        do {
            settings = try ServeConfiguration.resolve(file: config, environment: ProcessInfo.processInfo.environment, flags: flags)
        } catch let p as ServeConfiguration.Problem {
            throw ValidationError(p.description)
        }
        let data = settings.data ?? "./data"
        let host = settings.host ?? "127.0.0.1"
        let port = settings.port ?? 7420
        let tokens = settings.tokens ?? []
        let durability = settings.durability ?? "always"
        let segmentMiB = settings.segmentMiB ?? 256
        let partitions = settings.partitions ?? 4
        let retentionHours = settings.retentionHours ?? 168
        let retentionMiB = settings.retentionMiB
        guard let level = Logger.Level(rawValue: settings.logLevel ?? "info") else {
            throw ValidationError("the log level must be one of trace, debug, info, notice, warning, error, critical; not '\(settings.logLevel ?? "")'")
        }
        let logger = {
            var logger = Logger(label: "chime")
            logger.logLevel = level
            return logger
        }()
        guard let policy = DurabilityPolicy(durability) else {
            throw ValidationError("durability must be always, never or interval=<ms>, not '\(durability)'")
        }
        guard segmentMiB > 0, segmentMiB < 4096 else { throw ValidationError("the segment size must be between 1 and 4095 MiB") }
        guard (1...4096).contains(partitions) else { throw ValidationError("partitions must be between 1 and 4096") }
        // Up to a century, like every duration the broker adds to its clock.
        guard retentionHours.isFinite && retentionHours > 0 && retentionHours * 3_600_000 <= Double(Broker.maxDelayMilliseconds) else {
            throw ValidationError("retention must be a positive number of hours, at most \(Broker.maxDelayMilliseconds / 3_600_000)")
        }
        if let mib = retentionMiB, mib <= 0 { throw ValidationError("the retention size must be a positive number of MiB") }
        guard (0...65_535).contains(port) else { throw ValidationError("the port must be between 0 and 65535") }
        if let p = beanstalkPort, !(0...65_535).contains(p) { throw ValidationError("the beanstalkd port must be between 0 and 65535") }
        let (tlsCert, tlsKey) = (settings.tlsCert, settings.tlsKey)
        guard (tlsCert == nil) == (tlsKey == nil) else { throw ValidationError("a TLS certificate and its key go together (--tls-cert and --tls-key)") }
        let adminOn = settings.admin ?? true
        let adminHost = settings.adminHost ?? "127.0.0.1"
        let adminPort = settings.adminPort ?? 7421
        guard (0...65_535).contains(adminPort) else { throw ValidationError("the admin port must be between 0 and 65535") }
        // Checked before the broker opens, like the rest: each of these at 0 (or below)
        // makes a broker that starts and serves nobody.
        if let n = settings.maxConnections, n < 1 { throw ValidationError("the connection limit must be at least 1") }
        if let n = settings.maxFrameBytes, n < 1_024 { throw ValidationError("the frame limit must be at least 1024 bytes") }
        if let n = settings.idleTimeoutSeconds, n < 1 { throw ValidationError("the idle timeout must be at least 1 second") }
        if let n = settings.adminMaxConnections, n < 1 { throw ValidationError("the admin connection limit must be at least 1") }
        if let n = settings.adminIdleTimeoutSeconds, n < 1 { throw ValidationError("the admin idle timeout must be at least 1 second") }
        if let n = settings.maxTopics, n < 1 { throw ValidationError("max_topics must be at least 1") }
        if let n = settings.maxPartitions, n < 1 { throw ValidationError("max_partitions must be at least 1") }
        if let n = settings.maxGroups, n < 1 { throw ValidationError("max_groups must be at least 1") }
        if let n = settings.maxOpenFiles, n < 16 { throw ValidationError("max_open_files must be at least 16") }
        if let n = settings.maxUnauthenticatedConnections, n < 1 { throw ValidationError("the unauthenticated connection limit must be at least 1") }
        if let n = settings.helloTimeoutSeconds, n < 1 { throw ValidationError("the hello timeout must be at least 1 second") }
        if let n = settings.connectionBufferMiB, !(1...(1 << 20)).contains(n) {
            throw ValidationError("connection_buffer_mib must be between 1 and 1048576")
        }
        // A hello with a client name and a token of a few hundred bytes must fit.
        if let n = settings.maxHelloBytes, n < 512 { throw ValidationError("the hello limit must be at least 512 bytes") }
        var adminOptions = AdminOptions(host: adminHost, port: adminPort, tokens: tokens)
        if let n = settings.adminMaxConnections { adminOptions.maxConnections = n }
        if let n = settings.adminIdleTimeoutSeconds { adminOptions.idleTimeout = .seconds(n) }
        let tls = tlsCert.map { ServerOptions.TLS(certificateChainFile: $0, privateKeyFile: tlsKey ?? "") }
        var serverOptions = ServerOptions(host: host, port: port, tokens: tokens, serverName: "chime", tls: tls)
        if let n = settings.maxConnections { serverOptions.maxConnections = n }
        if let n = settings.maxFrameBytes { serverOptions.maxFrameBytes = n }
        if let n = settings.idleTimeoutSeconds { serverOptions.idleTimeoutSeconds = Int64(n) }
        if let n = settings.maxUnauthenticatedConnections { serverOptions.maxUnauthenticatedConnections = n }
        if let n = settings.helloTimeoutSeconds { serverOptions.helloTimeoutMilliseconds = Int64(n) * 1_000 }
        if let n = settings.maxHelloBytes { serverOptions.maxHelloBytes = n }
        if let n = settings.connectionBufferMiB { serverOptions.maxBufferedBytesPerConnection = n << 20 }
        // What the checks above let through, the library refuses too (a token list built
        // some other way).
        do {
            try serverOptions.validate()
            if adminOn { try adminOptions.validate() }
        } catch {
            throw ValidationError("\(error)")
        }
        // Before the broker opens: the engine makes its metric objects as it opens.
        let registry = adminOn ? ChimeMetrics.bootstrap() : nil
        let topic = TopicSettings(
            partitions: partitions, retentionMilliseconds: Int64(retentionHours * 3_600_000), retentionBytes: retentionMiB.map { Int64($0) << 20 })
        var options = BrokerOptions(
            directory: data, autoCreateTopics: settings.autoCreateTopics ?? true, defaultTopic: topic, durability: policy,
            readySegmentBytes: segmentMiB << 20)
        if let n = settings.maxTopics { options.maxTopics = n }
        if let n = settings.maxPartitions { options.maxPartitions = n }
        if let n = settings.maxGroups { options.maxGroups = n }
        if let n = settings.maxOpenFiles { DescriptorCache.shared.limit = n }
        let descriptors = FileDescriptorLimit.raiseSoftLimitToHard()
        if descriptors.soft < DescriptorCache.shared.limit + (settings.maxConnections ?? serverOptions.maxConnections) + 64 {
            logger.warning(
                "the open-file limit may be too low: data files and connections could exhaust it; raise `ulimit -n` or lower max_open_files / max_connections",
                metadata: ["limit": "\(descriptors.soft)", "max_open_files": "\(DescriptorCache.shared.limit)"])
        }

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
        let server: ChimeServer
        do {
            server = try await ChimeServer.start(broker: broker, options: serverOptions, logger: logger)
        } catch let error as ServerTLSError {
            await broker.close()
            throw CommandFailure(description: "cannot serve TLS: \(error)")
        } catch {
            await broker.close()
            if (error as? IOError)?.errnoCode == EADDRINUSE || "\(error)".contains("Address already in use") {
                throw CommandFailure(description: "port \(port) on \(host) is already in use (another chime serve? choose one with --port)")
            }
            throw CommandFailure(description: "cannot listen on \(host):\(port): \(error)")
        }
        // Announced before the broker protocol's line, which ends the start-up output.
        var beanstalk: BeanstalkListener? = nil
        if let beanstalkPort {
            let listener: BeanstalkListener
            do {
                listener = try await BeanstalkListener.start(
                    broker: broker, options: .init(address: .tcp(host: host, port: beanstalkPort)), logger: logger)
            } catch {
                await server.stop()
                _ = await broker.close()
                throw CommandFailure(description: "cannot serve beanstalkd's protocol on \(host):\(beanstalkPort): \(error)")
            }
            beanstalk = listener
            BeanstalkSignals.drainOnSIGUSR1(listener)
            say("chime: beanstalkd protocol on \(host):\(listener.port)")
        }
        say("chime \(ChimeVersion.current): serving the broker protocol on \(host):\(server.port)\(tls == nil ? "" : " over TLS")\(tokens.isEmpty ? "" : " (token required)"). Ctrl-C to stop.")
        // Shut down in reverse order: the admin port stops, the server drains its
        // connections, then the broker writes its checkpoints and closes.
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = [.init(service: BrokerService(broker)), .init(service: server)]
        if let beanstalk { services.append(.init(service: beanstalk)) }
        var announce: Task<Void, Never>? = nil
        if adminOn {
            if tokens.isEmpty {
                do {
                    adminOptions.localAdminToken = try LocalAdminToken.loadOrCreate(directory: data)
                } catch {
                    logger.warning("no admin token for writes: the admin port answers reads only", metadata: ["error": "\(error)"])
                }
            }
            let admin = AdminServer(
                broker: broker, options: adminOptions, registry: registry,
                connections: { server.connectionGauges }, logger: logger)
            services.append(.init(service: admin))
            announce = Task {
                if let port = try? await admin.port() {
                    say("chime: admin HTTP on \(adminHost):\(port) (dashboard at /; /v2, described at /v2/openapi.json; /v1, /health, /metrics)")
                    if tokens.isEmpty && adminOptions.localAdminToken != nil {
                        say("chime: admin writes need the token in \(data)/\(LocalAdminToken.fileName) (Authorization: Bearer <token>)")
                    }
                }
            }
        }
        let group = ServiceGroup(
            configuration: .init(services: services, gracefulShutdownSignals: [.sigterm, .sigint], cancellationSignals: [.sigquit], logger: logger))
        do {
            try await group.run()
        } catch {
            announce?.cancel()
            // Not a usage error: one line and exit status 1, no help text.
            throw CommandFailure(description: "chime serve stopped: \(error)")
        }
        say("chime: stopped cleanly")
    }
}

/// Status lines reach a pipe or a log file at once, not when a buffer fills.
private func say(_ line: String) {
    print(line)
    fflush(nil)
}
