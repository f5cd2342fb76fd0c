import ChimeBroker
import ChimeClient
import ChimeProtocol
import ChimeServer
import ChimeTestSupport
import Foundation
import Glibc
import Logging
import Testing

/// `chime serve`'s settings (file, environment, flags) and its graceful shutdown.
@Suite struct LifecycleTests {
    private var logger: Logger {
        var l = Logger(label: "lifecycle-test")
        l.logLevel = .critical
        return l
    }

    @Test func fileThenEnvironmentThenFlags() throws {
        let dir = TemporaryDirectory("chime-config")
        let toml = dir.file("chime.toml")
        try """
            # a broker for the tests
            data = "/srv/chime"
            port = 7500
            tokens = ["alpha", "beta"]
            durability = "interval=5"
            partitions = 8
            retention_hours = 24.5
            auto_create_topics = false
            """.write(toFile: toml, atomically: true, encoding: .utf8)
        let file = try ServeConfiguration.load(file: toml)
        #expect(file.data == "/srv/chime" && file.port == 7500 && file.tokens == ["alpha", "beta"] && file.partitions == 8)
        #expect(file.retentionHours == 24.5 && file.autoCreateTopics == false && file.host == nil)

        var flags = ServeConfiguration()
        flags.partitions = 2
        let resolved = try ServeConfiguration.resolve(
            file: toml, environment: ["CHIME_PORT": "7600", "CHIME_PARTITIONS": "16", "CHIME_TOKENS": "gamma, delta", "PATH": "/bin"], flags: flags)
        #expect(resolved.port == 7600, "environment over file")
        #expect(resolved.partitions == 2, "flags over environment")
        #expect(resolved.tokens == ["gamma", "delta"])
        #expect(resolved.data == "/srv/chime" && resolved.durability == "interval=5", "file where nothing else is set")

        // The same in JSON.
        let json = dir.file("chime.json")
        try #"{"port": 7700, "admin_port": 0, "log_level": "debug"}"#.write(toFile: json, atomically: true, encoding: .utf8)
        let j = try ServeConfiguration.load(file: json)
        #expect(j.port == 7700 && j.adminPort == 0 && j.logLevel == "debug")
    }

    @Test func theHelloLimitsAreSetInEachLayer() throws {
        let dir = TemporaryDirectory("chime-config")
        let toml = dir.file("chime.toml")
        try """
            max_unauthenticated_connections = 16
            hello_timeout_seconds = 5
            max_hello_bytes = 2048
            """.write(toFile: toml, atomically: true, encoding: .utf8)
        let file = try ServeConfiguration.load(file: toml)
        #expect(file.maxUnauthenticatedConnections == 16 && file.helloTimeoutSeconds == 5 && file.maxHelloBytes == 2_048)
        var flags = ServeConfiguration()
        flags.maxHelloBytes = 1_024
        let resolved = try ServeConfiguration.resolve(
            file: toml, environment: ["CHIME_MAX_UNAUTHENTICATED_CONNECTIONS": "8", "CHIME_HELLO_TIMEOUT_SECONDS": "3"], flags: flags)
        #expect(resolved.maxUnauthenticatedConnections == 8 && resolved.helloTimeoutSeconds == 3, "environment over file")
        #expect(resolved.maxHelloBytes == 1_024, "flags over file")
        #expect(throws: ServeConfiguration.Problem.self) { try ServeConfiguration.environment(["CHIME_HELLO_TIMEOUT_SECONDS": "soon"]) }
    }

    @Test func badSettingsAreNamed() throws {
        let dir = TemporaryDirectory("chime-config")
        func problem(_ text: String, name: String = "c.toml") -> String {
            let path = dir.file(name)
            try? text.write(toFile: path, atomically: true, encoding: .utf8)
            do {
                _ = try ServeConfiguration.load(file: path)
                return "no problem"
            } catch {
                return "\(error)"
            }
        }
        #expect(problem("prot = 7420").contains("unknown setting 'prot'"))
        #expect(problem("port = \"seventy\"").contains("port"))
        #expect(problem("port = ").contains("c.toml:1"), "a TOML syntax error names its line")
        #expect(problem(#"{"port": 1, "dta": "x"}"#, name: "c.json").contains("unknown setting 'dta'"))
        #expect(problem("", name: "missing/none.toml").contains("cannot read"))
        #expect(throws: ServeConfiguration.Problem.self) { try ServeConfiguration.environment(["CHIME_PORT": "x"]) }
        #expect(throws: ServeConfiguration.Problem.self) { try ServeConfiguration.environment(["CHIME_AUTO_CREATE_TOPICS": "maybe"]) }
    }

