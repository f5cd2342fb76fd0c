import ChimeClient
import ChimeProtocol
import ChimeTestSupport
import Foundation
import Glibc
import Testing

/// Crash safety of `chime work`: one of two workers SIGKILLed half-way through a topic.
@Suite struct WorkerKillTests {
    @Test func aWorkerKilledHalfWayLosesNothingAndRepeatsOnlyWhatItWasRunning() async throws {
        let concurrency = 4
        let total = 2_000
        let server = try WorkerTestServer("chime-work-kill")
        defer { server.stop() }
        let client = server.client("kill")
        try await client.createTopic("t", settings: topicSettings(partitions: 2))
        // A short session: what the killed worker held comes back soon after it dies.
        try await client.createGroup("g", settings: WireGroupSettings(mode: .shared, leaseMilliseconds: 2_000, sessionTimeoutMilliseconds: 1_500))
        let bodies = (0..<total).map { String(format: "m%04d", $0) }
        for chunk in stride(from: 0, to: total, by: 500) {
            _ = try await client.publish(bodies[chunk..<min(chunk + 500, total)].map { OutgoingRecord(body: Array($0.utf8)) }, to: "t")
        }

        // Each run appends "<worker> <body> <attempt>" to one file: one short line, one
        // append (atomic for a line this short).
        let scratch = TemporaryDirectory("chime-work-kill-scripts")
        let script = scratch.file("job.sh")
        let results = scratch.file("results")
        try """
            IFS= read -r body
            printf '%s %s %s\\n' "$1" "$body" "$CHIME_ATTEMPT" >> "$2"
            """.write(toFile: script, atomically: true, encoding: .utf8)
        _ = FileManager.default.createFile(atPath: results, contents: nil)
        let options = ["--concurrency", "\(concurrency)", "--timeout", "10s", "--max-attempts", "5", "--backoff", "100ms", "--grace", "10s"]
        let workers = try ["A", "B"].map { name in
            try WorkProcess(
                port: server.port, topic: "t", group: "g", options: options + ["--name", "worker-\(name)"], command: ["/bin/sh", script, name, results],
                log: scratch.file("\(name).log"))
        }
        defer { for w in workers { w.ensureStopped() } }

        func lines() -> [[Substring]] {
            ((try? String(contentsOfFile: results, encoding: .utf8)) ?? "").split(separator: "\n").map { $0.split(separator: " ", omittingEmptySubsequences: false) }
        }
        // Both at work, a good part done: A dies without a word.
        let halfWay = await eventually {
            let l = lines()
            return l.count >= total / 3 && l.contains { $0.first == "A" } && l.contains { $0.first == "B" }
        }
        #expect(halfWay, "both workers ran jobs; A's log:\n\(workers[0].log.suffix(1_500))")
        workers[0].kill9()

        let expected = Set(bodies)
        let finished = await eventually(within: .seconds(90)) {
            guard Set(lines().compactMap { $0.count == 3 ? String($0[1]) : nil }).isSuperset(of: expected) else { return false }
            return try await client.groupIsDone("g", topic: "t")
        }
        #expect(finished, "B finished the topic; B's log:\n\(workers[1].log.suffix(1_500))")
        #expect(workers[1].terminate() == 0)

        // A's commands that were running when it died live on (each in its process group);
        // one that had not got its body yet appends an empty one. Those are no messages.
        let runs = lines().filter { $0.count == 3 && !$0[1].isEmpty }
        let bodyless = lines().filter { $0.count == 3 && $0[1].isEmpty }
        #expect(bodyless.allSatisfy { $0[0] == "A" }, "only the killed worker's orphans go without a body")
        let byBody = Dictionary(grouping: runs, by: { String($0[1]) })
        #expect(Set(byBody.keys) == expected, "every message ran at least once, and nothing else did")
        let repeated = byBody.filter { $0.value.count > 1 }
        for (body, r) in repeated.sorted(by: { $0.key < $1.key }) {
            let by = r.map { String($0[0]) }.sorted()
            #expect(by == ["A", "B"], "\(body) ran again only because A died running it: \(r.map { $0.joined(separator: " ") })")
            #expect(r.first { $0[0] == "B" }?[2] == "2", "\(body)'s second run is its second attempt")
        }
        // Ran twice: only what A was running when it died, so at most its concurrency. (A
        // command that finished and exited 0 is not run again: its ack must have reached
        // the broker before its slot took the next message.)
        #expect(repeated.count <= concurrency, "only what A was running ran twice: \(repeated.keys.sorted())")
        let afterwards = try await client.groupStats("g")
        #expect(afterwards?.lag == 0 && afterwards?.inFlight == 0)
        #expect(try await client.deadLetters(of: "g").isEmpty)
        await client.close()
    }
}
