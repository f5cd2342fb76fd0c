import ChimeClient
import ChimeProtocol
import ChimeTestSupport
import Foundation
import Glibc
import Testing

/// `chime work` as a user runs it: the real binary against a real `chime serve`, running
/// small shell scripts as real child processes, one per message.
@Suite struct WorkCommandTests {
    /// The options every run here uses.
    static let options = ["--concurrency", "4", "--timeout", "2s", "--max-attempts", "2", "--backoff", "100ms"]

    /// A server, a client, the topic, a directory for scripts and what they write, and
    /// `chime work` running `/bin/sh <script> <out>`.
    struct Setup {
        let server: WorkerTestServer
        let client: ChimeClient
        let scratch: TemporaryDirectory
        let out: String
        let work: WorkProcess

        init(_ label: String, script: String, groupSettings: WireGroupSettings? = nil, extraOptions: [String] = []) async throws {
            server = try WorkerTestServer("chime-work-\(label)")
            client = server.client(label)
            scratch = TemporaryDirectory("chime-work-scripts")
            out = scratch.file("out")
            try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
            try script.write(toFile: scratch.file("job.sh"), atomically: true, encoding: .utf8)
            try await client.createTopic("t", settings: topicSettings(partitions: 2))
            if let groupSettings { try await client.createGroup("g", settings: groupSettings) }
            work = try WorkProcess(
                port: server.port, topic: "t", group: "g", options: WorkCommandTests.options + extraOptions, command: ["/bin/sh", scratch.file("job.sh"), out],
                log: scratch.file("work.log"))
        }

        func file(_ name: String) -> String? { try? String(contentsOfFile: out + "/" + name, encoding: .utf8) }

        func finish() async {
            work.ensureStopped()
            await client.close()
            server.stop()
        }
    }

    @Test func aCommandThatSucceedsGetsTheBodyOnStdinAndTheMessageInItsEnvironment() async throws {
        let s = try await Setup(
            "ok",
            script: """
                o="$1/$CHIME_ID"
                cat > "$o.body.tmp"
                env | grep '^CHIME_' > "$o.env.tmp"
                mv "$o.env.tmp" "$o.env"
                mv "$o.body.tmp" "$o.body"
                """)
        var expected: [String: (body: String, key: String)] = [:]
        for n in 0..<5 {
            let body = "message \(n)\nsecond line, with 'quotes' and $HOME unexpanded\n"
            let id = try await s.client.publish(Array(body.utf8), to: "t", key: Array("key-\(n)".utf8))
            expected[id.text] = (body, "key-\(n)")
        }
        let done = await eventually {
            guard expected.keys.allSatisfy({ s.file("\($0).body") != nil }) else { return false }
            return try await s.client.groupIsDone("g", topic: "t")
        }
        #expect(done, "every message ran and was acked; log:\n\(s.work.log.suffix(2_000))")
        for (id, want) in expected {
            #expect(s.file("\(id).body") == want.body, "the body of \(id) on standard input")
            let env = Dictionary(
                (s.file("\(id).env") ?? "").split(separator: "\n").compactMap { line -> (String, String)? in
                    guard let eq = line.firstIndex(of: "=") else { return nil }
                    return (String(line[..<eq]), String(line[line.index(after: eq)...]))
                }, uniquingKeysWith: { a, _ in a })
            #expect(env["CHIME_ID"] == id)
            #expect(env["CHIME_ATTEMPT"] == "1")
            #expect(env["CHIME_TOPIC"] == "t")
            #expect(env["CHIME_GROUP"] == "g")
            #expect(env["CHIME_KEY"] == want.key)
        }
        #expect(try await s.client.deadLetters(of: "g").isEmpty)
        await s.finish()
    }

    @Test func aCommandThatExitsWithAFailureIsDeadLetteredAfterItsAttemptsWithTheStatusAndItsStderr() async throws {
        let s = try await Setup(
            "fail",
            script: """
                echo "$CHIME_ATTEMPT" >> "$1/attempts"
                echo "some noise first" >&2
                echo "cannot parse order $CHIME_ID" >&2
                exit 3
                """)
        let id = try await s.client.publish(Array("order".utf8), to: "t")
        let lettered = await eventually {
            guard try await !s.client.deadLetters(of: "g").isEmpty else { return false }
            return try await s.client.groupIsDone("g", topic: "t")
        }
        #expect(lettered, "log:\n\(s.work.log.suffix(2_000))")
        #expect(s.file("attempts") == "1\n2\n", "two attempts (--max-attempts 2), then no more")
        let letters = try await s.client.deadLetters(of: "g")
        #expect(letters.count == 1)
        let error = letters.first?.header("chime-dlq-error") ?? ""
        #expect(error.contains("exit status 3"), "\(error)")
        #expect(error.contains("cannot parse order \(id.text)"), "the end of its standard error: \(error)")
        #expect(letters.first?.header("chime-dlq-attempts") == "2")
        await s.finish()
    }