    @Test func theCommandTakesItsSettingsFromAllThreeLayers() async throws {
        let dir = TemporaryDirectory("chime-serve-config")
        let config = dir.file("chime.toml")
        try "partitions = 3\nport = 1\n".write(toFile: config, atomically: true, encoding: .utf8)
        var env = ProcessInfo.processInfo.environment
        env["CHIME_PARTITIONS"] = "5"
        // Port 1 from the file is overridden by the flag (port 0); partitions from the
        // environment override the file.
        let server = try await Task.detached {
            try ServeProcess(data: dir.file("data"), port: 0, extra: ["--config", config], environment: env)
        }.value
        #expect(server.port > 1)
        let client = ChimeClient(ClientOptions(port: server.port), logger: logger)
        try await client.publish(Array("x".utf8), to: "auto")
        #expect(try await client.topics().first { $0.name == "auto" }?.settings.partitions == 5)
        await client.close()
        let (status, _) = await Task.detached { server.stop() }.value
        #expect(status == 0)
    }

    @Test func sigtermDrainsAndKeepsEverythingAcknowledged() async throws {
        let dir = TemporaryDirectory("chime-graceful")
        let data = dir.file("data")
        let server = try await Task.detached { try ServeProcess(data: data, port: 0) }.value
        let client = ChimeClient(ClientOptions(port: server.port, connectAttempts: 1), logger: logger)
        try await client.createTopic(
            "jobs",
            settings: WireTopicSettings(
                partitions: 2, retentionMilliseconds: nil, retentionBytes: nil, maxMessageBytes: 1 << 20, maxAttempts: 5, dedupWindowMilliseconds: 1_000))
        let later = ChimeClient.nowMilliseconds() + 3_600_000

        // Publishers keep going while the server is told to stop; whatever got an id must
        // be there after a restart.
        let acknowledged = Counter()
        let publishing = Task {
            var i = 0
            while !Task.isCancelled {
                let batch = (0..<50).map { OutgoingRecord(deliverAt: $0 % 2 == 0 ? nil : later, body: Array("m\(i + $0)".utf8)) }
                do {
                    let outcomes = try await client.publish(batch, to: "jobs")
                    await acknowledged.add(outcomes.count)
                } catch {
                    return
                }
                i += 50
            }
        }
        while await acknowledged.value < 2_000 { try await Task.sleep(for: .milliseconds(5)) }
        let (status, output) = await Task.detached { server.stop() }.value
        publishing.cancel()
        _ = await publishing.value
        await client.close()
        #expect(status == 0, "exit 0 after SIGTERM")
        #expect(output.contains("stopped cleanly"))

        let broker = try await Broker.open(BrokerOptions(directory: data, durability: .never, firing: .manual), logger: logger)
        let stats = try await broker.partitionStats(topic: "jobs")
        let stored = stats.reduce(0) { $0 + Int($1.logEnd - $1.readyStart) + $1.scheduled }
        let count = await acknowledged.value
        #expect(stored >= count, "every acknowledged publish is stored (\(stored) stored, \(count) acknowledged)")
        await broker.close()
    }
}

