import Foundation
import Testing

@testable import ChimeStore

/// Syncs of every log run on a fixed pool of threads: threads do not grow with logs, and
/// appenders on many logs at once are all made durable, each by a sync that ran after it.
@Suite struct SyncThreadsTests {
    static func threadCount() throws -> Int {
        let status = try String(contentsOfFile: "/proc/self/status", encoding: .utf8)
        let line = try #require(status.split(separator: "\n").first { $0.hasPrefix("Threads:") })
        return try #require(Int(line.dropFirst("Threads:".count).trimmingCharacters(in: .whitespaces)))
    }

    @Test func threadsDoNotGrowWithDurableLogs() async throws {
        let dir = TemporaryDirectory()
        // The shared pool starts on first use: use it once before counting.
        let first = try RecordLog.open(directory: dir.path + "/first", configuration: LogConfiguration(durability: .always), logger: testLogger)
        try await first.appendDurably(try buildBatch([Record(timestamp: 1, key: nil, body: [1])], compression: .none))
        let before = try Self.threadCount()
        var logs: [RecordLog] = []
        for n in 0..<100 {
            let durability: DurabilityPolicy = n % 2 == 0 ? .always : .interval(milliseconds: 5)
            logs.append(try RecordLog.open(directory: dir.path + "/\(n)", configuration: LogConfiguration(durability: durability), logger: testLogger))
        }
        let after = try Self.threadCount()
        #expect(after - before < 10, "100 logs opened \(after - before) threads")
        // Every log's appenders, all at once, are made durable.
        try await withThrowingTaskGroup(of: Void.self) { group in
            for (n, log) in logs.enumerated() {
                for k in 0..<5 {
                    group.addTask {
                        let r = try await log.appendDurably(try buildBatch([Record(timestamp: Int64(k), key: nil, body: [UInt8(n % 256)])], compression: .none))
                        // `.always` answers once synced; `.interval` before, and syncs on its clock.
                        if n % 2 == 0 { #expect(log.durableOffset >= r.nextOffset) }
                    }
                }
            }
            try await group.waitForAll()
        }
        // The interval logs' clock syncs them with nobody waiting.
        let deadline = Date().addingTimeInterval(30)
        while logs.contains(where: { $0.durableOffset < 5 }) && Date() < deadline { try await Task.sleep(for: .milliseconds(10)) }
        for log in logs {
            #expect(log.endOffset == 5)
            #expect(log.durableOffset == 5)
            try log.close()
        }
        try first.close()
    }

    @Test func oneSyncThreadServesManyLogsWithoutDeadlock() async throws {
        let dir = TemporaryDirectory()
        let threads = SyncThreads(name: "test-sync", count: 1)
        var committers: [GroupCommitter] = []
        let synced = Counter()
        for _ in 0..<20 {
            committers.append(GroupCommitter(durable: 0, intervalMilliseconds: nil, threads: threads) {
                synced.increment()
                return 100
            })
        }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for c in committers {
                for target in [10, 50, 100] { group.addTask { try await c.waitUntilDurable(Int64(target)) } }
            }
            try await group.waitForAll()
        }
        #expect(synced.value >= 20 && synced.value <= 60, "each log synced at least once, at most once per waiter: \(synced.value)")
        for c in committers { c.stop() }
        await #expect(throws: StoreError.self) { try await committers[0].waitUntilDurable(200) }
        _ = dir
    }
}

/// A count several threads bump.
final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var n = 0
    func increment() { lock.withLock { n += 1 } }
    var value: Int { lock.withLock { n } }
}
