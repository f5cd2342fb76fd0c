import ChimeBroker
import ChimeClient
import ChimeProtocol
import ChimeServer
import ChimeTestSupport
import Foundation
import Glibc
import Logging
import NIOCore
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
        let json = try Self.configFile(#"{"port": 7700, "admin_port": 0, "log_level": "debug"}"#, named: "chime.json", in: dir)
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
        let config = try Self.configFile("partitions = 3\nport = 1\n", named: "chime.toml", in: dir)
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
                let batch = (0..<50).map { OutgoingRecord(due: $0 % 2 == 0 ? nil : .at(later), body: Array("m\(i + $0)".utf8)) }
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
    /// Graceful shutdown answers the requests a connection has read, held ones included:
    /// requests read while the connection was over its budget wait in order, and a drain
    /// must start them as the ones ahead are answered, not drop them.
    @Test func aDrainAnswersTheRequestsHeldOverBudget() async throws {
        let f = try await ServerFixture(ServerOptions(port: 0, maxInFlightPerConnection: 1))
        let c = try await f.client()
        _ = try await c.call(.createTopic, CreateTopic(name: "t", settings: nil), as: WireTopic.self)
        _ = try await c.call(.createTopic, CreateTopic(name: "empty", settings: nil), as: WireTopic.self)
        let m = try await c.call(.join, Join(group: "g", member: "w", topics: ["empty"]), as: WireMembership.self)
        // Three requests in one write, so one read takes them all: the first starts, the
        // other two are held (one request in progress at most).
        var bytes = ByteBuffer()
        Frame(opcode: .publish, correlationID: 100, payload: Publish(topic: "t", records: [OutgoingRecord(body: Array("w".utf8))]).payload())
            .write(to: &bytes)
        Frame(opcode: .fetch, correlationID: 101, payload: Fetch(group: "g", memberID: m.memberID, max: 1, waitMilliseconds: 500).payload())
            .write(to: &bytes)
        Frame(opcode: .publish, correlationID: 102, payload: Publish(topic: "t", records: [OutgoingRecord(body: Array("a".utf8))]).payload())
            .write(to: &bytes)
        await c.send(Array(bytes.readableBytesView))
        // The first answer means all three were read; the fetch now waits, the last is held.
        #expect(try #require(await c.readFrame()).correlationID == 100)
        let server = f.server
        let draining = Task { await server.shutdown() }
        var answered: [UInt32] = []
        while let frame = await c.readFrame() { answered.append(frame.correlationID) }
        await draining.value
        #expect(answered == [101, 102], "every request read is answered before the connection closes")
        #expect(try await f.broker.partitionStats(topic: "t").reduce(0) { $0 + $1.logEnd - $1.readyStart } == answered.count)
        await f.shutdown()
    }

    /// `shutdown(gracePeriod:)` closes connections still busy when the grace period ends.
    /// It waited for them instead (until a long fetch answered by itself, however long),
    /// because the wait for their closing was a child task that cancellation does not stop.
    @Test func theGracePeriodBoundsAShutdown() async throws {
        let f = try await ServerFixture()
        let c = try await f.client()
        _ = try await c.call(.createTopic, CreateTopic(name: "empty", settings: nil), as: WireTopic.self)
        let m = try await c.call(.join, Join(group: "g", member: "w", topics: ["empty"]), as: WireMembership.self)
        // A fetch that waits up to 10 s for a message that never comes.
        await c.send(.fetch, Fetch(group: "g", memberID: m.memberID, max: 1, waitMilliseconds: 10_000))
        // The join answered, so the connection is read; the fetch frame follows it.
        try await Task.sleep(for: .milliseconds(200))
        let server = f.server
        let stopping = Task { await server.shutdown(gracePeriod: .milliseconds(100)) }
        let answer = await c.readFrame()
        #expect(answer == nil, "closed at the end of the grace period, before the fetch's own deadline")
        await stopping.value
        await f.shutdown()
    }

    /// `retention_hours = 72` is how anyone writes whole hours in TOML; it was refused with
    /// "Key 'retention_hours' not found". And a value of the wrong type is named as such.
    @Test func aConfigurationFileTakesWholeHoursAndNamesWrongTypes() throws {
        let dir = TemporaryDirectory("chime-config-hours")
        let toml = try Self.configFile("retention_hours = 72\npartitions = 8\n", named: "chime.toml", in: dir)
        let c = try ServeConfiguration.load(file: toml)
        #expect(c.retentionHours == 72 && c.partitions == 8)

        let wrong = try Self.configFile("port = 7420.5\n", named: "wrong.toml", in: dir)
        do {
            _ = try ServeConfiguration.load(file: wrong)
            Issue.record("a fractional port was taken")
        } catch {
            #expect("\(error)".contains("port has the wrong type"), "\(error)")
        }
    }

    /// `chime topics create` says unset settings take the broker's defaults for new topics;
    /// it sent its own (4 partitions, 7 days) whatever `chime serve` was told.
    @Test func topicsCreateWithoutSettingsTakesTheBrokersDefaults() async throws {
        let dir = TemporaryDirectory("chime-create-defaults")
        let server = try await Task.detached {
            try ServeProcess(data: dir.file("data"), port: 0, extra: ["--partitions", "2", "--retention-hours", "5"])
        }.value
        let at = ["--port", "\(server.port)"]
        let created = try await Task.detached { try run(builtProduct("chime"), ["topics", "create", "plain"] + at, withErrors: true) }.value
        #expect(created.status == 0, "\(created.output)")
        let explicit = try await Task.detached {
            try run(builtProduct("chime"), ["topics", "create", "wide", "--partitions", "6"] + at, withErrors: true)
        }.value
        #expect(explicit.status == 0, "\(explicit.output)")
        let client = ChimeClient(ClientOptions(port: server.port), logger: logger)
        let topics = try await client.topics()
        let plain = try #require(topics.first { $0.name == "plain" })
        #expect(plain.settings.partitions == 2 && plain.settings.retentionMilliseconds == 5 * 3_600_000, "the broker's defaults")
        #expect(topics.first { $0.name == "wide" }?.settings.partitions == 6)
        await client.close()
        _ = await Task.detached { server.stop() }.value
    }

    /// An idle timeout of 0 closes every connection the moment it opens, a connection
    /// limit of 0 refuses all, a frame limit of 0 refuses every frame: a broker that starts
    /// and serves nobody. `chime serve` must refuse such settings by name, like the others.
    @Test func serveRefusesConnectionSettingsThatServeNobody() async throws {
        for (variable, name) in [
            ("CHIME_IDLE_TIMEOUT_SECONDS", "idle"), ("CHIME_MAX_CONNECTIONS", "connections"), ("CHIME_MAX_FRAME_BYTES", "frame"),
            ("CHIME_MAX_UNAUTHENTICATED_CONNECTIONS", "unauthenticated"), ("CHIME_HELLO_TIMEOUT_SECONDS", "hello timeout"),
            ("CHIME_MAX_HELLO_BYTES", "hello limit"), ("CHIME_MAX_OPEN_FILES", "open files"), ("CHIME_CONNECTION_BUFFER_MIB", "connection buffer"),
        ] {
            let dir = TemporaryDirectory("chime-serve-refused")
            var env = ProcessInfo.processInfo.environment
            env[variable] = "0"
            let server = try await Task.detached { try ServeProcess(data: dir.file("data"), port: 0, environment: env) }.value
            let (status, _) = await Task.detached { server.stop() }.value
            #expect(server.port == -1 && status != 0, "\(variable)=0 refused at start, not served (\(name))")
        }
    }

    /// `max_open_files = 16` and 100 partitions (over 200 store files): every partition
    /// takes its publish, the server holds at most the cache's descriptors of its data
    /// directory (and one per call in progress), and after a restart every message is there.
    @Test func aServerWithFewOpenFilesServesManyPartitions() async throws {
        let dir = TemporaryDirectory("chime-open-files")
        var env = ProcessInfo.processInfo.environment
        env["CHIME_MAX_OPEN_FILES"] = "16"
        let data = dir.file("data")
        let environment = env
        func start() async throws -> ServeProcess {
            try await Task.detached { try ServeProcess(data: data, port: 0, environment: environment) }.value
        }
        let topics = (0..<25).map { "t\($0)" }
        let server = try await start()
        let c = try await RawClient.authenticated(port: server.port)
        for t in topics {
            for p in 0..<4 {
                _ = try await c.call(.publish, Publish(topic: t, partition: Int32(p), records: [OutgoingRecord(body: Array("\(t)/\(p)".utf8))]), as: PublishReply.self)
            }
        }
        let fds = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(server.process.processIdentifier)/fd")) ?? []
        let dataFiles = fds.compactMap { try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(server.process.processIdentifier)/fd/\($0)") }
            .filter { $0.hasPrefix(data) && !$0.hasSuffix(".lock") }
        #expect(!fds.isEmpty && dataFiles.count <= 16 + 8, "\(dataFiles.count) data files open")
        await c.close()
        #expect(await Task.detached { server.stop() }.value.status == 0)

        let restarted = try await start()
        let again = try await RawClient.authenticated(port: restarted.port)
        let stats = try await again.call(.stats, StatsRequest(topics: topics, groups: [], includeMembers: false), as: StatsReply.self)
        #expect(stats.topics.count == 25)
        #expect(stats.topics.allSatisfy { $0.partitions.count == 4 && $0.partitions.allSatisfy { $0.logEnd == 1 } }, "every partition kept its message")
        await again.close()
        #expect(await Task.detached { restarted.stop() }.value.status == 0)
    }

    /// An empty `CHIME_TOKENS` (a unit file's `CHIME_TOKENS=${UNSET}`) overrode the file's
    /// tokens with none: the broker served without authentication, silently but for the
    /// warning on non-loopback hosts. An empty list from the environment is no setting.
    @Test func anEmptyTokensVariableDoesNotTurnAuthenticationOff() throws {
        let dir = TemporaryDirectory("chime-empty-tokens")
        let toml = try Self.configFile("host = \"0.0.0.0\"\ntokens = [\"s3cret\"]\n", named: "chime.toml", in: dir)
        for empty in ["", " , "] {
            let c = try ServeConfiguration.resolve(file: toml, environment: ["CHIME_TOKENS": empty], flags: ServeConfiguration())
            #expect(c.tokens == ["s3cret"], "CHIME_TOKENS='\(empty)'")
        }
        let set = try ServeConfiguration.resolve(file: toml, environment: ["CHIME_TOKENS": "other"], flags: ServeConfiguration())
        #expect(set.tokens == ["other"])
    }

    /// A configuration file of `text` in `dir`; its path.
    static func configFile(_ text: String, named name: String, in dir: TemporaryDirectory) throws -> String {
        let path = dir.file(name)
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

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
        let toml = try Self.configFile("admin_max_connections = 50\nadmin_idle_timeout_seconds = 9\n", named: "chime.toml", in: dir)
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
        let toml = try Self.configFile("max_topics = 1\nmax_partitions = 3\nmax_groups = 9\n", named: "chime.toml", in: dir)
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
        let toml = try Self.configFile("tokens = [\"\"]\n", named: "chime.toml", in: dir)
        let json = try Self.configFile(#"{"tokens": ["s3cret", ""]}"#, named: "chime.json", in: dir)
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
