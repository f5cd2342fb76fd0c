import ChimeStore
import ChimeWheel
import CoreMetrics
import Logging

/// One partition of the internal topic `__locks`: the locks whose names hash to it, as a
/// `LockTable` journaled in a record log (`locks/<index>/`), and the acquirers waiting for
/// them, first come first served. One writer (this actor); every change is appended before
/// it is acted on and answered once durable, so a grant's fencing token is never given
/// twice, across SIGKILLs too.
///
/// Waiters are connections waiting, so they live in memory only: a broker restart drops
/// them with their connections, and their clients ask again.
actor LockPartition {
    let index: Int
    private var table = LockTable()
    private var log: RecordLog
    private let directory: String
    private let configuration: LogConfiguration
    private let calls: FileSystemCalls
    private let clock: any WheelClock
    private let logger: Logger
    /// Records in the log: compacted to the table's snapshot when it holds many more.
    private var records = 0
    private var waiters: [String: [Waiter]] = [:]
    private var waiting = 0
    private var nextWaiter: UInt64 = 0
    /// Wakes the actor at the next waiter's deadline or the next expiry a waiter awaits.
    private var waker: Task<Void, Never>?
    private var wakeAt: Int64 = .max
    private var closed = false
    /// Appends staged and not yet known durable: the log is compacted only at none.
    private var inFlight = 0
    private let metrics: LockMetrics

    /// Waiters one partition keeps at most: one more is refused (`limitReached`).
    static let maximumWaiters = 100_000
    /// The longest one acquire waits on the broker (a client waiting longer asks again).
    static let maximumWaitMilliseconds: Int64 = 300_000
    /// The longest time-to-live a grant takes.
    static let maximumTTLMilliseconds: Int64 = 86_400_000
    static let maximumNameBytes = 1_024
    static let maximumHolderBytes = 256

    private struct Waiter {
        var id: UInt64
        var holder: String
        var ttl: Int64
        var deadline: Int64
        var continuation: CheckedContinuation<LockTable.Lock, any Error>
    }

    /// A lock as `inspect` shows it.
    struct Info: Sendable, Equatable {
        var name: String
        var holder: String?
        var token: Int64?
        var expiresAt: Int64?
        var waiters: Int
    }

    init(index: Int, directory: String, options: BrokerOptions, logger: Logger) throws {
        self.index = index
        self.directory = directory
        configuration = LogConfiguration(segmentBytes: options.groupSegmentBytes, durability: options.durability, validateRecordsOnAppend: false)
        calls = options.fileSystem
        clock = options.clock
        self.logger = logger
        metrics = LockMetrics(partition: index)
        try TableSwap.finish(directory)
        log = try RecordLog.open(directory: directory, configuration: configuration, calls: calls, logger: logger)
        var table = LockTable()
        var count = 0
        try log.scan(from: log.startOffset, damaged: { error in
            logger.error("damaged batch in a lock partition; the grants it held are lost (their tokens are not reused)", metadata: ["error": "\(error)"])
        }) { batches, from in
            for b in batches where b.nextOffset > from {
                for r in try b.records() where r.offset >= from {
                    guard let record = LockRecordCoding.decode(r.record) else {
                        logger.error("unreadable record in a lock partition, skipped", metadata: ["offset": "\(r.offset)"])
                        continue
                    }
                    table.apply(record)
                    count += 1
                }
            }
        }
        self.table = table
        records = count
        metrics.held(table.locks.count)
    }

    // MARK: - Operations

    /// Grants `name` to `holder` for `ttl` ms: at once if it is free, else after the
    /// waiters before it, within `wait` ms (0: not at all — `lockHeld` at once).
    func acquire(_ name: String, holder: String, ttl: Int64, wait: Int64) async throws -> LockTable.Lock {
        try Self.check(name: name, holder: holder, ttl: ttl, wait: wait)
        try checkOpen()
        let now = clock.now()
        if waiters[name, default: []].isEmpty {
            switch table.grant(name, holder: holder, ttl: ttl, now: now) {
            case .success(let record):
                return try await grant(record, now: now)
            case .failure(let refusal):
                guard wait > 0 else {
                    if case .held(let held) = refusal { throw Self.heldError(name, held) }
                    throw Self.heldError(name, nil)
                }
            }
        } else if wait == 0, let held = table.holder(of: name, now: now) {
            throw Self.heldError(name, held)
        }
        guard waiting < Self.maximumWaiters else {
            throw BrokerError(.limitReached, "lock partition \(index) has \(waiting) acquirers waiting already; try again later")
        }
        nextWaiter += 1
        let id = nextWaiter
        let deadline = now + wait
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                waiters[name, default: []].append(Waiter(id: id, holder: holder, ttl: ttl, deadline: deadline, continuation: continuation))
                waiting += 1
                metrics.waiting(waiting)
                wake(at: deadline)
                if let held = table.holder(of: name, now: now) { wake(at: held.expiresAt) } else { handOver(name) }
            }
        } onCancel: {
            Task { await self.cancelWait(name, id) }
        }
    }

    /// Extends the live grant `token` of `name` to `ttl` ms from now; `lockLost` when it is
    /// not the live grant any more (expired, released, or another holder's).
    func renew(_ name: String, token: Int64, ttl: Int64) async throws -> LockTable.Lock {
        try Self.check(name: name, holder: "", ttl: ttl, wait: 0)
        try checkOpen()
        let now = clock.now()
        switch table.renew(name, token: token, ttl: ttl, now: now) {
        case .success(let record):
            try await journal([record])
            return table.locks[name] ?? LockTable.Lock(holder: "", token: token, expiresAt: now + ttl)
        case .failure(.notHeld(let current)):
            throw Self.lostError(name, token: token, current: current)
        case .failure(.held(let current)):
            throw Self.lostError(name, token: token, current: current)
        }
    }

    /// Releases `name`: its live grant `token`, or whoever holds it with `force` (token
    /// nil). The next waiter is granted it at once.
    func release(_ name: String, token: Int64?) async throws {
        try Self.check(name: name)
        try checkOpen()
        let now = clock.now()
        switch table.release(name, token: token, now: now) {
        case .success(let record):
            try await journal([record])
            handOver(name)
        case .failure(.notHeld(let current)):
            throw Self.lostError(name, token: token ?? 0, current: current)
        case .failure(.held(let current)):
            throw Self.lostError(name, token: token ?? 0, current: current)
        }
    }

    func inspect(_ name: String) -> Info {
        let now = clock.now()
        let held = table.holder(of: name, now: now)
        return Info(name: name, holder: held?.holder, token: held?.token, expiresAt: held?.expiresAt, waiters: waiters[name]?.count ?? 0)
    }

    /// Every lock held or waited for.
    func list() -> [Info] {
        let now = clock.now()
        let names = Set(table.locks.filter { $0.value.expiresAt > now }.keys).union(waiters.keys)
        return names.sorted().map { inspect($0) }
    }

    /// Whether a write fenced by (`name`, `token`) may go ahead: `token` is the live grant.
    func isCurrent(_ name: String, token: Int64) -> Bool { table.isCurrent(name, token: token, now: clock.now()) }

    var lastToken: Int64 { table.lastToken }

    func close() throws {
        guard !closed else { return }
        closed = true
        waker?.cancel()
        for (_, queue) in waiters {
            for w in queue { w.continuation.resume(throwing: BrokerError(.closed, "the broker is closing")) }
        }
        waiters = [:]
        waiting = 0
        try log.close()
    }

    // MARK: - Inside

    private func checkOpen() throws {
        if closed { throw BrokerError(.closed, "the broker is closing") }
    }

    /// Journals a grant and returns it once durable.
    private func grant(_ record: LockTable.LockRecord, now: Int64) async throws -> LockTable.Lock {
        let (lock, end) = try stageGrant(record, now: now)
        try await settle(end)
        return lock
    }

    private func stageGrant(_ record: LockTable.LockRecord, now: Int64) throws -> (LockTable.Lock, Int64) {
        guard case .grant(let name, _, _, _) = record else { preconditionFailure("not a grant: \(record)") }
        if let old = table.locks[name], old.expiresAt <= now { metrics.expired(1) }
        let end = try stage([record])
        return (table.locks[name]!, end)
    }

    /// Journals `records` and returns once they are durable.
    private func journal(_ records: [LockTable.LockRecord]) async throws {
        try await settle(try stage(records))
    }

    /// Applies `records` to the table and appends them, before any suspension: no other
    /// request sees the table without them. Returns the log's end after them, durable
    /// once `waitForAcknowledgement` returns. A failed append leaves the table ahead of
    /// the disk; the log then refuses every append until a restart, which reads what
    /// reached the disk.
    private func stage(_ records: [LockTable.LockRecord]) throws -> Int64 {
        for r in records { table.apply(r) }
        let end: Int64
        do {
            var builder = RecordBatchBuilder(capacity: 256 * records.count)
            let now = clock.now()
            for r in records { builder.append(LockRecordCoding.encode(r, timestamp: now)) }
            end = try log.append(try builder.build()).nextOffset
        } catch {
            throw BrokerError.wrapping(error, "journaling a lock")
        }
        self.records += records.count
        metrics.held(table.locks.count)
        inFlight += 1
        return end
    }

    /// Waits until the log is durable up to `end` (from `stage`), then compacts the log if
    /// it is due and nothing else waits on it.
    private func settle(_ end: Int64) async throws {
        defer {
            inFlight -= 1
            if inFlight == 0, records > max(10_000, 8 * table.locks.count) { compact() }
        }
        try await log.waitForAcknowledgement(end)
    }

    /// Grants `name` to its first waiter if nobody holds it.
    private func handOver(_ name: String) {
        let now = clock.now()
        guard var queue = waiters[name], !queue.isEmpty, table.holder(of: name, now: now) == nil else { return }
        let next = queue.removeFirst()
        waiters[name] = queue.isEmpty ? nil : queue
        waiting -= 1
        metrics.waiting(waiting)
        guard case .success(let record) = table.grant(name, holder: next.holder, ttl: next.ttl, now: now) else {
            preconditionFailure("lock \(name) is free but cannot be granted")
        }
        do {
            let (lock, end) = try stageGrant(record, now: now)
            Task {
                do {
                    try await settle(end)
                    next.continuation.resume(returning: lock)
                } catch {
                    next.continuation.resume(throwing: error)
                }
            }
        } catch {
            next.continuation.resume(throwing: error)
        }
    }

    private func cancelWait(_ name: String, _ id: UInt64) {
        guard let k = waiters[name]?.firstIndex(where: { $0.id == id }) else { return }
        let w = waiters[name]!.remove(at: k)
        if waiters[name]!.isEmpty { waiters[name] = nil }
        waiting -= 1
        metrics.waiting(waiting)
        w.continuation.resume(throwing: CancellationError())
    }

    /// Runs `tick` at `time` unless a wake-up is due before.
    private func wake(at time: Int64) {
        guard time < wakeAt, !closed else { return }
        wakeAt = time
        waker?.cancel()
        let clock = self.clock
        waker = Task { [weak self] in
            await clock.sleep(until: time)
            guard !Task.isCancelled else { return }
            await self?.tick()
        }
    }

    /// Times out waiters past their deadline and hands expired locks to their waiters.
    private func tick() {
        wakeAt = .max
        waker = nil
        let now = clock.now()
        var next: Int64 = .max
        for name in Array(waiters.keys) {
            var queue = waiters[name]!
            let late = queue.filter { $0.deadline <= now }
            queue.removeAll { $0.deadline <= now }
            for w in late {
                w.continuation.resume(throwing: Self.heldError(name, table.holder(of: name, now: now), waited: true))
            }
            waiting -= late.count
            waiters[name] = queue.isEmpty ? nil : queue
            if !queue.isEmpty {
                if let held = table.holder(of: name, now: now) { next = min(next, held.expiresAt) } else { handOver(name) }
                if let first = waiters[name]?.map(\.deadline).min() { next = min(next, first) }
            }
        }
        metrics.waiting(waiting)
        if next < .max { wake(at: next) }
    }

    /// Rewrites the log as the table's snapshot (expired locks left out), swapped in by
    /// renames (`TableSwap`).
    private func compact() {
        let expired = table.expire(now: clock.now())
        if !expired.isEmpty { metrics.expired(expired.count) }
        let snapshot = table.snapshot
        do {
            let fresh = directory + ".new"
            if Directory.isDirectory(fresh) { try Directory.removeTree(fresh) }
            let copy = try RecordLog.open(directory: fresh, configuration: configuration, calls: calls, logger: logger)
            var builder = RecordBatchBuilder(capacity: 1 << 16)
            let now = clock.now()
            for r in snapshot { builder.append(LockRecordCoding.encode(r, timestamp: now)) }
            _ = try copy.append(try builder.build())
            try copy.flush()
            try copy.close()
            try TableSwap.replace(&log, directory: directory) {
                try RecordLog.open(directory: directory, configuration: configuration, calls: calls, logger: logger)
            }
            records = snapshot.count
        } catch {
            logger.error("compacting a lock partition failed; it grows until the next try", metadata: ["partition": "\(index)", "error": "\(error)"])
        }
    }

    // MARK: - Checks and errors

    static func check(name: String) throws {
        guard !name.isEmpty, name.utf8.count <= maximumNameBytes else {
            throw BrokerError(.invalidArgument, "a lock name is 1 to \(maximumNameBytes) bytes of UTF-8 (this one is \(name.utf8.count))")
        }
    }

    static func check(name: String, holder: String, ttl: Int64, wait: Int64) throws {
        try check(name: name)
        guard holder.utf8.count <= maximumHolderBytes else {
            throw BrokerError(.invalidArgument, "a lock holder's name is at most \(maximumHolderBytes) bytes (this one is \(holder.utf8.count))")
        }
        guard ttl >= 1, ttl <= maximumTTLMilliseconds else {
            throw BrokerError(.invalidArgument, "a lock's time-to-live is 1 ms to \(maximumTTLMilliseconds / 3_600_000) h (asked: \(ttl) ms)")
        }
        guard wait >= 0, wait <= maximumWaitMilliseconds else {
            throw BrokerError(.invalidArgument, "an acquire waits 0 to \(maximumWaitMilliseconds / 1_000) s on the broker (asked: \(wait) ms)")
        }
    }

    static func heldError(_ name: String, _ held: LockTable.Lock?, waited: Bool = false) -> BrokerError {
        let by = held.map { " by \($0.holder.isEmpty ? "an unnamed holder" : $0.holder) (token \($0.token)) until \($0.expiresAt)" } ?? ""
        return BrokerError(.lockHeld, "lock \(name) is held\(by)\(waited ? "; the wait ran out" : "")")
    }

    static func lostError(_ name: String, token: Int64, current: LockTable.Lock?) -> BrokerError {
        // Not the live token: a refusal is no way to learn it.
        let now = current.map { _ in "; it is held under a newer token" } ?? "; nobody holds it"
        return BrokerError(.lockLost, "lock \(name) is not held under token \(token) (expired, released, or granted anew)\(now)")
    }
}

