import Foundation
import Glibc
import Testing

@testable import ChimeStore

/// Switches for the injected system calls; everything else goes to the real ones.
final class Faults: @unchecked Sendable {
    private let lock = NSLock()
    private var _writeError: Int32? = nil
    private var _partialWriteThenError = false
    private var _syncError: Int32? = nil
    private(set) var syncCount = 0
    /// When set, each fdatasync waits for the gate before running.
    let gate = DispatchSemaphore(value: 0)
    let entered = DispatchSemaphore(value: 0)
    private var _gated = false
    /// When set, this many more pwritev calls succeed, then every one fails with ENOSPC.
    private var _writesBeforeENOSPC: Int? = nil
    var writesBeforeENOSPC: Int? { get { lock.withLock { _writesBeforeENOSPC } } set { lock.withLock { _writesBeforeENOSPC = newValue } } }

    /// Counts down; true when this write must fail.
    fileprivate func consumeWrite() -> Bool {
        lock.withLock {
            guard let n = _writesBeforeENOSPC else { return false }
            if n == 0 { return true }
            _writesBeforeENOSPC = n - 1
            return false
        }
    }

    var writeError: Int32? { get { lock.withLock { _writeError } } set { lock.withLock { _writeError = newValue } } }
    var partialWriteThenError: Bool { get { lock.withLock { _partialWriteThenError } } set { lock.withLock { _partialWriteThenError = newValue } } }
    var syncError: Int32? { get { lock.withLock { _syncError } } set { lock.withLock { _syncError = newValue } } }
    var gated: Bool { get { lock.withLock { _gated } } set { lock.withLock { _gated = newValue } } }
    var syncs: Int { lock.withLock { syncCount } }

    var calls: FileSystemCalls {
        FileSystemCalls(
            pwritev: { fd, iov, count, offset in
                if self.consumeWrite() { return -Int(ENOSPC) }
                if let e = self.writeError {
                    if self.partialWriteThenError {
                        // Half of the first buffer really lands, then the device is full.
                        self.partialWriteThenError = false
                        var half = iov.pointee
                        half.iov_len = max(1, half.iov_len / 2)
                        return withUnsafePointer(to: &half) { FileSystemCalls.system.pwritev(fd, $0, 1, offset) }
                    }
                    return -Int(e)
                }
                return FileSystemCalls.system.pwritev(fd, iov, count, offset)
            },
            fdatasync: { fd in
                if self.gated {
                    self.entered.signal()
                    self.gate.wait()
                }
                self.lock.withLock { self.syncCount += 1 }
                if let e = self.syncError { return -e }
                return FileSystemCalls.system.fdatasync(fd)
            },
            ftruncate: FileSystemCalls.system.ftruncate
        )
    }
}

@Suite struct FaultInjectionTests {
    @Test func fullDiskRefusesTheAppendLeavesNoHalfBatchAndRecovers() throws {
        let dir = TemporaryDirectory()
        let faults = Faults()
        let log = try RecordLog.open(directory: dir.path, configuration: LogConfiguration(durability: .never), calls: faults.calls, logger: testLogger)
        try log.append(try smallBatch("before"))
        let sizeBefore = fileSize(dir.file("00000000000000000000.log"))

        faults.writeError = ENOSPC
        faults.partialWriteThenError = true
        let error = #expect(throws: StoreError.self) { try log.append(try smallBatch("this one does not fit")) }
        #expect(error?.code == .noSpace)
        #expect(error?.errno == ENOSPC)
        #expect(fileSize(dir.file("00000000000000000000.log")) == sizeBefore, "the partial write was cut back")
        #expect(log.endOffset == 1)
        #expect(try readAll(log).map { String(decoding: $0.record.body, as: UTF8.self) } == ["before"])

        // Space comes back: appends go on at the right offset, no sticky failure.
        faults.writeError = nil
        #expect(try log.append(try smallBatch("after")).baseOffset == 1)
        try log.close()
        let reopened = try RecordLog.open(directory: dir.path, configuration: LogConfiguration(durability: .never), logger: testLogger)
        #expect(reopened.recovery.damaged.isEmpty && reopened.recovery.truncatedBytes == 0)
        #expect(try readAll(reopened).map { String(decoding: $0.record.body, as: UTF8.self) } == ["before", "after"])
        try reopened.close()
    }

    @Test func ioErrorOnWriteFailsTheLogUntilReopened() throws {
        let dir = TemporaryDirectory()
        let faults = Faults()
        let log = try RecordLog.open(directory: dir.path, configuration: LogConfiguration(durability: .never), calls: faults.calls, logger: testLogger)
        try log.append(try smallBatch("kept"))
        faults.writeError = EIO
        #expect((#expect(throws: StoreError.self) { try log.append(try smallBatch("lost")) })?.code == .io)
        faults.writeError = nil
        // EIO leaves the page cache in doubt: no more appends on this instance.
        #expect((#expect(throws: StoreError.self) { try log.append(try smallBatch("refused")) })?.code == .logFailed)
        #expect(try readAll(log).count == 1, "reads still work")
        try log.close()
        let reopened = try RecordLog.open(directory: dir.path, configuration: LogConfiguration(durability: .never), logger: testLogger)
        #expect(try readAll(reopened).map { String(decoding: $0.record.body, as: UTF8.self) } == ["kept"])
        #expect(try reopened.append(try smallBatch("again")).baseOffset == 1)
        try reopened.close()
    }

