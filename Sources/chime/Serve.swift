import ArgumentParser
import ChimeStore
import Dispatch
import Foundation
import Logging

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Open the data directory, recover every log in it, and run until stopped.",
        discussion: """
            This release serves the storage engine only: it takes the data directory's lock, \
            recovers every segment log under it (cutting torn tails, reporting damage), prints \
            what it found, and waits. Stop it with Ctrl-C or SIGTERM; it syncs and writes the \
            indexes so the next start needs no scan. The network protocol comes in a later \
            release.

            Example:
              chime serve --data ./data
            """
    )

    @Option(name: .long, help: "Data directory (created if missing).")
    var data: String = "./data"

    @Option(name: .long, help: "When an append is durable: always (group commit), interval=<ms>, never.")
    var durability: String = "always"

    @Option(name: .customLong("segment-mib"), help: "Segment size in MiB before a new segment file starts.")
    var segmentMiB: Int = 256

    @Option(name: .long, help: "Delete sealed segments whose newest record is older than this many hours (default: keep).")
    var retentionHours: Double?

    @Option(name: .customLong("retention-mib"), help: "Delete the oldest sealed segments while a log is larger than this many MiB (default: keep).")
    var retentionMiB: Int?

    @Flag(name: .long, help: "Log every recovery step.")
    var verbose = false

    func run() async throws {
        let logger = {
            var logger = Logger(label: "chime")
            logger.logLevel = verbose ? .debug : .info
            return logger
        }()
        guard let policy = DurabilityPolicy(durability) else {
            throw ValidationError("--durability must be always, never or interval=<ms>, not '\(durability)'")
        }
        guard segmentMiB > 0, segmentMiB < 4096 else { throw ValidationError("--segment-mib must be between 1 and 4095") }
        if let hours = retentionHours, !(hours.isFinite && hours > 0) {
            throw ValidationError("--retention-hours must be a positive number of hours")
        }
        if let mib = retentionMiB, mib <= 0 { throw ValidationError("--retention-mib must be a positive number of MiB") }
        let retention = RetentionPolicy(
            maxAgeMilliseconds: retentionHours.map { Int64($0 * 3_600_000) },
            maxBytes: retentionMiB.map { Int64($0) << 20 })
        let configuration = LogConfiguration(segmentBytes: segmentMiB << 20, durability: policy, retention: retention)

        let store = try DataDirectory.open(data, configuration: configuration, logger: logger)
        let segments = store.logs.reduce(0) { $0 + $1.segmentInfos.count }
        let bytes = store.logs.reduce(Int64(0)) { $0 + $1.totalBytes }
        let damage = store.logs.flatMap(\.recovery.damaged)
        say("chime: data directory \(data): \(store.logs.count) log(s), \(segments) segment(s), \(Format.bytes(bytes)), durability \(policy)")
        for range in damage { say("chime: DAMAGE \(range)") }
        say("chime: storage engine ready; the network protocol arrives in a later release. Ctrl-C to stop.")

        let sweeper = Task {
            // Retention runs once a minute; deleting whole segments is cheap.
            while !Task.isCancelled {
                let now = Int64(Date().timeIntervalSince1970 * 1000)
                for log in store.logs {
                    do {
                        let deleted = try log.enforceRetention(nowMilliseconds: now)
                        if !deleted.isEmpty { say("chime: retention deleted \(deleted.count) segment(s) of \(log.directory)") }
                    } catch {
                        logger.error("retention failed", metadata: ["log": "\(log.directory)", "error": "\(error)"])
                    }
                }
                try? await Task.sleep(for: .seconds(60))
            }
        }
        await waitForTerminationSignal()
        sweeper.cancel()
        say("chime: stopping")
        try store.close()
        say("chime: stopped cleanly")
    }

    private func waitForTerminationSignal() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let queue = DispatchQueue(label: "chime.signals")
            let box = SignalSources()
            for sig in [SIGINT, SIGTERM] {
                signal(sig, SIG_IGN)
                let source = DispatchSource.makeSignalSource(signal: sig, queue: queue)
                source.setEventHandler {
                    if box.fire() { continuation.resume() }
                }
                source.resume()
                box.sources.append(source)
            }
        }
    }
}

/// Status lines reach a pipe or a log file at once, not when a buffer fills.
private func say(_ line: String) {
    print(line)
    fflush(nil)
}

/// Keeps the signal sources alive and resumes the waiter once.
private final class SignalSources: @unchecked Sendable {
    var sources: [DispatchSourceSignal] = []
    private var fired = false
    private let lock = NSLock()
    func fire() -> Bool {
        lock.withLock {
            defer { fired = true }
            return !fired
        }
    }
}
