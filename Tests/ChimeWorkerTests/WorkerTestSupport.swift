import ChimeClient
import ChimeProtocol
import ChimeTestSupport
import ChimeWorker
import Foundation
import Glibc
import Logging
import ServiceLifecycle
import Synchronization

// Shared by the worker suites: a real `chime serve` per test, clients of it, waiting for a
// state with a generous deadline (never asserting how long anything took), and reading a
// group's counts and dead letters through the client.

/// A `chime serve` child process on a free port with its own data directory.
final class WorkerTestServer: @unchecked Sendable {
    let dir: TemporaryDirectory
    let serve: ServeProcess
    var port: Int { serve.port }

    init(_ label: String = "chime-worker") throws {
        dir = TemporaryDirectory(label)
        serve = try ServeProcess(data: dir.path + "/data", port: 0)
    }

    func client(_ name: String) -> ChimeClient {
        ChimeClient(ClientOptions(port: port, name: name), logger: testLogger)
    }

    func stop() { _ = serve.stop() }
}

func topicSettings(partitions: UInt32, maxAttempts: UInt16 = 5) -> WireTopicSettings {
    WireTopicSettings(
        partitions: partitions, retentionMilliseconds: nil, retentionBytes: nil, maxMessageBytes: 1 << 20, maxAttempts: maxAttempts,
        dedupWindowMilliseconds: 0)
}

/// Polls `condition` until it holds or `deadline` passes (a generous bound so that a loaded
/// machine does not fail the test; nothing asserts how long it took). Errors of `condition`
/// count as "not yet".
/// A wait longer than 10 s is printed with where it was, so that a slow machine shows in the log.
func eventually(
    within deadline: Duration = .seconds(60), fileID: String = #fileID, line: Int = #line, _ condition: () async throws -> Bool
) async -> Bool {
    let start = ContinuousClock.now
    let end = start + deadline
    defer {
        let waited = ContinuousClock.now - start
        if waited > .seconds(10) { print("eventually at \(fileID):\(line) waited \(waited)") }
    }
    while ContinuousClock.now < end {
        if (try? await condition()) == true { return true }
        try? await Task.sleep(for: .milliseconds(20))
    }
    return (try? await condition()) == true
}

extension ChimeClient {
    /// The group's counts (nil while the broker does not know it).
    func groupStats(_ group: String) async throws -> WireGroupStats? {
        try await stats(groups: [group], includeMembers: true).groups.first { $0.name == group }
    }

    /// True once the group knows `topic` and has nothing left of it: no backlog, nothing in
    /// flight, no retry waiting.
    func groupIsDone(_ group: String, topic: String) async throws -> Bool {
        guard let g = try await groupStats(group) else { return false }
        let parts = g.partitions.filter { $0.topic == topic }
        return !parts.isEmpty && parts.allSatisfy { $0.lag == 0 && $0.inFlight == 0 && $0.retriesPending == 0 }
    }

    /// Everything in the group's dead-letter topic (`<group>.dlq`), read without leasing it.
    func deadLetters(of group: String) async throws -> [WireDelivery] {
        guard let topic = try await topics().first(where: { $0.name == group + ".dlq" }) else { return [] }
        var out: [WireDelivery] = []
        for p in 0..<Int(topic.settings.partitions) { out += try await peek(topic: topic.name, partition: p, max: 10_000) }
        return out
    }
}

extension WireDelivery {
    func header(_ name: String) -> String? {
        headers.first { $0.name == name }.map { String(decoding: $0.value, as: UTF8.self) }
    }

    var text: String { String(decoding: body, as: UTF8.self) }
}

/// A worker run as swift-service-lifecycle runs it: in a `ServiceGroup`, stopped by a
/// graceful shutdown.
final class RunningWorker: Sendable {
    let group: ServiceGroup
    let task: Task<Void, any Error>

    init(_ worker: ChimeWorker) {
        let group = ServiceGroup(services: [worker], logger: testLogger)
        self.group = group
        task = Task { try await group.run() }
    }

    /// Triggers the graceful shutdown and waits for the worker to return.
    func stop() async throws {
        await group.triggerGracefulShutdown()
        try await task.value
    }
}

/// A `chime work` child process; what it prints goes to a file (it logs every line its
/// commands print, which must never fill a pipe nobody reads).
final class WorkProcess: @unchecked Sendable {
    let process = Process()
    let logPath: String

    init(port: Int, topic: String, group: String, options: [String] = [], command: [String], log: String) throws {
        logPath = log
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        let out = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        process.executableURL = URL(fileURLWithPath: builtProduct("chime"))
        process.arguments = ["work", "--port", "\(port)", "--topic", topic, "--group", group] + options + ["--"] + command
        process.standardOutput = out
        process.standardError = out
        process.standardInput = FileHandle.nullDevice
        try process.run()
        try out.close()
    }

    var pid: pid_t { process.processIdentifier }

    /// SIGTERM, then waits for the exit; returns the exit status.
    func terminate() -> Int32 {
        kill(pid, SIGTERM)
        process.waitUntilExit()
        return process.terminationStatus
    }

    func kill9() {
        kill(pid, SIGKILL)
        process.waitUntilExit()
    }

    /// Kills it if it still runs (a test that failed half-way).
    func ensureStopped() {
        if process.isRunning { kill9() }
    }

    var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }
}

/// Whether a process is gone: no such pid, or a zombie nobody has reaped yet (dead all the
/// same; in a container the reaper of orphans may be slow or absent).
func processIsGone(_ pid: pid_t) -> Bool {
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8) else { return true }
    // "pid (comm) S …": the state follows the last ')'.
    guard let close = stat.lastIndex(of: ")") else { return true }
    let state = stat[stat.index(after: close)...].trimmingCharacters(in: .whitespaces).first
    return state == "Z" || state == "X"
}

/// A value behind a lock that can be shared by reference (a `Mutex` cannot be a stored
/// property of a copyable value).
final class Locked<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>
    init(_ value: Value) { mutex = Mutex(value) }
    func withLock<R>(_ body: (inout Value) throws -> R) rethrows -> R { try mutex.withLock { try body(&$0) } }
}
