import Foundation
import Testing

@testable import ChimeStore

/// Store files keep their descriptors in a bounded cache: many files, few descriptors, and
/// every read, write and sync still lands on the right file.
@Suite struct DescriptorCacheTests {
    @Test func filesPastTheLimitAreClosedAndOpenedAgainWhenUsed() throws {
        let dir = TemporaryDirectory()
        let cache = DescriptorCache(limit: 4)
        var files: [DataFile] = []
        for n in 0..<40 {
            let f = try DataFile.open(dir.path + "/f\(n)", create: true, calls: .system, cache: cache)
            try f.write(Array("file \(n)".utf8), at: 0)
            try f.sync()
            files.append(f)
            #expect(cache.openCount <= 4)
        }
        #expect(cache.evicted >= 36)
        for (n, f) in files.enumerated() {
            #expect(try f.read(count: 64, at: 0) == Array("file \(n)".utf8), "file \(n) reads its own bytes")
            try f.write(Array("!".utf8), at: Int64("file \(n)".utf8.count))
            try f.sync()
            #expect(try f.size() == Int64("file \(n)!".utf8.count))
        }
        #expect(cache.openCount <= 4 && cache.reopened >= 40)
        files.removeAll()
        #expect(cache.openCount == 0, "a file that goes closes its descriptor")
    }

    /// Files whose owners drop them while other threads open files and make the cache
    /// evict: the eviction must never hold the last reference to a file (its deinit takes
    /// the cache's lock: a first version deadlocked the suite this way).
    @Test func filesDroppedWhileOthersOpenNeverDeadlock() async throws {
        let dir = TemporaryDirectory()
        let cache = DescriptorCache(limit: 2)
        let path = dir.path
        let finished = await withCheckedContinuation { (done: CheckedContinuation<Bool, Never>) in
            let group = DispatchGroup()
            for t in 0..<4 {
                group.enter()
                Thread.detachNewThread {
                    for i in 0..<2_000 {
                        if let f = try? DataFile.open(path + "/t\(t)-\(i % 8)", create: true, calls: .system, cache: cache) {
                            try? f.write([UInt8(i & 0xff)], at: 0)
                        }
                    }
                    group.leave()
                }
            }
            DispatchQueue.global().async { done.resume(returning: group.wait(timeout: .now() + 120) == .success) }
        }
        #expect(finished, "every thread finished (no deadlock)")
        #expect(cache.openCount == 0)
    }

    @Test func aFileDeletedWhileHeldIsStillReadThroughItsKeptDescriptor() throws {
        let dir = TemporaryDirectory()
        let cache = DescriptorCache(limit: 2)
        let held = try DataFile.open(dir.path + "/held", create: true, calls: .system, cache: cache)
        try held.write(Array("still here".utf8), at: 0)
        try held.keepOpen()
        try Directory.remove(held.path)
        // Pressure on the cache: the kept descriptor is not the one closed.
        let others = try (0..<10).map { try DataFile.open(dir.path + "/o\($0)", create: true, calls: .system, cache: cache) }
        for o in others { try o.write([1], at: 0) }
        #expect(try held.read(count: 10, at: 0) == Array("still here".utf8))
    }

    /// Logs over a cache of 16 descriptors: 60 logs (each its segment and index, rolled a
    /// few times), durable appends to all of them at once, then every record read back and
    /// after a reopen.
    @Test func manyLogsShareFewDescriptorsAndLoseNothing() async throws {
        let dir = TemporaryDirectory()
        var configuration = LogConfiguration(segmentBytes: 2_048, durability: .always)
        configuration.descriptors = DescriptorCache(limit: 16)
        let logs = try (0..<60).map { try RecordLog.open(directory: dir.path + "/\($0)", configuration: configuration, logger: testLogger) }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for (n, log) in logs.enumerated() {
                group.addTask {
                    for i in 0..<20 {
                        let body = Array("log \(n) record \(i) ".utf8) + [UInt8](repeating: UInt8(i), count: 200)
                        try await log.appendDurably(try buildBatch([Record(timestamp: Int64(i), key: nil, body: body)], compression: .none))
                    }
                }
            }
            try await group.waitForAll()
        }
        #expect(configuration.descriptors.openCount <= 16 + 8, "the limit, plus at most a descriptor per call in progress")
        #expect(configuration.descriptors.evicted > 0)
        /// Every record of the log, segment after segment.
        func allRecords(_ log: RecordLog) throws -> [StoredRecord] {
            var out: [StoredRecord] = []
            while true {
                let more = try log.read(from: (out.last?.offset ?? -1) + 1, maxBytes: 1 << 20).flatMap { try $0.records() }
                if more.isEmpty { return out }
                out += more
            }
        }
        for (n, log) in logs.enumerated() {
            let records = try allRecords(log)
            #expect(records.count == 20, "log \(n) holds its 20 records")
            #expect(records.enumerated().allSatisfy { i, r in r.record.body.starts(with: Array("log \(n) record \(i) ".utf8)) })
            try log.close()
        }
        let again = try RecordLog.open(directory: dir.path + "/59", configuration: configuration, logger: testLogger)
        #expect(try allRecords(again).count == 20)
        try again.close()
    }
}
