import ChimeTestSupport
import Foundation
import Testing

/// The command line reports what stops it in one format: `chime: <what went wrong>` on one
/// line and exit status 1; a mistake in the command line itself with its usage and 64.
@Suite struct CommandLineErrorTests {
    let chime = builtProduct("chime")

    @Test func anUnknownCommandSuggestsTheNearestOne() throws {
        let typo = try run(chime, ["publsh", "--topic", "jobs", "x"], withErrors: true)
        #expect(typo.status == 64)
        #expect(typo.output.hasPrefix("chime: unknown command 'publsh'; did you mean 'publish'?"), "\(typo.output)")
        let nonsense = try run(chime, ["frobnicate"], withErrors: true)
        #expect(nonsense.status == 64)
        #expect(nonsense.output.hasPrefix("chime: unknown command 'frobnicate'\n"), "\(nonsense.output)")
        #expect(nonsense.output.contains("commands: serve, publish, consume, peek"))
    }

    @Test func usageMistakesShowTheUsageWithStatus64() throws {
        let missing = try run(chime, ["publish", "x"], withErrors: true)
        #expect(missing.status == 64)
        #expect(missing.output.hasPrefix("chime: missing expected argument '--topic <topic>'"), "\(missing.output)")
        #expect(missing.output.contains("Usage: chime publish"))
        let negative = try run(chime, ["publish", "--topic", "jobs", "--delay", "-5s", "x"], withErrors: true)
        #expect(negative.status == 64)
        #expect(negative.output.contains("a delay cannot be negative"), "\(negative.output)")
        let negativeInline = try run(chime, ["publish", "--topic", "jobs", "--delay=-5s", "x"], withErrors: true)
        #expect(negativeInline.status == 64)
        #expect(negativeInline.output.contains("a delay cannot be negative"), "\(negativeInline.output)")
    }

    @Test func anUnreachableBrokerIsOneLineWithStatus1() throws {
        let nowhere = try run(chime, ["publish", "--topic", "jobs", "--port", "1", "x"], withErrors: true)
        #expect(nowhere.status == 1)
        #expect(
            nowhere.output == "chime: cannot reach the broker at 127.0.0.1:1 (connection refused) — is `chime serve` running?\n",
            "\(nowhere.output)")
    }

    @Test func aPortInUseIsOneLineWithStatus1() throws {
        let dir = TemporaryDirectory()
        let server = try ServeProcess(data: dir.path, port: 0)
        defer { server.stop() }
        let other = TemporaryDirectory()
        let second = try run(chime, ["serve", "--data", other.path, "--port", "\(server.port)", "--no-admin"], withErrors: true)
        #expect(second.status == 1)
        let last = second.output.split(separator: "\n").last.map(String.init) ?? ""
        #expect(last == "chime: port \(server.port) on 127.0.0.1 is already in use (another chime serve? choose one with --port)", "\(second.output)")
    }

    /// Consuming a topic that does not exist waits for it instead of creating it; `--create`
    /// creates it.
    @Test func consumingAnUnknownTopicWaitsForItAndNeverCreatesIt() throws {
        let dir = TemporaryDirectory()
        let server = try ServeProcess(data: dir.path, port: 0)
        defer { server.stop() }
        let at = ["--port", "\(server.port)"]
        let waited = try run(chime, ["consume", "--topic", "later", "--group", "g", "--timeout", "1s"] + at, withErrors: true)
        #expect(waited.status == 1)
        #expect(waited.output.contains("chime: topic later does not exist yet; waiting for it"), "\(waited.output)")
        #expect(!(try run(chime, ["topics"] + at).output.contains("later")), "not created")
        let created = try run(chime, ["consume", "--topic", "later", "--group", "g", "--timeout", "1s", "--create"] + at, withErrors: true)
        #expect(created.status == 1, "created, then nothing arrived")
        #expect(try run(chime, ["topics"] + at).output.contains("later"))
    }
}
