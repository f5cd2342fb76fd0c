import ChimeBroker
import DequeModule
import Foundation
import Logging
import Synchronization

/// The beanstalkd listener's engine: `BeanstalkQueue` (pure) behind an actor, with its
/// journal in the broker and its clock. Every batch of commands a connection sent is run
/// at once; what they changed is appended to the journal topic `__beanstalk` in one
/// publish (batches of every connection that arrive while one is being written go in the
/// next), and no answer leaves before the records it depends on are synced.
///
/// Delayed puts go cold (`BeanstalkColdJobs`): 4–8 bytes in memory, the job in the journal,
/// and one wake-up per due second — a scheduled message in `__beanstalk_due`, due 2 s
/// before that second starts — in the broker's timing wheel, made by the first cold put
/// due in that second. The wake-up is synced before the journal record of any put that
/// counts on it, so a journaled cold job always has one; ids are leased ahead in the
/// journal, never reused. When a wake-up fires the engine reads it from the topic, reads
/// back the puts of the cold jobs due by the end of its second (through the journal
/// index), and holds them whole: they become ready on the queue's clock, on their ms. A
/// command that needs a cold job before that reads its put back the same way. A snapshot
/// (`BeanstalkSnapshot`) of the cold jobs, taken when the engine is idle or every 30 s
/// and at a clean stop, spares a restart reading their puts.
actor BeanstalkEngine {
    /// The journal topic: one partition, kept forever (its records are the jobs).
    static let topic = "__beanstalk"
    /// The wake-ups of cold jobs: scheduled messages, read by the engine once due; kept a
    /// day after that (a restart reads again only those after the snapshot).
    static let wakeupTopic = "__beanstalk_due"

    struct Options: Sendable {
        /// Largest job body (`-z`; beanstalkd's default 65,535).
        var maxJobBytes: Int = 65_535
        public init(maxJobBytes: Int = 65_535) { self.maxJobBytes = maxJobBytes }
    }

    /// What a connection's batch came to: the answers so far, how many inputs they
    /// answer, and whether the connection now waits (a reserve) or quits.
    struct Progress: Sendable {
        var replies: [BeanstalkReply]
        var consumed: Int
        var then: Then
        enum Then: Sendable { case next, wait, quit }
        /// The replies may leave once the journal records after `syncAfter`, up to
        /// `syncUpTo`, are written (`written(after:upTo:)`); none if they are equal.
        var syncAfter: UInt64 = 0
        var syncUpTo: UInt64 = 0

        mutating func mustSync(after: UInt64, upTo: UInt64) {
            guard upTo > after else { return }
            syncAfter = syncUpTo > syncAfter ? Swift.min(syncAfter, after) : after
            syncUpTo = Swift.max(syncUpTo, upTo)
        }
    }

    /// One input of a connection: a command (with its job for a put), a line the framing
    /// refused, or a put whose job did not come whole (EXPECTED_CRLF, JOB_TOO_BIG) —
    /// each answered in its turn.
    enum Input: Sendable, Equatable {
        case command(BeanstalkCommand, body: [UInt8])
        case refused(BeanstalkReply)
        case refusedPut(BeanstalkReply)
    }

    let options: Options
    private let broker: Broker
    private let logger: Logger
    private var queue = BeanstalkQueue()
    private let started = ContinuousClock.now
    private let startedWall = Date()
    private var nextConnection: UInt64 = 1
    private var waiting: [UInt64: CheckedContinuation<BeanstalkReply, Never>] = [:]
    private var early: [UInt64: BeanstalkReply] = [:]
    private var timer: Task<Void, Never>?
    private var timerAt: Int64 = .max
    private var closed = false

    // The journal writer.
    private var pending: [BeanstalkEvent] = []
    private var appended: UInt64 = 0
    private var writing = false
    /// How far the journal is synced, for the replies waiting on it (`written(after:upTo:)`).
    private let syncPoint = BeanstalkSyncPoint()
    private var synced: UInt64 { syncPoint.synced }
    private(set) var recordsWritten: UInt64 = 0
    /// The offset the next journal record gets (known from the last publish).
    private var journalNext: Int64 = 0
    private var index = BeanstalkJournalIndex()
    /// Per job, the position (in records appended) of its last change not yet synced: a
    /// reply that shows the job waits for it, and a reply that shows only synced jobs waits
    /// for nothing.
    /// Puts, the bulk of the changes, are kept apart in `unsyncedPuts`: their ids and
    /// positions both only grow, so a list in put order is searched by id, and no table
    /// entry is made and removed per put.
    private var unsyncedChanges: [UInt64: UInt64] = [:]
    private var unsyncedOrder = Deque<(position: UInt64, id: UInt64)>()
    private var unsyncedPuts = Deque<(id: UInt64, position: UInt64)>()
    private var writeFailed = false

    // Wake-ups and snapshots.
    private var wakeupsFrom: Int64 = 0
    private var wakeupReader: Task<Void, Never>?
    private var snapshotTimer: Task<Void, Never>?
    private var snapshotting = false
    /// What the last snapshot held: records appended, wake-ups read.
    private var snapshotMark: (records: UInt64, wakeups: Int64) = (0, 0)
    /// A snapshot waiting for the writer: the position its state ends at, and once a batch
    /// ended there, the journal offset after it.
    private var cut: (position: UInt64, offset: Int64?)?
    /// Records handed to the writer's batches so far.
    private var takenUpTo: UInt64 = 0
    private var lastSnapshot = ContinuousClock.now - .seconds(3_600)
    private var lastActivity = ContinuousClock.now
    private(set) var snapshotsWritten = 0
    /// Journal records read at the start (for tests and the log).
    private(set) var recordsReplayed = 0

    private init(broker: Broker, options: Options, logger: Logger) {
        self.broker = broker
        self.options = options
        self.logger = logger
        queue.coldDelays = true
    }

    private var directory: String { broker.options.directory }

    /// The engine on `broker`: its journal topic made if new, and read back.
    static func open(broker: Broker, options: Options = Options(), logger: Logger = Logger(label: "chime.beanstalk")) async throws -> BeanstalkEngine {
        let engine = BeanstalkEngine(broker: broker, options: options, logger: logger)
        try await engine.recover()
        return engine
    }

    private func recover() async throws {
        let existing = Set(broker.listTopics().map(\.name))
        let largest = Swift.min(16 << 20, options.maxJobBytes + 512)
        for (name, retention) in [(Self.topic, nil), (Self.wakeupTopic, Int64(86_400_000))] where !existing.contains(name) {
            let settings = TopicSettings(partitions: 1, retentionMilliseconds: retention, maxMessageBytes: largest)
            do { _ = try broker.createTopic(name, settings: settings) } catch let e as BrokerError where e.code == .topicExists {}
        }
        var from: Int64 = 0
        var coldFrom: Int64 = 0
        do {
            if let snapshot = try BeanstalkSnapshot.read(directory: directory) {
                queue.restore(cold: snapshot.cold, nextID: snapshot.nextID, idLease: snapshot.idLease)
                index = snapshot.index
                (from, coldFrom, journalNext, wakeupsFrom) = (snapshot.journalFrom, snapshot.journalEnd, snapshot.journalEnd, snapshot.wakeupsFrom)
                snapshotMark = (0, wakeupsFrom)
                logger.info("beanstalkd snapshot: \(snapshot.cold.count) delayed jobs; the journal is read from offset \(from)")
            }
        } catch {
            logger.warning("beanstalkd snapshot not used (the whole journal is read instead): \(error)")
        }
        var records = 0
        while true {
            let page = try await broker.peek(topic: Self.topic, partition: 0, from: from, max: 10_000, maxBytes: 16 << 20)
            guard let last = page.last else { break }
            for d in page {
                let event: BeanstalkEvent
                do {
                    event = try BeanstalkEvent(decoding: d.body)
                } catch {
                    logger.error("beanstalkd journal: record at offset \(d.offset) skipped: \(error)")
                    continue
                }
                let (now, wallNow) = (steadyNow(), Self.wallNow())
                if let needed = queue.replay(event, now: now, wallNow: wallNow, mayGoCold: d.offset >= coldFrom) {
                    guard await warm([needed]) else { throw BrokerError(.storage, "beanstalkd journal: the put of job \(needed) could not be read") }
                    _ = queue.replay(event, now: steadyNow(), wallNow: Self.wallNow(), mayGoCold: false)
                }
                if case .put(let id, _, _, _, _, _, _, _) = event { index.note(id: id, offset: d.offset) }
            }
            records += page.count
            from = last.offset + 1
            journalNext = from
        }
        recordsReplayed = records
        let wakeups = try await readWakeups()
        // A cold job a minute overdue has lost its wake-up (kept a day, or lost with a
        // power cut under -f): it is read back now.
        let overdue = queue.cold.due(atOrBefore: BeanstalkColdJobs.dueSecond(wallMilliseconds: Self.wallNow() - 60_000))
        if !overdue.isEmpty {
            logger.warning("beanstalkd: \(overdue.count) delayed jobs are overdue without a wake-up; reading them back")
            guard await warm(overdue) else { throw BrokerError(.storage, "beanstalkd journal: the puts of overdue delayed jobs could not be read") }
        }
        // Every second that still has cold jobs gets its wake-up again: one may have been
        // lost (a failed write whose later batches counted on it, or a power cut under
        // -f), and a second one for the same second finds nothing left to bring back.
        journal(queue.askWakeupsAgain())
        queue.finishRecovery()
        if records > 0 || wakeups > 0 {
            logger.info("beanstalkd journal: \(records) records and \(wakeups) wake-ups read, \(queue.jobs.count) jobs held and \(queue.cold.count) delayed")
        }
        armTimer()
        if records > 100_000 {
            snapshotMark.records = .max  // a long read: the next start should not repeat it
            await snapshot(force: true)
        }
        wakeupReader = Task { [weak self] in await self?.followWakeups() }
        snapshotTimer = Task { [weak self] in
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(1))
                guard let self else { return }
                await self.snapshot(force: false)
            }
        }
    }

    // MARK: - Cold jobs

    /// Applies the wake-ups that fired since the last read; how many there were.
    @discardableResult
    private func readWakeups() async throws -> Int {
        var n = 0
        while true {
            let page = try await broker.peek(topic: Self.wakeupTopic, partition: 0, from: wakeupsFrom, max: 10_000, maxBytes: 16 << 20)
            guard let last = page.last else { return n }
            let (now, wallNow) = (steadyNow(), Self.wallNow())
            var seconds: [UInt32] = []
            for d in page {
                do {
                    switch try BeanstalkEvent(decoding: d.body) {
                    case .wake(let second): seconds.append(second)
                    case let put: queue.warm(put, now: now, wallNow: wallNow)  // a first build's wake-up: the put itself
                    }
                } catch {
                    logger.error("beanstalkd wake-up at offset \(d.offset) skipped: \(error)")
                }
            }
            // Read past only once their jobs are whole: a snapshot meanwhile keeps them cold
            // with these wake-ups still to read.
            let due = queue.fired(seconds: seconds)
            if !due.isEmpty, !(await warm(due)) {
                throw BrokerError(.storage, "beanstalkd journal: the puts of \(due.count) delayed jobs could not be read; retried")
            }
            n += page.count
            wakeupsFrom = last.offset + 1
            lastActivity = .now
            deliverAnswers()
            armTimer()
        }
    }

    /// Reads wake-ups as they fire, woken by the broker's change signal.
    private func followWakeups() async {
        while !closed && !Task.isCancelled {
            let seen = broker.changes.version
            do {
                if try await readWakeups() == 0 { await broker.changes.wait(after: seen, timeout: .seconds(1)) }
            } catch {
                logger.error("beanstalkd wake-ups not read: \(error)")
                try? await Task.sleep(for: .seconds(1))
            }
        }
    }

    /// Holds the cold jobs `ids` whole again, from their puts in the journal (once they
    /// are there: a put of this batch may still be on its way). A cold job whose put is
    /// not in the journal — its write failed, or a power cut under `-f` kept the snapshot
    /// and lost the record — is forgotten, with an error logged.
    /// Returns false when the journal could not be read: the jobs it did not reach stay
    /// cold, for a later try.
    @discardableResult
    private func warm(_ ids: [UInt64]) async -> Bool {
        _ = await sync(upTo: ids.map(lastUnsyncedChange).max() ?? 0)
        let (puts, readFailed) = await readPuts(ids)
        let (now, wallNow) = (steadyNow(), Self.wallNow())
        for p in puts { queue.warm(p, now: now, wallNow: wallNow) }
        if !readFailed {
            for id in ids where queue.cold.contains(id) {
                logger.error("beanstalkd: delayed job \(id) has no put in the journal; it is forgotten")
                queue.forgetCold(id)
            }
        }
        deliverAnswers()
        armTimer()
        return !readFailed
    }

    /// The put records of `ids`, found through the index; in id order. One read goes on
    /// from where the last stopped when the next id is near; a read ends where the index
    /// says the puts it looks for must have been (ids scattered far apart read a few dozen
    /// records each, not a thousand).
    private func readPuts(_ ids: [UInt64]) async -> (puts: [BeanstalkEvent], readFailed: Bool) {
        var found: [BeanstalkEvent] = []
        var page: [Delivery] = []
        var at = 0
        let sorted = ids.sorted()
        for (k, id) in sorted.enumerated() {
            guard let start = index.offset(atOrBefore: id) else {
                logger.error("beanstalkd journal: no put of job \(id) is indexed")
                continue
            }
            if page.isEmpty || at >= page.count || start > page[at].offset || start < page[0].offset {
                page = []
                at = 0
            }
            var from = page.isEmpty ? start : page[at].offset
            search: while true {
                if at >= page.count {
                    do {
                        page = try await broker.peek(topic: Self.topic, partition: 0, from: from, max: pageSize(from: from, for: sorted[k...]), maxBytes: 16 << 20)
                    } catch {
                        // Not the same as missing: the jobs not reached stay as they are.
                        logger.error("beanstalkd journal: the put of job \(id) not read: \(error)")
                        return (found, true)
                    }
                    at = 0
                    if page.isEmpty {
                        logger.error("beanstalkd journal: the put of job \(id) is missing")
                        break search
                    }
                }
                let d = page[at]
                if let putID = BeanstalkEvent.putID(in: d.body) {
                    if putID == id, let e = try? BeanstalkEvent(decoding: d.body) {
                        found.append(e)
                        at += 1
                        break search
                    }
                    if putID > id {
                        logger.error("beanstalkd journal: the put of job \(id) is missing")
                        break search
                    }
                }
                at += 1
                from = d.offset + 1
            }
        }
        return (found, false)
    }

    /// How many records to read from `from` to reach the puts of the first of `ids` and
    /// of those after it that lie within 1,024 records (each put lies before the index
    /// entry after its id; unbounded past the last entry).
    private func pageSize(from: Int64, for ids: ArraySlice<UInt64>) -> Int {
        let most: Int64 = 1_024
        var end = from + 1
        for (k, id) in zip(0..., ids) {
            guard let next = index.offset(after: id) else { return Int(most) }
            if k > 0 && next - from > most { break }
            end = Swift.max(end, next)
        }
        return Int(Swift.min(most, end - from))
    }

    // MARK: - Connections

    func connect() -> UInt64 {
        let id = nextConnection
        nextConnection += 1
        queue.connect(id)
        return id
    }

    func disconnect(_ id: UInt64) {
        waiting.removeValue(forKey: id)?.resume(returning: .timedOut)
        early[id] = nil
        queue.disconnect(id, now: steadyNow())
        deliverAnswers()
        armTimer()
    }

    /// Runs `inputs` in order until one waits or quits. It does not wait for the journal:
    /// the caller sends the replies once `written(after:upTo:)` says what they depend on
    /// is synced, and may run the connection's next inputs meanwhile.
    func execute(_ connection: UInt64, _ inputs: ArraySlice<BeanstalkEngine.Input>) async -> Progress {
        var (now, wallNow) = (steadyNow(), Self.wallNow())
        var progress = Progress(replies: [], consumed: 0, then: .next)
        guard queue.connections[connection] != nil else {
            progress.then = .quit  // closed meanwhile
            return progress
        }
        for input in inputs {
            progress.consumed += 1
            switch input {
            case .refused(let reply):
                progress.replies.append(reply)
            case .refusedPut(let reply):
                queue.refusedPut(usedAnID: reply == .expectedCRLF)
                progress.replies.append(reply)
            case .command(let command, let body):
                // A reply about a job waits for its last change, whatever the reply says
                // (NOT_FOUND after someone's delete not yet synced must not be seen first).
                if let id = command.jobID {
                    let last = lastUnsyncedChange(of: id)
                    progress.mustSync(after: last &- 1, upTo: last)
                }
                var outcome = queue.run(command, body: body, from: connection, now: now, wallNow: wallNow)
                if case .load(let ids) = outcome {
                    // What the batch changed so far is on its way before anything waits.
                    let before = appended
                    if journal(queue.takeEvents()) { progress.mustSync(after: before, upTo: appended) }
                    let read = await warm(ids)
                    guard queue.connections[connection] != nil else {
                        progress.then = .quit
                        break
                    }
                    guard read else {
                        progress.replies.append(.internalError)  // the journal could not be read; nothing changed
                        continue
                    }
                    (now, wallNow) = (steadyNow(), Self.wallNow())
                    outcome = queue.run(command, body: body, from: connection, now: now, wallNow: wallNow, warmed: true)
                    // Jobs read only to be shown go back out of memory (their wake-ups stand).
                    if command.onlyReads { queue.cool(ids, now: now, wallNow: wallNow) }
                }
                switch outcome {
                case .reply(let reply):
                    progress.replies.append(command == .stats ? .ok(yaml: serverStats()) : reply)
                case .wait:
                    progress.then = .wait
                case .quit:
                    progress.then = .quit
                case .load:
                    preconditionFailure("a command run with its cold jobs warmed asked for more")
                }
            }
            if progress.then != .next { break }
        }
        let before = appended
        if journal(queue.takeEvents()) { progress.mustSync(after: before, upTo: appended) }
        deliverAnswers()
        armTimer()
        // A batch that changed nothing waits only for the jobs it shows to be synced.
        for r in progress.replies {
            let last = lastChange(shownBy: r)
            progress.mustSync(after: last &- 1, upTo: last)
        }
        return progress
    }

    /// Waits until the journal records after `after` up to `upTo` are synced; false if
    /// one of them could not be written.
    nonisolated func written(after: UInt64, upTo: UInt64) async -> Bool {
        await syncPoint.written(after: after, upTo: upTo)
    }

    /// The answer to the connection's waiting reserve: a job, TIMED_OUT or DEADLINE_SOON.
    func answer(_ connection: UInt64) async -> BeanstalkReply {
        let reply: BeanstalkReply
        if queue.connections[connection] == nil {
            return .timedOut  // closed meanwhile
        } else if let r = early.removeValue(forKey: connection) {
            reply = r
        } else {
            reply = await withCheckedContinuation { waiting[connection] = $0 }
        }
        let last = lastChange(shownBy: reply)
        return await written(after: last &- 1, upTo: last) ? reply : .internalError
    }

    /// Drain mode (SIGUSR1): puts are refused with DRAINING, everything else goes on.
    func drain() {
        queue.draining = true
    }

    var isDraining: Bool { queue.draining }

    /// Stops: waiting reserves time out, and once the journal writer is done a snapshot
    /// is written so that the next start reads little.
    func close() async {
        stopTasks()
        _ = await sync(upTo: appended)
        while snapshotting { try? await Task.sleep(for: .milliseconds(10)) }
        await snapshot(force: true)
    }

    /// A snapshot now, whatever the writer is doing (for tests).
    func snapshotForTests() async { await snapshot(force: true) }

    /// Stops without the final snapshot, as a SIGKILL would (fault injection for tests).
    func abandonForTests() {
        stopTasks()
    }

    /// No more timers, wake-up reads or snapshots; waiting reserves time out.
    private func stopTasks() {
        closed = true
        timer?.cancel()
        wakeupReader?.cancel()
        snapshotTimer?.cancel()
        for (_, c) in waiting { c.resume(returning: .timedOut) }
        waiting.removeAll()
    }

    /// Counts for tests and the benchmark: jobs held whole and cold.
    func jobCount() -> Int { queue.jobs.count + queue.cold.count }
    func coldCount() -> Int { queue.cold.count }

    // MARK: - Time

    private nonisolated func steadyNow() -> Int64 {
        let d = ContinuousClock.now - started
        return d.components.seconds * 1_000 + d.components.attoseconds / 1_000_000_000_000_000
    }

    static func wallNow() -> Int64 { Int64((Date().timeIntervalSince1970 * 1_000).rounded(.down)) }

    /// Sets the timer for the queue's next deadline if it is sooner than the one set.
    private func armTimer() {
        guard !closed, let next = queue.nextDeadline() else { return }
        if timer != nil && next >= timerAt { return }
        timer?.cancel()
        timerAt = next
        let delay = Swift.max(0, next - steadyNow())
        timer = Task { [weak self] in
            if delay > 0 { try? await Task.sleep(for: .milliseconds(delay)) }
            guard !Task.isCancelled else { return }
            await self?.fire()
        }
    }

    private func fire() {
        timer = nil
        timerAt = .max
        queue.tick(now: steadyNow())
        journal(queue.takeEvents())
        deliverAnswers()
        armTimer()
    }

    private func deliverAnswers() {
        for a in queue.takeAnswers() {
            if let c = waiting.removeValue(forKey: a.connection) {
                c.resume(returning: a.reply)
            } else {
                early[a.connection] = a.reply
            }
        }
    }

    // MARK: - Journal

    /// Queues `events` for the writer; whether there were any.
    @discardableResult
    private func journal(_ events: [BeanstalkEvent]) -> Bool {
        guard !events.isEmpty else { return false }
        lastActivity = .now
        for (k, e) in events.enumerated() {
            let position = appended + UInt64(k) + 1
            switch e {
            case .ids, .wake: continue
            case .put(let id, _, _, _, _, _, _, _):
                assert(unsyncedPuts.last.map { $0.id < id } ?? true, "puts are journaled in id order")
                unsyncedPuts.append((id, position))
            default:
                guard let id = e.id else { continue }
                unsyncedChanges[id] = position
                unsyncedOrder.append((position, id))
            }
        }
        if pending.isEmpty { pending = events } else { pending += events }
        appended += UInt64(events.count)
        if !writing {
            writing = true
            Task { await self.write() }
        }
        return true
    }

    /// How far the journal must be synced before `reply` may leave: the last change of the
    /// job it shows (0 if that is synced, or it shows none).
    private func lastChange(shownBy reply: BeanstalkReply) -> UInt64 {
        switch reply {
        case .reserved(let id, _), .found(let id, _): lastUnsyncedChange(of: id)
        default: 0
        }
    }

    /// The position of job `id`'s last change not yet synced; 0 if there is none.
    private func lastUnsyncedChange(of id: UInt64) -> UInt64 {
        var put: UInt64 = 0
        if let first = unsyncedPuts.first, let last = unsyncedPuts.last, first.id <= id, id <= last.id {
            var (lo, hi) = (0, unsyncedPuts.count - 1)
            while lo < hi {
                let mid = (lo + hi) / 2
                if unsyncedPuts[mid].id < id { lo = mid + 1 } else { hi = mid }
            }
            if unsyncedPuts[lo].id == id { put = unsyncedPuts[lo].position }
        }
        return Swift.max(put, unsyncedChanges[id] ?? 0)
    }

    /// Writes what is pending, in batches of at most the broker's publish limit, until
    /// nothing is. Each batch is encoded and published off the actor (`publish(_:to:stored:)`);
    /// the next is taken once its records are appended, so the journal keeps the order the
    /// records were taken in, while up to `maxFlights` batches sync at once. The writer
    /// waits neither for a sync nor for the actor after one.
    private func write() async {
        while !pending.isEmpty {
            while flights.count >= Self.maxFlights { await withCheckedContinuation { flightWaiters.append($0) } }
            var n = Swift.min(pending.count, Broker.maxRecordsPerPublish)
            if let c = cut?.position, c > takenUpTo, c < takenUpTo + UInt64(n) { n = Int(c - takenUpTo) }  // a batch ends at a snapshot's position
            let batch: [BeanstalkEvent]
            if n == pending.count {
                batch = pending
                pending = []
            } else {
                batch = Array(pending.prefix(n))
                pending.removeFirst(n)
            }
            takenUpTo += UInt64(n)
            let upTo = takenUpTo
            let wakes = batch.reduce(0) { n, e in if case .wake = e { n + 1 } else { n } }
            flights.append(Flight(upTo: upTo, count: batch.count - wakes))
            // Encoded and published off the actor; the next batch is taken once this one's
            // records are appended (their order in the journal is the order taken).
            let broker = self.broker
            await withCheckedContinuation { (appended: CheckedContinuation<Void, Never>) in
                let resume = ResumeOnce(appended)
                Task.detached {
                    let outcome = await Self.publish(batch, to: broker, stored: { resume.run() })
                    resume.run()
                    await self.landed(upTo: upTo, outcome)
                }
            }
        }
        writing = false
    }

    /// What publishing a batch came to: the journal offset after it (nil: it wrote no
    /// record there) and its puts' offsets, or why it failed and its cold puts.
    private enum Outcome: Sendable {
        case written(end: Int64?, puts: [(id: UInt64, offset: Int64)])
        case failed(any Error, coldPuts: [BeanstalkEvent], wakeSeconds: Set<UInt32>)
    }

    /// Publishes one batch: id leases first, then the wake-ups its cold puts asked for
    /// (both synced before the records go: a cold put in this batch or a later one counts
    /// on them), then the records, `stored` called once they are appended; returns once
    /// they are synced.
    private static func publish(_ batch: [BeanstalkEvent], to broker: Broker, stored: @escaping @Sendable () -> Void) async -> Outcome {
        var leases: [OutgoingMessage] = [], wakeups: [OutgoingMessage] = [], records: [OutgoingMessage] = []
        var puts: [(at: Int, id: UInt64)] = [], coldPuts: [BeanstalkEvent] = [], wakeSeconds = Set<UInt32>()
        records.reserveCapacity(batch.count)
        puts.reserveCapacity(batch.count)
        for e in batch {
            let bytes = e.encoded
            switch e {
            case .ids:
                leases.append(OutgoingMessage(body: bytes))
            case .wake(let second):
                wakeups.append(OutgoingMessage(body: bytes, due: .at(BeanstalkQueue.wakeAt(dueSecond: second))))
                wakeSeconds.insert(second)
            case .put(let id, _, _, _, _, _, _, let wakeup):
                if wakeup { coldPuts.append(e) }
                puts.append((records.count, id))
                records.append(OutgoingMessage(body: bytes))
            default:
                records.append(OutgoingMessage(body: bytes))
            }
        }
        do {
            var end: Int64? = nil
            if !leases.isEmpty { end = try nextOffset(after: try await broker.publish(topic: topic, leases, partition: 0)) }
            if !wakeups.isEmpty { _ = try await broker.publish(topic: wakeupTopic, wakeups, partition: 0) }
            guard !records.isEmpty else {
                stored()
                return .written(end: end, puts: [])
            }
            let published = try await broker.publish(topic: topic, records, partition: 0, stored: stored)
            return .written(end: try nextOffset(after: published), puts: puts.compactMap { p in published[p.at].id.map { (p.id, $0.value) } })
        } catch {
            return .failed(error, coldPuts: coldPuts, wakeSeconds: wakeSeconds)
        }
    }

    /// A batch of the writer: its events end at position `upTo`, `count` of them journal
    /// records (wake-ups aside); once it landed, what publishing it came to.
    private struct Flight {
        let upTo: UInt64
        let count: Int
        var outcome: Outcome? = nil
    }

    /// Batches being written, oldest first.
    private var flights = Deque<Flight>()
    private var flightWaiters: [CheckedContinuation<Void, Never>] = []
    static let maxFlights = 4

    /// A batch was written and synced, or failed: what it failed to write is undone at
    /// once; then every batch landed in order up to the first still in flight counts as
    /// synced, and its waiters are answered.
    private func landed(upTo: UInt64, _ outcome: Outcome) {
        guard let k = flights.firstIndex(where: { $0.upTo == upTo }) else { preconditionFailure("batch to \(upTo) is not in flight") }
        flights[k].outcome = outcome
        if case .failed(let error, let coldPuts, let wakeSeconds) = outcome {
            writeFailed = true
            logger.error("beanstalkd journal: \(flights[k].count) records not written: \(error)")
            // Their wake-ups may not be scheduled: held whole, they still come due while
            // this process runs; so do the cold jobs of later batches that counted on them.
            let (now, wallNow) = (steadyNow(), Self.wallNow())
            for e in coldPuts { queue.warm(e, now: now, wallNow: wallNow) }
            let stranded = queue.wakeupsLost(wakeSeconds)
            if !stranded.isEmpty { Task { await self.warm(stranded) } }
            // The lease may not be written: the next cold put takes a new one past every
            // id a wake-up may carry.
            queue.leaseLost()
            deliverAnswers()
            armTimer()
        }
        while let first = flights.first, let outcome = first.outcome {
            flights.removeFirst()
            var ok = false
            if case .written(let end, let puts) = outcome {
                ok = true
                for p in puts { index.note(id: p.id, offset: p.offset) }
                if let end { journalNext = Swift.max(journalNext, end) }
                recordsWritten += UInt64(first.count)
                if cut?.position == first.upTo { cut?.offset = journalNext }
            }
            while let change = unsyncedOrder.first, change.position <= first.upTo {
                unsyncedOrder.removeFirst()
                if unsyncedChanges[change.id] == change.position { unsyncedChanges[change.id] = nil }
            }
            while let put = unsyncedPuts.first, put.position <= first.upTo { unsyncedPuts.removeFirst() }
            syncPoint.advance(to: first.upTo, failed: !ok)
        }
        let waiting = flightWaiters
        flightWaiters.removeAll()
        for w in waiting { w.resume() }
    }

    private static func nextOffset(after published: [PublishedMessage]) throws -> Int64 {
        guard let last = published.last?.id?.value else { throw BrokerError(.storage, "a journal publish without offsets") }
        return last + 1
    }

    // MARK: - Snapshots

    /// Writes a snapshot when something changed and the engine is idle (a second without
    /// writes) or the last is 30 s old; `force`: whenever something changed. Not while a
    /// write is under way or after one failed (the state would hold what the journal lacks).
    private func snapshot(force: Bool) async {
        guard !snapshotting, queue.events.isEmpty, !writeFailed else { return }
        guard appended != snapshotMark.records || wakeupsFrom != snapshotMark.wakeups else { return }
        if !force {
            let idle = ContinuousClock.now - lastActivity >= .seconds(1), age = ContinuousClock.now - lastSnapshot
            guard (idle && age >= .seconds(5)) || age >= .seconds(30) else { return }
        }
        // The state now, and the journal offset after its last record: known at once when
        // everything is written, else once the writer has published up to here (it ends a
        // batch at this position, so that the offset exists).
        snapshotting = true
        defer { snapshotting = false }
        let state = queue.snapshotState()
        let mark = (appended, wakeupsFrom)
        let journalEnd: Int64
        if synced == appended {
            journalEnd = journalNext
        } else {
            cut = (appended, nil)
            let ok = await sync(upTo: mark.0)
            defer { cut = nil }
            guard ok, let offset = cut?.offset else { return }
            journalEnd = offset
        }
        let lowestCold = state.cold.chunks.keys.min().map { $0 << UInt64(BeanstalkColdJobs.chunkBits) }
        if let lowest = [state.lowestHeld, lowestCold].compactMap({ $0 }).min() { index.drop(below: lowest) }
        let from = state.lowestHeld.map { index.offset(atOrBefore: $0) ?? 0 } ?? journalEnd
        let snap = BeanstalkSnapshot(
            journalFrom: from, journalEnd: journalEnd, wakeupsFrom: mark.1, nextID: state.nextID, idLease: state.idLease,
            cold: state.cold, index: index)
        let directory = directory
        let result = await Task.detached {
            let written = Result { try snap.write(directory: directory) }
            // The file's bytes and the chunks copied meanwhile were tens of MB: give the
            // freed pages back rather than leave them resident in the allocator.
            _ = releaseFreedMemory(0)
            return written
        }.value
        lastSnapshot = .now
        switch result {
        case .success:
            snapshotMark = mark
            snapshotsWritten += 1
        case .failure(let error):
            logger.warning("beanstalkd snapshot not written: \(error)")
        }
    }

    /// Waits until the journal holds every record up to `upTo`; false if a write failed.
    private func sync(upTo: UInt64) async -> Bool {
        let from = synced
        guard upTo > from else { return true }
        return await syncPoint.written(after: from, upTo: upTo)
    }

    // MARK: - Stats

    private func serverStats() -> String {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        func seconds(_ t: timeval) -> String { String(format: "%d.%06d", Int(t.tv_sec), Int(t.tv_usec)) }
        var pairs = queue.jobAndCommandStats()
        pairs.append(("max-job-size", "\(options.maxJobBytes)"))
        pairs += queue.connectionStats()
        var host = [CChar](repeating: 0, count: 256)
        gethostname(&host, host.count)
        var uts = utsname()
        uname(&uts)
        func text<T>(_ field: T) -> String {
            withUnsafeBytes(of: field) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        }
        pairs += [
            ("pid", "\(getpid())"), ("version", "\"1.12\""), ("rusage-utime", seconds(usage.ru_utime)),
            ("rusage-stime", seconds(usage.ru_stime)), ("uptime", "\(Int(Date().timeIntervalSince(startedWall)))"),
            ("binlog-oldest-index", "0"), ("binlog-current-index", "0"), ("binlog-records-migrated", "0"),
            ("binlog-records-written", "\(recordsWritten)"), ("binlog-max-size", "0"), ("draining", queue.draining ? "true" : "false"),
            ("id", Self.instanceID), ("hostname", String(decoding: host.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)),
            ("os", text(uts.version)), ("platform", text(uts.machine)),
        ]
        return BeanstalkReply.yamlDictionary(pairs)
    }

    private static let instanceID = String((0..<8).map { _ in UInt8.random(in: 0...255) }.map { String(format: "%02x", $0) }.joined())
}

/// glibc's `malloc_trim` (not in the Glibc module's headers): returns freed heap pages to
/// the system.
@_silgen_name("malloc_trim")
private func releaseFreedMemory(_ pad: Int) -> Int32

/// Resumes a continuation the first time `run` is called; later calls do nothing.
private final class ResumeOnce: Sendable {
    private let continuation: Mutex<CheckedContinuation<Void, Never>?>
    init(_ continuation: CheckedContinuation<Void, Never>) { self.continuation = Mutex(continuation) }
    func run() { continuation.withLock { c in c.take() }?.resume() }
}
