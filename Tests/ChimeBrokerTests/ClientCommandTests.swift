import ChimeTestSupport
import Foundation
import Glibc
import Testing

/// `chime publish` and `chime consume` against `chime serve`, all three as real processes.
@Suite struct ClientCommandTests {
    @Test func publishThenConsumeFromTheCommandLine() async throws {
        let dir = TemporaryDirectory()
        let server = try ServeProcess(data: dir.path, port: 0)
        defer { server.stop() }
        let port = server.port
        #expect(port > 0)
        let chime = builtProduct("chime")
        let at = ["--port", "\(port)"]

        let one = try run(chime, ["publish", "--topic", "jobs", "--key", "k1", "first"] + at)
        #expect(one.status == 0)
        #expect(one.output.trimmingCharacters(in: .whitespacesAndNewlines).range(of: #"^\d+-\d+-r\d+$"#, options: .regularExpression) != nil)
        let later = try run(chime, ["publish", "--topic", "jobs", "--delay", "300ms", "later"] + at)
        #expect(later.output.contains("-s"), "a scheduled id")
        let many = try run(chime, ["publish", "--topic", "jobs", "--count", "500", "--size", "20"] + at)
        #expect(many.output.contains("published 500 messages of 20 B"))

        let consumed = try run(chime, ["consume", "--topic", "jobs", "--group", "g", "--count", "502", "--json", "--timeout", "10s"] + at)
        #expect(consumed.status == 0)
        let objects = consumed.output.split(separator: "\n").compactMap {
            try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        }
        #expect(objects.count == 502)
        let bodies = objects.compactMap { $0["body"] as? String }
        #expect(bodies.filter { $0 == "first" }.count == 1 && bodies.filter { $0 == "later" }.count == 1)
        #expect(bodies.filter { $0 == String(repeating: "a", count: 20) }.count == 500)
        for o in objects {
            let due = o["dueAt"] as? Int64 ?? 0, delivered = o["deliveredAt"] as? Int64 ?? 0
            #expect(delivered >= due, "never before its due time")
            #expect(["topic", "partition", "offset", "id", "key", "publishedAt", "attempt"].allSatisfy { o[$0] != nil })
        }
        #expect(objects.first { $0["body"] as? String == "first" }?["key"] as? String == "k1")

        // Everything was acked: a second consumer waits, then gives up with a non-zero status.
        let nothing = try run(chime, ["consume", "--topic", "jobs", "--group", "g", "--count", "1", "--timeout", "500ms"] + at)
        #expect(nothing.status == 1)
        // A broker that is not there: a clear error, non-zero.
        let nowhere = try run(chime, ["publish", "--topic", "jobs", "--port", "1", "x"])
        #expect(nowhere.status != 0)
    }

    /// `chime peek` shows messages and changes nothing: after it, and after a `consume
    /// --no-ack` that gave its messages back by leaving, a consumer gets every message as its
    /// first attempt.
    @Test func peekAndNoAckLookWithoutConsuming() async throws {
        let dir = TemporaryDirectory()
        let server = try ServeProcess(data: dir.path, port: 0)
        defer { server.stop() }
        let chime = builtProduct("chime")
        let at = ["--port", "\(server.port)"]
        #expect(try run(chime, ["topics", "create", "jobs", "--partitions", "1"] + at).status == 0)
        #expect(try run(chime, ["publish", "--topic", "jobs", "--count", "30", "--size", "5"] + at).status == 0)

        let peeked = try run(chime, ["peek", "--topic", "jobs", "--count", "25", "--json"] + at)
        #expect(peeked.status == 0)
        let offsets = peeked.output.split(separator: "\n").compactMap {
            (try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])?["offset"] as? Int
        }
        #expect(offsets == Array(0..<25))
        let browsed = try run(chime, ["consume", "--topic", "jobs", "--group", "g", "--count", "10", "--no-ack", "--json"] + at)
        #expect(browsed.status == 0)
        let backlog = try run(chime, ["peek", "--topic", "jobs", "--group", "g", "--count", "100"] + at)
        #expect(backlog.output.split(separator: "\n").count == 30, "nothing was acked")

