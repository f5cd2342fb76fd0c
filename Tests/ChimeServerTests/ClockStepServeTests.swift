import ChimeClient
import ChimeProtocol
import ChimeTestSupport
import Foundation
import Glibc
import Logging
import Testing

/// A real `chime serve` whose wall clock is stepped an hour each way under libfaketime
/// (Debian's `faketime`, which `make test` installs) while messages wait in its wheel: a
/// delay is neither cut short by a step forward nor stretched by a step back. The test
/// process's own clocks are not faked; elapsed time is measured on its steady clock.
@Suite(.serialized) struct ClockStepServeTests {
    /// libfaketime's library, where Debian installs it for this machine's architecture.
    static func libfaketime() -> String? {
        var found = glob_t()
        defer { globfree(&found) }
        guard glob("/usr/lib/*/faketime/libfaketime.so.1", 0, nil, &found) == 0, found.gl_pathc > 0 else { return nil }
        return found.gl_pathv[0].map { String(cString: $0) }
    }

    @Test func aWallClockSteppedEitherWayNeitherShortensNorStretchesADelay() async throws {
        let library = try #require(Self.libfaketime(), "libfaketime is missing: `make test` installs Debian's faketime")
        let dir = TemporaryDirectory("chime-faketime")
        let offsetFile = dir.file("faketime-offset")
        try "+0".write(toFile: offsetFile, atomically: true, encoding: .utf8)
        var environment = ProcessInfo.processInfo.environment
        environment["LD_PRELOAD"] = library
        environment["FAKETIME_TIMESTAMP_FILE"] = offsetFile
        environment["FAKETIME_DONT_FAKE_MONOTONIC"] = "1"
        environment["FAKETIME_NO_CACHE"] = "1"
        // Through a shell that execs it: preloaded into a process Foundation starts directly,
        // libfaketime leaves Swift without its arguments (the server would print its help).
        let server = try ServeProcess(
            data: dir.file("data"), port: 0, environment: environment, launcher: ["/bin/sh", "-c", "exec \"$0\" \"$@\""])
        defer { server.stop() }
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let client = ChimeClient(ClientOptions(port: server.port), logger: logger)
        defer { Task { await client.close() } }
        try await client.createTopic("jobs")
        let steady = ContinuousClock()
        // What each message's publish began at, on this process's steady clock.
        var sent: [String: ContinuousClock.Instant] = [:]
        func publish(_ name: String, delay: Duration) async throws {
            sent[name] = steady.now
            try await client.publish(Array(name.utf8), to: "jobs", delay: delay)
        }
        func stepWall(_ offset: String) throws {
            try offset.write(toFile: offsetFile, atomically: true, encoding: .utf8)
        }

        // Published with the wall clock an hour back, then it steps forward: not early.
        try stepWall("-3600")
        try await publish("forward", delay: .seconds(3))
        try await Task.sleep(for: .milliseconds(500))
        try stepWall("+0")
        // Published on a correct clock, then it steps back an hour while the message waits:
        // the loop sleeping on it is not put to sleep for an hour.
        try await publish("back", delay: .seconds(3))
        try await Task.sleep(for: .milliseconds(500))
        try stepWall("-3600")

        // Collected for at most a minute (the bug this guards against waited an hour).
        let collector = Task {
            var received: [String: ContinuousClock.Instant] = [:]
            for try await message in client.consume(group: "g", topics: ["jobs"]) {
                received[String(decoding: message.body, as: UTF8.self)] = steady.now
                try await message.ack()
                if received.count == 2 { break }
            }
            return received
        }
        let watchdog = Task {
            try await Task.sleep(for: .seconds(60))
            collector.cancel()
        }
        let received = (try? await collector.value) ?? [:]
        watchdog.cancel()
        #expect(Set(received.keys) == ["forward", "back"])
        for (name, at) in received {
            let waited = at - sent[name]!
            #expect(waited >= .seconds(3), "\(name) was delivered \(waited) after it was published, before its 3 s delay")
            #expect(waited < .seconds(30), "\(name) waited \(waited) for a 3 s delay")
        }
    }
}