/// `chime_locks_held{partition}`, `chime_lock_waiters{partition}` and
/// `chime_locks_expired_total{partition}`.
struct LockMetrics {
    private let heldGauge: Gauge
    private let waitersGauge: Gauge
    private let expiredCounter: Counter

    init(partition: Int) {
        let labels = [("partition", "\(partition)")]
        heldGauge = Gauge(label: "chime_locks_held", dimensions: labels)
        waitersGauge = Gauge(label: "chime_lock_waiters", dimensions: labels)
        expiredCounter = Counter(label: "chime_locks_expired_total", dimensions: labels)
    }

    func held(_ n: Int) { heldGauge.record(n) }
    func waiting(_ n: Int) { waitersGauge.record(n) }
    func expired(_ n: Int) { expiredCounter.increment(by: n) }
}

/// Lock records in the record log (docs/formats.md, "Locks"): the key is the lock's name,
/// the `op` header one byte, the body little-endian.
enum LockRecordCoding {
    static func encode(_ record: LockTable.LockRecord, timestamp: Int64) -> Record {
        var body: [UInt8] = []
        let name: String
        let op: UInt8
        switch record {
        case .grant(let n, let holder, let token, let expiresAt):
            (name, op) = (n, 1)
            LittleEndian.append(token, to: &body)
            LittleEndian.append(expiresAt, to: &body)
            body += Array(holder.utf8)
        case .renew(let n, let token, let expiresAt):
            (name, op) = (n, 2)
            LittleEndian.append(token, to: &body)
            LittleEndian.append(expiresAt, to: &body)
        case .release(let n, let token):
            (name, op) = (n, 3)
            LittleEndian.append(token, to: &body)
        case .floor(let token):
            (name, op) = ("", 4)
            LittleEndian.append(token, to: &body)
        }
        return Record(timestamp: timestamp, key: Array(name.utf8), headers: [RecordHeader(name: "op", value: [op])], body: body)
    }

    static func decode(_ r: Record) -> LockTable.LockRecord? {
        guard let op = r.headers.first(where: { $0.name == "op" })?.value.first, let name = String(validating: r.key ?? [], as: UTF8.self) else { return nil }
        let b = r.body
        func i64(_ at: Int) -> Int64? { b.count >= at + 8 ? b.withUnsafeBytes { LittleEndian.load(Int64.self, $0, at) } : nil }
        switch op {
        case 1:
            guard let token = i64(0), let expiresAt = i64(8), let holder = String(validating: b[16...], as: UTF8.self) else { return nil }
            return .grant(name: name, holder: holder, token: token, expiresAt: expiresAt)
        case 2:
            guard let token = i64(0), let expiresAt = i64(8) else { return nil }
            return .renew(name: name, token: token, expiresAt: expiresAt)
        case 3: return i64(0).map { .release(name: name, token: $0) }
        case 4: return i64(0).map { .floor(token: $0) }
        default: return nil
        }
    }
}
