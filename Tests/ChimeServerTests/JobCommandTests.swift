import ChimeClient
import ChimeProtocol
import ChimeTestSupport
import Foundation
import Testing

/// `chime jobs show ID` as the real `chime` binary against a real `chime serve`: the ids
/// `chime publish` prints, followed through scheduled, cancelled, ready and succeeded.
@Suite struct JobCommandTests {
    private static let chime = builtProduct("chime")

    private static func chime(_ arguments: [String], _ server: ServeProcess, withErrors: Bool = false) throws -> (status: Int32, output: String) {
        try run(chime, arguments + ["--port", "\(server.port)"], withErrors: withErrors)
    }

    @Test func showFollowsAJobFromScheduledToSucceeded() throws {
        let dir = TemporaryDirectory("chime-jobs-cli")
        let server = try ServeProcess(data: dir.path, port: 0)
        defer { server.stop() }
        let later = try Self.chime(["publish", "--topic", "t", "--delay", "1h", "later"], server)
        #expect(later.status == 0)
        let laterID = later.output.trimmingCharacters(in: .whitespacesAndNewlines)
        let shown = try Self.chime(["jobs", "show", laterID], server)
        #expect(shown.status == 0)
        #expect(shown.output.hasPrefix("\(laterID): scheduled (due "), "\(shown.output)")
        #expect(shown.output.contains("in 60 m") || shown.output.contains("in 59 m"), "\(shown.output)")

        let json = try Self.chime(["jobs", "show", laterID, "--json"], server)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(json.output.utf8)) as? [String: Any], "\(json.output)")
        #expect(object["state"] as? String == "scheduled" && object["id"] as? String == laterID && object["dueAt"] is Int)

        #expect(try Self.chime(["cancel", laterID], server).status == 0)
        #expect(try Self.chime(["jobs", "show", laterID], server).output == "\(laterID): cancelled\n")

        let now = try Self.chime(["publish", "--topic", "t", "now"], server).output.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(try Self.chime(["jobs", "show", now], server).output == "\(now): ready\n", "no group consumes t yet")
        #expect(try Self.chime(["consume", "--topic", "t", "--group", "g", "--count", "1"], server).status == 0)
        #expect(try Self.chime(["jobs", "show", now, "--group", "g"], server).output == "\(now) in g: succeeded\n")
    }

    @Test func badAndUnknownIdsAreOneLineErrors() throws {
        let dir = TemporaryDirectory("chime-jobs-cli")
        let server = try ServeProcess(data: dir.path, port: 0)
        defer { server.stop() }
        _ = try Self.chime(["topics", "create", "t", "--partitions", "1"], server)
        let malformed = try Self.chime(["jobs", "show", "nonsense"], server, withErrors: true)
        #expect(malformed.status == 64)
        #expect(malformed.output.contains("'nonsense' is not a message id"), "\(malformed.output)")
        let unknown = try Self.chime(["jobs", "show", "1-0-r999"], server, withErrors: true)
        #expect(unknown.status == 1)
        #expect(unknown.output.hasPrefix("chime: ") && unknown.output.split(separator: "\n").count == 1, "\(unknown.output)")
    }

    @Test func abortCancelsAScheduledJobAndSaysSoThenFinished() throws {
        let dir = TemporaryDirectory("chime-jobs-cli")
        let server = try ServeProcess(data: dir.path, port: 0)
        defer { server.stop() }
        let id = try Self.chime(["publish", "--topic", "t", "--delay", "1h", "later"], server).output.trimmingCharacters(in: .whitespacesAndNewlines)
        let aborted = try Self.chime(["jobs", "abort", id, "--reason", "not needed"], server)
        #expect(aborted.status == 0)
        #expect(aborted.output == "\(id): cancelled (it had not run; it will not)\n")
        #expect(try Self.chime(["jobs", "show", id], server).output == "\(id): cancelled\n")
        #expect(try Self.chime(["jobs", "abort", id], server).output == "\(id): finished already; nothing to abort\n")
        let malformed = try Self.chime(["jobs", "abort", "nonsense"], server, withErrors: true)
        #expect(malformed.status == 64)
    }

    @Test func completeResumesAParkedJobOnceAndRefusesTheSecondTime() async throws {
        let dir = TemporaryDirectory("chime-jobs-cli")
        let server = try ServeProcess(data: dir.path, port: 0)
        defer { server.stop() }
        let client = ChimeClient(ClientOptions(port: server.port, name: "parker"), logger: testLogger)
        try await client.createTopic("approvals")
        let id = try await client.publish(Array("refund 40 EUR".utf8), to: "approvals")
        var messages = client.consume(group: "g", topics: ["approvals"]).makeAsyncIterator()
        let job = try #require(try await messages.next())
        let token = try await job.awaitCallback(timeout: .seconds(3_600))
        #expect(try Self.chime(["jobs", "show", id.text, "--group", "g"], server).output.hasPrefix("\(id.text) in g: awaiting-callback (times out in "))

        let done = try Self.chime(["complete", token, "approved"], server)
        #expect(done.status == 0)
        #expect(done.output == "\(token): completed\n")
        let again = try Self.chime(["complete", token, "approved"], server, withErrors: true)
        #expect(again.status == 1)
        #expect(again.output.contains("completed already, timed out, or never issued"), "\(again.output)")
        let bogus = try Self.chime(["complete", "not-a-token"], server, withErrors: true)
        #expect(bogus.status == 1)

        let resumed = try #require(try await messages.next())
        #expect(resumed.delivery.headers.first { $0.name == "chime-callback-payload" }?.value == Array("approved".utf8))
        try await resumed.ack()
        await messages.leave()
        await client.close()
    }
}