/// Empty tokens: a hello without a token carries an empty one, so `--token ""` (or
/// `tokens = [""]`) let every client in while the banner said "(token required)".
extension LifecycleTests {
    /// `chime serve` with these arguments, which must refuse to start: its exit status and
    /// what it wrote. One that serves instead is stopped (SIGKILL) after a bounded wait, so a
    /// broken check fails the test rather than hanging it.
    private func refusedServe(_ arguments: [String]) async throws -> (status: Int32, output: String, served: Bool) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: builtProduct("chime"))
        process.arguments = ["serve", "--port", "0", "--admin-port", "0"] + arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let reader = pipe.fileHandleForReading
        let (output, served) = await offThePool {
            var output = ""
            while !output.contains("Ctrl-C to stop") {
                let chunk = reader.availableData
                if chunk.isEmpty { return (output, false) }
                output += String(decoding: chunk, as: UTF8.self)
            }
            kill(process.processIdentifier, SIGKILL)
            return (output, true)
        }
        await offThePool { process.waitUntilExit() }
        return (process.terminationStatus, output, served)
    }

    @Test func adminLimitsComeFromAllThreeLayers() throws {
        let dir = TemporaryDirectory("chime-config")
        let toml = dir.file("chime.toml")
        try "admin_max_connections = 50\nadmin_idle_timeout_seconds = 9\n".write(toFile: toml, atomically: true, encoding: .utf8)
        let file = try ServeConfiguration.load(file: toml)
        #expect(file.adminMaxConnections == 50 && file.adminIdleTimeoutSeconds == 9)
        var flags = ServeConfiguration()
        flags.adminMaxConnections = 7
        let resolved = try ServeConfiguration.resolve(file: toml, environment: ["CHIME_ADMIN_IDLE_TIMEOUT_SECONDS": "4"], flags: flags)
        #expect(resolved.adminMaxConnections == 7, "flags over the file")
        #expect(resolved.adminIdleTimeoutSeconds == 4, "environment over the file")
        #expect(throws: ServeConfiguration.Problem.self) { try ServeConfiguration.environment(["CHIME_ADMIN_MAX_CONNECTIONS": "many"]) }
    }

    @Test func brokerLimitsComeFromTheFileAndEnvironmentAndAreEnforcedByName() async throws {
        let dir = TemporaryDirectory("chime-limits")
        let toml = dir.file("chime.toml")
        try "max_topics = 1\nmax_partitions = 3\nmax_groups = 9\n".write(toFile: toml, atomically: true, encoding: .utf8)
        let resolved = try ServeConfiguration.resolve(file: toml, environment: ["CHIME_MAX_PARTITIONS": "4"], flags: ServeConfiguration())
        #expect(resolved.maxTopics == 1 && resolved.maxPartitions == 4 && resolved.maxGroups == 9)
        let serve = try ServeProcess(data: dir.file("data"), port: 0, extra: ["--config", toml])
        defer { serve.stop() }
        let at = ["--port", "\(serve.port)"]
        let first = try await Task.detached { try run(builtProduct("chime"), ["topics", "create", "one", "--partitions", "2"] + at, withErrors: true) }.value
        #expect(first.status == 0, "\(first.output)")
        let second = try await Task.detached { try run(builtProduct("chime"), ["topics", "create", "two", "--partitions", "1"] + at, withErrors: true) }.value
        #expect(second.status != 0)
        #expect(second.output.contains("maxTopics 1"), "\(second.output)")
        let refused = try await refusedServe(["--data", dir.file("data2"), "--config", toml, "--retention-hours", "1e300"])
        #expect(!refused.served && refused.output.contains("retention must be a positive number of hours"), "\(refused.output)")
    }

    @Test func anEmptyTokenFlagIsRefusedWithItsName() async throws {
        let dir = TemporaryDirectory("chime-empty-token")
        for empty in ["", "  "] {
            let refused = try await refusedServe(["--data", dir.file("data"), "--token", "real", "--token", empty])
            #expect(!refused.served, "--token '\(empty)' must not serve")
            #expect(refused.status != 0)
            #expect(refused.output.contains("--token: a token must not be empty"), "\(refused.output)")
        }
    }

    @Test func aConfigFileWithAnEmptyTokenIsRefused() async throws {
        let dir = TemporaryDirectory("chime-empty-token")
        let toml = dir.file("chime.toml")
        try "tokens = [\"\"]\n".write(toFile: toml, atomically: true, encoding: .utf8)
        let json = dir.file("chime.json")
        try #"{"tokens": ["s3cret", ""]}"#.write(toFile: json, atomically: true, encoding: .utf8)
        for file in [toml, json] {
            var message = "loaded"
            do { _ = try ServeConfiguration.load(file: file) } catch let problem as ServeConfiguration.Problem { message = problem.description }
            #expect(message.contains("\(file): tokens: a token must not be empty"), "\(message)")
            let refused = try await refusedServe(["--data", dir.file("data"), "--config", file])
            #expect(!refused.served, "\(file) must not serve")
            #expect(refused.status != 0)
            #expect(refused.output.contains("tokens: a token must not be empty"), "\(refused.output)")
        }
    }

    /// The library refuses them too, with a typed error, before anything binds.
    @Test func serverAndAdminOptionsRefuseAnEmptyToken() async throws {
        #expect(throws: OptionsError.self) { try ServerOptions(tokens: ["ok", ""]).validate() }
        #expect(throws: OptionsError.self) { try AdminOptions(tokens: [" "]).validate() }
        #expect(throws: Never.self) { try ServerOptions(tokens: ["ok"]).validate() }
        do {
            try AdminOptions(tokens: [""]).validate()
            Issue.record("an empty admin token was accepted")
        } catch {
            #expect(error.isEmptyToken && error.option == "tokens")
        }
        let dir = TemporaryDirectory("chime-empty-token")
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let broker = try await Broker.open(BrokerOptions(directory: dir.path, durability: .never, firing: .manual), logger: logger)
        await #expect(throws: OptionsError.self) {
            _ = try await AdminServer.start(broker: broker, options: AdminOptions(port: 0, tokens: [""]), registry: nil, logger: logger)
        }
        await broker.close()
    }
}

actor Counter {
    private(set) var value = 0
    func add(_ n: Int) { value += n }
}
