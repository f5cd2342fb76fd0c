import ChimeBroker
import Foundation
import Logging

/// The beanstalkd listener's engine: `BeanstalkQueue` (pure) behind an actor, with its
/// journal in the broker and its clock. Every batch of commands a connection sent is run
/// at once; what they changed is appended to the journal topic `__beanstalk` in one
/// publish (batches of every connection that arrive while one is being written go in the
/// next), and no answer leaves before the records it depends on are synced.
actor BeanstalkEngine {
    /// The journal topic: one partition, kept forever (its records are the jobs).
    static let topic = "__beanstalk"

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
    private var synced: UInt64 = 0
    private var writing = false
    private var syncWaiters: [(upTo: UInt64, continuation: CheckedContinuation<Bool, Never>)] = []
    private(set) var recordsWritten: UInt64 = 0

    private init(broker: Broker, options: Options, logger: Logger) {
        self.broker = broker
        self.options = options
        self.logger = logger
    }

    /// The engine on `broker`: its journal topic made if new, and read back.
    static func open(broker: Broker, options: Options = Options(), logger: Logger = Logger(label: "chime.beanstalk")) async throws -> BeanstalkEngine {
        let engine = BeanstalkEngine(broker: broker, options: options, logger: logger)
        try await engine.recover()
        return engine
    }

    private func recover() async throws {
        if !broker.listTopics().contains(where: { $0.name == Self.topic }) {
            let settings = TopicSettings(partitions: 1, retentionMilliseconds: nil, maxMessageBytes: Swift.min(16 << 20, options.maxJobBytes + 512))
            do { _ = try broker.createTopic(Self.topic, settings: settings) } catch let e as BrokerError where e.code == .topicExists {}
        }
        let now = steadyNow(), wallNow = Self.wallNow()
        var from: Int64? = nil
        var records = 0
        while true {
            let page = try await broker.peek(topic: Self.topic, partition: 0, from: from, max: 10_000, maxBytes: 16 << 20)
            guard let last = page.last else { break }
            for d in page {
                do {
                    queue.replay(try BeanstalkEvent(decoding: d.body), now: now, wallNow: wallNow)
                } catch {
                    logger.error("beanstalkd journal: record at offset \(d.offset) skipped: \(error)")
                }
            }
            records += page.count
            from = last.offset + 1
        }
        if records > 0 { logger.info("beanstalkd journal: \(records) records read, \(queue.jobs.count) jobs") }
        armTimer()
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

    /// Runs `inputs` in order until one waits or quits; answers once what they changed is synced.
    func execute(_ connection: UInt64, _ inputs: ArraySlice<BeanstalkEngine.Input>) async -> Progress {
        let now = steadyNow(), wallNow = Self.wallNow()
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
                switch queue.run(command, body: body, from: connection, now: now, wallNow: wallNow) {
                case .reply(let reply):
                    progress.replies.append(command == .stats ? .ok(yaml: serverStats()) : reply)
                case .wait:
                    progress.then = .wait
                case .quit:
                    progress.then = .quit
                }
            }
            if progress.then != .next { break }
        }
        journal(queue.takeEvents())
        deliverAnswers()
        armTimer()
        if !(await sync(upTo: appended)) {
            progress.replies = progress.replies.map { _ in .internalError }
        }
        return progress
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
        _ = await sync(upTo: appended)
        return reply
    }

    /// Drain mode (SIGUSR1): puts are refused with DRAINING, everything else goes on.
    func drain() {
        queue.draining = true
    }

    var isDraining: Bool { queue.draining }

    func close() {
        closed = true
        timer?.cancel()
        for (_, c) in waiting { c.resume(returning: .timedOut) }
        waiting.removeAll()
    }

    /// Counts for tests and the benchmark: jobs by state.
    func jobCount() -> Int { queue.jobs.count }

    // MARK: - Time

    private nonisolated func steadyNow() -> Int64 {
        let d = ContinuousClock.now - started
        return d.components.seconds * 1_000 + d.components.attoseconds / 1_000_000_000_000_000
    }

    private static func wallNow() -> Int64 { Int64((Date().timeIntervalSince1970 * 1_000).rounded(.down)) }

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

    private func journal(_ events: [BeanstalkEvent]) {
        guard !events.isEmpty else { return }
        pending += events
        appended += UInt64(events.count)
        if !writing {
            writing = true
            Task { await self.write() }
        }
    }

    /// Writes what is pending, in publishes of at most the broker's limit, until nothing is.
    private func write() async {
        while !pending.isEmpty {
            let batch = pending.prefix(Broker.maxRecordsPerPublish)
            pending.removeFirst(batch.count)
            let upTo = synced + UInt64(batch.count)
            var ok = true
            do {
                _ = try await broker.publish(topic: Self.topic, batch.map { OutgoingMessage(body: $0.encoded) }, partition: 0)
                recordsWritten += UInt64(batch.count)
            } catch {
                ok = false
                logger.error("beanstalkd journal: \(batch.count) records not written: \(error)")
            }
            synced = upTo
            let done = syncWaiters.filter { $0.upTo <= upTo }
            syncWaiters.removeAll { $0.upTo <= upTo }
            for w in done { w.continuation.resume(returning: ok) }
        }
        writing = false
    }

    /// Waits until the journal holds every record up to `upTo`; false if a write failed.
    private func sync(upTo: UInt64) async -> Bool {
        guard upTo > synced else { return true }
        return await withCheckedContinuation { syncWaiters.append((upTo, $0)) }
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
