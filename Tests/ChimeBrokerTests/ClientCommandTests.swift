import ChimeTestSupport
import Foundation
import Glibc
import Testing

/// `chime publish` and `chime consume` against `chime serve`, all three as real processes.
@Suite struct ClientCommandTests {
    @Test func publishThenConsumeFromTheCommandLine() async throws {
        let dir = TemporaryDirectory()
        let server = Process()
        server.executableURL = URL(fileURLWithPath: builtProduct("chime"))
        server.arguments = ["serve", "--data", dir.path, "--port", "0", "--admin-port", "0"]
        let pipe = Pipe()
        server.standardOutput = pipe
        server.standardError = FileHandle.nullDevice
        try server.run()
        defer {
            kill(server.processIdentifier, SIGTERM)
            server.waitUntilExit()
        }
        var output = ""
        while !output.contains("Ctrl-C to stop") {
            let chunk = pipe.fileHandleForReading.availableData
            if chunk.isEmpty { break }
            output += String(decoding: chunk, as: UTF8.self)
        }
        let port = try #require(output.split(separator: "\n").first { $0.contains("serving the broker protocol on") }?
            .split(separator: ":").last?.split(separator: ".").first.flatMap { Int($0) })
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
}
