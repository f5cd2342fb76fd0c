import ChimeTestSupport
import Foundation
import Testing

/// `chime groups create|configure|show|delete` as the real `chime` binary against a real
/// `chime serve`, both child processes.
@Suite struct GroupCommandTests {
    /// The server and the arguments that reach it.
    private struct Served {
        let dir = TemporaryDirectory("chime-group-cli")
        let server: ServeProcess
        init() throws { server = try ServeProcess(data: dir.path, port: 0) }
        var at: [String] { ["--port", "\(server.port)"] }
    }

    private static let chime = builtProduct("chime")

    /// `chime groups <arguments>` on `broker`: its status, and its standard output (with
    /// standard error after it when `withErrors`).
    private static func groups(_ arguments: [String], _ broker: Served, withErrors: Bool = false) throws -> (status: Int32, output: String) {
        try run(chime, ["groups"] + arguments + broker.at, withErrors: withErrors)
    }

    private static func object(_ text: String) -> [String: Any]? {
        try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any]
    }

    @Test func createWithJSONPrintsTheGroupsSettings() throws {
        let broker = try Served()
        defer { broker.server.stop() }
        let created = try Self.groups(["create", "g", "--mode", "shared", "--key-concurrency", "2", "--json"], broker)
        #expect(created.status == 0)
        let lines = created.output.split(separator: "\n")
        #expect(lines.count == 1, "one JSON object: \(created.output)")
        let settings = try #require(Self.object(created.output), "JSON: \(created.output)")
        #expect(settings["mode"] as? String == "shared")
        #expect(settings["keyConcurrency"] as? Int == 2)
        // The rest are the broker's defaults: no limits are null, never left out.
        #expect(settings["keyOrdering"] as? Bool == false)
        #expect(settings["keyRateLimit"] is NSNull && settings["maxAttempts"] is NSNull)
        #expect((settings["maxInFlight"] as? Int ?? 0) >= 1 && (settings["leaseMilliseconds"] as? Int ?? 0) >= 1)
    }

    @Test func configureSetsAKeyRateThatShowPrintsInItsSettings() throws {
        let broker = try Served()
        defer { broker.server.stop() }
        #expect(try Self.groups(["create", "g", "--mode", "shared", "--key-concurrency", "2"], broker).status == 0)
        let configured = try Self.groups(["configure", "g", "--key-rate", "2.5"], broker)
        #expect(configured.status == 0)
        #expect(configured.output.contains("key rate: 2.5/s"), "\(configured.output)")

        let shown = try Self.groups(["show", "g", "--json"], broker)
        #expect(shown.status == 0)
        let group = try #require(Self.object(shown.output), "JSON: \(shown.output)")
        #expect(group["group"] as? String == "g")
        let settings = try #require(group["settings"] as? [String: Any], "settings in \(shown.output)")
        #expect(settings["keyRateLimit"] as? Double == 2.5)
        #expect(settings["mode"] as? String == "shared" && settings["keyConcurrency"] as? Int == 2, "what configure left out stays")

        // And back to none.
        #expect(try Self.groups(["configure", "g", "--key-rate", "none"], broker).status == 0)
        let again = try #require(Self.object(try Self.groups(["show", "g", "--json"], broker).output)?["settings"] as? [String: Any])
        #expect(again["keyRateLimit"] is NSNull)
    }

    @Test func creatingAGroupThatExistsFailsWithOneLineNamingCode119() throws {
        let broker = try Served()
        defer { broker.server.stop() }
        #expect(try Self.groups(["create", "g"], broker).status == 0)
        let again = try Self.groups(["create", "g", "--mode", "shared"], broker, withErrors: true)
        #expect(again.status == 1)
        let lines = again.output.split(separator: "\n", omittingEmptySubsequences: false).filter { !$0.isEmpty }
        #expect(lines.count == 1, "one line: \(again.output)")
        #expect(again.output.hasPrefix("chime: ") && again.output.contains("119"), "\(again.output)")
        // --if-absent: no error, the settings as they were (partitioned, not shared).
        let kept = try Self.groups(["create", "g", "--mode", "shared", "--if-absent", "--json"], broker)
        #expect(kept.status == 0)
        #expect(Self.object(kept.output)?["mode"] as? String == "partitioned", "\(kept.output)")
    }

    @Test func anUnknownModeIsAUsageError() throws {
        let broker = try Served()
        defer { broker.server.stop() }
        let sideways = try Self.groups(["create", "g", "--mode", "sideways"], broker, withErrors: true)
        #expect(sideways.status == 64)
        #expect(sideways.output.hasPrefix("chime: ") && sideways.output.contains("sideways"), "\(sideways.output)")
        #expect(try Self.groups(["configure", "g", "--mode", "sideways"], broker).status == 64)
        // Nothing reached the broker: there is no group g.
        #expect(try Self.groups(["show", "g"], broker).status == 1)
    }

    @Test func deletePrintsWhatItDeletedAndASecondDeleteFails() throws {
        let broker = try Served()
        defer { broker.server.stop() }
        #expect(try Self.groups(["create", "g"], broker).status == 0)
        let deleted = try Self.groups(["delete", "g"], broker)
        #expect(deleted.status == 0)
        #expect(deleted.output == "deleted group g\n")
        let twice = try Self.groups(["delete", "g"], broker, withErrors: true)
        #expect(twice.status == 1)
        #expect(twice.output.hasPrefix("chime: ") && twice.output.contains("109"), "\(twice.output)")
    }
}