    @Test func aCommandThatExitsWithTempfailIsTriedAgain() async throws {
        let s = try await Setup(
            "tempfail",
            script: """
                echo "$CHIME_ATTEMPT" >> "$1/attempts"
                if [ "$CHIME_ATTEMPT" = 1 ]; then echo "busy, later please" >&2; exit 75; fi
                cat > "$1/body"
                """)
        try await s.client.publish(Array("retry me".utf8), to: "t")
        let done = await eventually {
            guard s.file("body") != nil else { return false }
            return try await s.client.groupIsDone("g", topic: "t")
        }
        #expect(done, "log:\n\(s.work.log.suffix(2_000))")
        #expect(s.file("attempts") == "1\n2\n", "75 asked for a second attempt, which succeeded")
        #expect(s.file("body") == "retry me")
        #expect(try await s.client.deadLetters(of: "g").isEmpty)
        await s.finish()
    }

    @Test func aCommandThatHangsIsKilledAtTheTimeoutWithEverythingItStarted() async throws {
        let s = try await Setup(
            "hang",
            script: """
                sleep 300 &
                echo "$!" >> "$1/sleepers"
                echo "$$" >> "$1/shells"
                wait
                """)
        try await s.client.publish(Array("hang".utf8), to: "t")
        let lettered = await eventually {
            guard try await !s.client.deadLetters(of: "g").isEmpty else { return false }
            return try await s.client.groupIsDone("g", topic: "t")
        }
        #expect(lettered, "log:\n\(s.work.log.suffix(2_000))")
        let error = try await s.client.deadLetters(of: "g").first?.header("chime-dlq-error") ?? ""
        #expect(error.contains("timed out"), "\(error)")
        let sleepers = (s.file("sleepers") ?? "").split(separator: "\n").compactMap { pid_t($0) }
        let shells = (s.file("shells") ?? "").split(separator: "\n").compactMap { pid_t($0) }
        #expect(sleepers.count == 2 && shells.count == 2, "two attempts, each timed out")
        let allGone = await eventually { (sleepers + shells).allSatisfy(processIsGone) }
        #expect(allGone, "the shell and its background sleep were killed, as a process group")
        // Whatever happened, nothing of this test outlives it.
        for pid in sleepers + shells where !processIsGone(pid) { kill(pid, SIGKILL) }
        await s.finish()
    }

    @Test func aCommandThatPrintsTenThousandLinesBeforeReadingABigBodyDoesNotDeadlock() async throws {
        let s = try await Setup(
            "loud",
            script: """
                seq 1 10000
                seq 1 10000 >&2
                cat > "$1/body.tmp"
                mv "$1/body.tmp" "$1/body"
                """,
            // 20,000 lines logged take seconds on two cores shared with the whole suite; a
            // deadlock still outlasts the wait below.
            extraOptions: ["--timeout", "120s"])
        // More than a pipe holds each way: the command's output must be read while its
        // input is written.
        let body = [UInt8](repeating: UInt8(ascii: "x"), count: 256 << 10)
        try await s.client.publish(body, to: "t")
        let done = await eventually {
            guard s.file("body") != nil else { return false }
            return try await s.client.groupIsDone("g", topic: "t")
        }
        #expect(done, "log:\n\(s.work.log.suffix(2_000))")
        #expect(fileSize(s.out + "/body") == Int64(body.count), "the whole body arrived")
        #expect(try await s.client.deadLetters(of: "g").isEmpty)
        await s.finish()
    }

    @Test func sigtermLetsTheRunningCommandFinishThenLeavesTheGroupAndExitsZero() async throws {
        // A long session timeout: the member is gone at exit only if it left.
        let s = try await Setup(
            "sigterm",
            script: """
                touch "$1/started"
                sleep 1
                cat > /dev/null
                touch "$1/finished"
                """,
            groupSettings: WireGroupSettings(mode: .shared, sessionTimeoutMilliseconds: 120_000),
            // Far more than the command needs (a second).
            extraOptions: ["--grace", "10s"])
        try await s.client.publish(Array("slow".utf8), to: "t")
        let started = await eventually { s.file("started") != nil }
        #expect(started, "log:\n\(s.work.log.suffix(2_000))")
        let status = s.work.terminate()
        #expect(status == 0, "log:\n\(s.work.log.suffix(2_000))")
        #expect(s.file("finished") != nil, "the command ran to its end before chime work exited")
        let stats = try await s.client.groupStats("g")
        #expect(stats?.memberCount == 0, "the member left")
        #expect(stats?.lag == 0 && stats?.inFlight == 0, "the finished message was acked before leaving")
        await s.finish()
    }
}