    /// A failed fdatasync is never retried as if a later one could make the data safe:
    /// every waiter gets the error and the log refuses appends until reopened.
    @Test func failedSyncFailsEveryWaiterAndEveryLaterAppend() async throws {
        let dir = TemporaryDirectory()
        let faults = Faults()
        let log = try RecordLog.open(directory: dir.path, configuration: LogConfiguration(durability: .always), calls: faults.calls, logger: testLogger)
        try await log.appendDurably(try smallBatch("durable"))
        faults.syncError = EIO
        await #expect(throws: StoreError.self) { try await log.appendDurably(try smallBatch("unsynced")) }
        faults.syncError = nil
        let later = await #expect(throws: StoreError.self) { try await log.appendDurably(try smallBatch("later")) }
        #expect(later?.code == .logFailed)
        #expect(log.durableOffset == 1)
        try log.close()
    }

    /// While one fdatasync is in progress, ten more appends arrive; they must all be
    /// covered by one further sync, not ten.
    @Test func concurrentAppendersShareOneSync() async throws {
        let dir = TemporaryDirectory()
        let faults = Faults()
        let log = try RecordLog.open(directory: dir.path, configuration: LogConfiguration(durability: .always), calls: faults.calls, logger: testLogger)
        faults.gated = true
        async let first = log.appendDurably(try smallBatch("first"))
        await Task.detached { faults.entered.wait() }.value  // sync #1 is running, covering "first" only
        let rest = Task {
            try await withThrowingTaskGroup(of: AppendResult.self) { group in
                for i in 0..<10 { group.addTask { try await log.appendDurably(try smallBatch("next-\(i)")) } }
                return try await group.reduce(into: [AppendResult]()) { $0.append($1) }
            }
        }
        while log.endOffset < 11 { try await Task.sleep(for: .milliseconds(1)) }
        faults.gated = false
        faults.gate.signal()
        _ = try await first
        let results = try await rest.value
        #expect(results.count == 10)
        #expect(faults.syncs == 3, "one at open, one for the first append, one shared by the other ten")
        #expect(log.durableOffset == 11)
        try log.close()
    }

    /// Under `interval`, appends return at once and the sync thread makes them durable on
    /// its own clock, with nobody waiting.
    @Test func intervalPolicySyncsInTheBackground() async throws {
        let dir = TemporaryDirectory()
        let faults = Faults()
        let log = try RecordLog.open(directory: dir.path, configuration: LogConfiguration(durability: .interval(milliseconds: 5)), calls: faults.calls, logger: testLogger)
        try log.append(try smallBatch("one"))
        try log.append(try smallBatch("two"))
        // Bounded wait for the background sync; the assertion is that it happens at all.
        for _ in 0..<2000 where log.durableOffset < 2 { try await Task.sleep(for: .milliseconds(5)) }
        #expect(log.durableOffset == 2)
        #expect(faults.syncs >= 1)
        try log.close()
    }

    /// A process killed before a roll's background seal finished left the sealed segment
    /// without its index and maybe unsynced: reopening syncs it, not only the active one.
    @Test func reopeningSyncsASealedSegmentWhoseSealHadNotFinished() throws {
        let dir = TemporaryDirectory()
        let one = try smallBatch("0123456789")
        let config = LogConfiguration(segmentBytes: one.count, durability: .never)
        let first = try RecordLog.open(directory: dir.path, configuration: config, logger: testLogger)
        try first.append(one)
        try first.append(one)  // rolls
        try first.append(one)  // rolls again
        try first.close()
        // As if killed before the seal of the middle segment: its index never written.
        try FileManager.default.removeItem(atPath: dir.file("00000000000000000001.index"))
        let faults = Faults()
        let log = try RecordLog.open(directory: dir.path, configuration: config, calls: faults.calls, logger: testLogger)
        #expect(log.recovery.segments.map(\.scanned) == [false, true, false])
        #expect(faults.syncs == 3, "the sealed segment without an index, its index rebuilt, and the active one")
        #expect(log.endOffset == 3)
        try log.close()
    }

    /// Under `never`, nothing syncs until asked; `waitUntilDurable` forces a sync.
    @Test func neverPolicySyncsOnlyWhenAsked() async throws {
        let dir = TemporaryDirectory()
        let faults = Faults()
        let log = try RecordLog.open(directory: dir.path, configuration: LogConfiguration(durability: .never), calls: faults.calls, logger: testLogger)
        #expect(faults.syncs == 1, "open syncs what an earlier process may have left unsynced")
        let r = try log.append(try smallBatch("one"))
        #expect(faults.syncs == 1)
        try await log.waitUntilDurable(r.nextOffset)
        #expect(faults.syncs == 2)
        try log.close()
        #expect(faults.syncs == 4, "a clean close syncs the segment and the index it writes")
    }
}