        let consumed = try run(chime, ["consume", "--topic", "jobs", "--group", "g", "--count", "30", "--json", "--timeout", "10s"] + at)
        let attempts = consumed.output.split(separator: "\n").compactMap {
            (try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])?["attempt"] as? Int
        }
        #expect(attempts == Array(repeating: 1, count: 30), "peeks and a browse that left are no attempts")
        #expect(try run(chime, ["peek", "--topic", "jobs", "--group", "g"] + at).output.isEmpty, "everything acked")
        let missing = try run(chime, ["peek", "--topic", "nope"] + at, withErrors: true)
        #expect(missing.status == 1)
        #expect(missing.output.contains("topic nope does not exist"))
    }

    /// `chime bench` removes its topics and their groups, and with --strict a
    /// missed target is the exit status (two messages cannot be consumed at 100,000/s: the
    /// join alone takes longer).
    @Test func benchCleansUpAndStrictVerdictsSetTheExitStatus() async throws {
        let dir = TemporaryDirectory()
        let server = try ServeProcess(data: dir.path, port: 0)
        defer { server.stop() }
        let chime = builtProduct("chime")
        let at = ["--port", "\(server.port)"]
        let informative = try run(chime, ["bench", "--only", "consume", "--messages", "2"] + at)
        #expect(informative.status == 0)
        #expect(informative.output.contains("consume-loop") && informative.output.contains("NOT met"))
        let strict = try run(chime, ["bench", "--only", "consume", "--messages", "2", "--strict"] + at, withErrors: true)
        #expect(strict.status == 1)
        #expect(strict.output.contains("chime: 2 of 2 cases missed their target"), "\(strict.output)")
        #expect(!(try run(chime, ["topics"] + at).output.contains("bench-")), "no bench topic is left")
        let groups = try run(chime, ["groups"] + at).output
        #expect(!groups.contains("bench-"), "no bench group is left: \(groups)")
    }

    @Test func topicsGroupsStatsAndCancelFromTheCommandLine() async throws {
        let dir = TemporaryDirectory()
        let server = try ServeProcess(data: dir.path, port: 0)
        defer { server.stop() }
        let port = server.port
        #expect(port > 0)
        let chime = builtProduct("chime")
        let at = ["--port", "\(port)"]
        func json(_ text: String) -> [[String: Any]] {
            text.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        }

        let created = try run(chime, ["topics", "create", "orders", "--partitions", "3", "--retention", "30d", "--max-attempts", "7"] + at, withErrors: true)
        #expect(created.status == 0 && created.output.contains("created topic orders") && created.output.contains("3 partition"))
        let again = try run(chime, ["topics", "create", "orders"] + at, withErrors: true)
        #expect(again.status != 0 && again.output.contains("code 101"), "exists: \(again.output)")

        let scheduled = try run(chime, ["publish", "--topic", "orders", "--delay", "1h", "later"] + at, withErrors: true)
        let id = scheduled.output.trimmingCharacters(in: .whitespacesAndNewlines)
        _ = try run(chime, ["publish", "--topic", "orders", "--count", "10", "--size", "5"] + at, withErrors: true)

        let listed = json(try run(chime, ["topics", "list", "--json"] + at).output)
        let orders = try #require(listed.first { $0["topic"] as? String == "orders" })
        let parts = orders["partitions"] as? [[String: Any]] ?? []
        #expect(parts.count == 3)
        #expect(parts.reduce(0) { $0 + (($1["scheduled"] as? Int) ?? 0) } == 1)
        #expect(parts.reduce(0) { $0 + (($1["logEnd"] as? Int) ?? 0) - (($1["readyStart"] as? Int) ?? 0) } == 10)
        #expect((orders["settings"] as? [String: Any])?["maxAttempts"] as? Int == 7)
        let table = try run(chime, ["topics"] + at, withErrors: true)
        #expect(table.output.contains("TOPIC") && table.output.contains("orders"))

        // Four consumed without acking: lag 10, 4 in flight.
        let consumed = try run(chime, ["consume", "--topic", "orders", "--group", "billing", "--count", "4", "--no-ack", "--timeout", "10s"] + at, withErrors: true)
        #expect(consumed.status == 0)
        let groups = json(try run(chime, ["groups", "list", "--json"] + at).output)
        let billing = try #require(groups.first { $0["group"] as? String == "billing" })
        #expect(billing["lag"] as? Int == 10)
        let show = try run(chime, ["groups", "show", "billing"] + at, withErrors: true)
        #expect(show.status == 0 && show.output.contains("group billing") && show.output.contains("PARTITION"))
        let stats = try run(chime, ["stats", "--topic", "orders"] + at, withErrors: true)
        #expect(stats.status == 0 && stats.output.contains("topic orders"))
        let unknown = try run(chime, ["stats", "--topic", "nope"] + at, withErrors: true)
        #expect(unknown.status != 0 && unknown.output.contains("does not exist"))

        let cancelled = try run(chime, ["cancel", id] + at, withErrors: true)
        #expect(cancelled.status == 0 && cancelled.output.contains("cancelled \(id)"))
        let twice = try run(chime, ["cancel", id] + at, withErrors: true)
        #expect(twice.status == 1, "already cancelled: \(twice.output)")
        let garbage = try run(chime, ["cancel", "not-an-id"] + at, withErrors: true)
        #expect(garbage.status != 0 && garbage.output.contains("is not a message id"))

        let refused = try run(chime, ["topics", "delete", "orders"] + at, withErrors: true)
        #expect(refused.status != 0 && refused.output.contains("--yes"), "no terminal, no --yes: refused")
        let deleted = try run(chime, ["topics", "delete", "orders", "--yes"] + at, withErrors: true)
        #expect(deleted.status == 0)
        #expect(!(try run(chime, ["topics", "list", "--json"] + at).output.contains("\"orders\"")))
    }

    /// `--delay` travels as a delay: reading standard input, each line is due its delay
    /// after the broker receives it, however late the line comes.
    @Test func publishReadingStandardInputDelaysEachLineFromItsOwnArrival() async throws {
        let dir = TemporaryDirectory()
        let server = try ServeProcess(data: dir.path, port: 0)
        defer { server.stop() }
        let chime = builtProduct("chime")
        let at = ["--port", "\(server.port)"]
        let publisher = Process()
        publisher.executableURL = URL(fileURLWithPath: chime)
        publisher.arguments = ["publish", "--topic", "lines", "--delay", "1s"] + at
        let input = Pipe()
        publisher.standardInput = input
        publisher.standardOutput = FileHandle.nullDevice
        try publisher.run()
        input.fileHandleForWriting.write(Data("early\n".utf8))
        try await Task.sleep(for: .seconds(2))
        input.fileHandleForWriting.write(Data("late\n".utf8))
        try input.fileHandleForWriting.close()
        publisher.waitUntilExit()
        #expect(publisher.terminationStatus == 0)

        let consumed = try run(chime, ["consume", "--topic", "lines", "--group", "g", "--count", "2", "--json", "--timeout", "10s"] + at)
        let objects = consumed.output.split(separator: "\n").compactMap {
            try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        }
        #expect(objects.compactMap { $0["body"] as? String }.sorted() == ["early", "late"])
        for o in objects {
            let published = o["publishedAt"] as? Int64 ?? 0, due = o["dueAt"] as? Int64 ?? 0
            #expect(due == published + 1_000, "\(o["body"] ?? "?") is due its delay after it arrived, not after the command started")
        }
    }
}
