import DequeModule
import HeapModule

/// The jobs, tubes and connections of the beanstalkd listener, as beanstalkd 1.12 keeps
/// them: a pure state machine. It runs the commands of `BeanstalkCommand` at a time `now`
/// (ms of a steady clock) and says what each answers; `tick` moves it through time (delays
/// ending, TTRs running out, reserves timing out, pauses ending). What must survive a
/// restart it writes down as `BeanstalkEvent`s, which the shell (`BeanstalkEngine`)
/// journals before any answer leaves; `replay` rebuilds the jobs from them.
///
/// Reserve order is beanstalkd's: the lowest priority, then the lowest id, over the
/// watched tubes that are not paused; a waiting reserve is answered in arrival order.
struct BeanstalkQueue {
    enum JobState: String, Sendable { case ready, reserved, delayed, buried }

    struct Job {
        let id: UInt64
        var tube: String
        var priority: UInt32
        var ttr: UInt32
        var state: JobState
        /// When it was put (steady ms).
        var createdAt: Int64
        /// The delay of its last put or release, in seconds (stats-job's `delay`).
        var delay: UInt32
        /// Delayed: when it becomes ready; reserved: when its TTR runs out (steady ms).
        var due: Int64 = 0
        /// The connection holding it while reserved.
        var holder: UInt64 = 0
        var reserves: UInt32 = 0
        var timeouts: UInt32 = 0
        var releases: UInt32 = 0
        var buries: UInt32 = 0
        var kicks: UInt32 = 0
        /// Bumped on every change of state, so that stale heap entries are skipped.
        var epoch: UInt32 = 0
        var body: [UInt8]
    }

    /// A heap entry: valid while the job still has this epoch.
    struct Entry: Comparable {
        var first: Int64
        var id: UInt64
        var epoch: UInt32
        static func < (a: Entry, b: Entry) -> Bool { (a.first, a.id) < (b.first, b.id) }
    }

    struct Tube {
        let name: String
        var ready = Heap<Entry>()
        var delayed = Heap<Entry>()
        var buried = Deque<Entry>()
        var urgent = 0, readyCount = 0, reservedCount = 0, delayedCount = 0, buriedCount = 0
        var totalJobs: UInt64 = 0
        var deletes: UInt64 = 0
        var pauses: UInt64 = 0
        var using = 0, watching = 0, waiting = 0
        /// Paused until this steady time (0: not paused), for `pauseSeconds`.
        var pausedUntil: Int64 = 0
        var pauseSeconds: UInt32 = 0
        var jobs: Int { readyCount + reservedCount + delayedCount + buriedCount }

        /// A job that became ready: counted and queued.
        mutating func enqueueReady(_ j: Job) {
            assert(j.state == .ready)
            readyCount += 1
            if j.priority < BeanstalkQueue.urgentBelow { urgent += 1 }
            ready.insert(Entry(first: Int64(j.priority), id: j.id, epoch: j.epoch))
        }
    }

    struct Connection {
        var using = BeanstalkQueue.defaultTube
        var watching = [BeanstalkQueue.defaultTube]
        var reserved: Set<UInt64> = []
        var isProducer = false
        var isWorker = false
        /// A reserve waiting for a job: until this steady time (nil: forever).
        var waitingUntil: Int64?? = nil

        /// Marks the connection a producer; the tube it puts into.
        mutating func producing() -> String {
            isProducer = true
            return using
        }
    }

    /// A waiting reserve that was answered by something other than its own command.
    struct Answer: Equatable {
        var connection: UInt64
        var reply: BeanstalkReply
    }

    static let defaultTube = "default"
    /// The last second of a TTR, when a waiting reserve is told DEADLINE_SOON (protocol.txt).
    static let safetyMargin: Int64 = 1_000
    /// Priorities below this are urgent (`current-jobs-urgent`).
    static let urgentBelow: UInt32 = 1_024

    private(set) var jobs = IDTable<Job>()
    private(set) var tubes: [String: Tube] = [:]
    /// Tube names in the order they were made (list-tubes).
    private var tubeOrder: [String] = []
    private(set) var connections: [UInt64: Connection] = [:]
    private var nextID: UInt64 = 1
    /// Delayed puts kept out of memory (`coldDelays`; such a put's record says `wakeup`).
    /// One wake-up per due second brings back all the cold jobs due by its end
    /// (`fired(seconds:)`, then `warm` with their puts read back); a command that needs a
    /// cold job itself asks for it first (`Outcome.load`).
    private(set) var cold = BeanstalkColdJobs()
    /// The due seconds whose wake-ups this queue asked for (a `.wake` event) and has not
    /// yet seen fire: a cold put due in one of them needs no wake-up of its own. A restart
    /// asks again for every second that has cold jobs (`askWakeupsAgain`): one may have
    /// been lost, and a second wake-up for a second finds nothing left to bring back.
    private(set) var wakeSeconds = Set<UInt32>()
    /// How long before its due second starts a wake-up fires: its jobs are read back and
    /// held whole 1–2 s ahead, and become ready on the queue's own clock at their ms.
    static let wakeLead: Int64 = 2_000
    /// Whether delayed puts go cold; only a shell that schedules their wake-ups sets it.
    var coldDelays = false
    /// Delays longer than this stay in memory (the broker's wheel reaches 100 years,
    /// beanstalkd's delays 136).
    static let longestColdDelay: Int64 = 36_500 * 86_400_000
    /// Ids below this are promised by an `ids` record in the journal; a restart goes on
    /// from it, so an id a lost put had may have been given to its wake-up is never reused.
    private(set) var idLease: UInt64 = 1
    static let idLeaseBlock: UInt64 = 10_000
    /// How many cold jobs one `kick` brings back at most (it answers how many it kicked).
    static let coldKickLimit = 10_000
    /// Connections whose reserve waits, in the order they began to.
    private var waiters: [UInt64] = []
    private var delays = Heap<Entry>()
    private var leases = Heap<Entry>()
    /// Journal records of the changes since the shell last took them.
    private(set) var events: [BeanstalkEvent] = []
    /// Answers to waiting reserves since the shell last took them.
    private(set) var answers: [Answer] = []
    var draining = false
    /// Commands run, by stats name (`cmd-put`, …), and the jobs that timed out.
    private var commandCounts = [UInt64](repeating: 0, count: BeanstalkQueue.commandNames.count)
    /// Commands run, by stats name (`put`, `peek`, …).
    var counts: [String: UInt64] {
        Dictionary(uniqueKeysWithValues: zip(Self.commandNames, commandCounts).filter { $0.1 > 0 })
    }
    private(set) var jobTimeouts: UInt64 = 0
    private(set) var totalJobs: UInt64 = 0
    private(set) var totalConnections: UInt64 = 0

    init() {
        ensureTube(Self.defaultTube)
    }

    // MARK: - Connections

    mutating func connect(_ id: UInt64) {
        precondition(connections[id] == nil, "connection \(id) twice")
        connections[id] = Connection()
        totalConnections += 1
        tubes[Self.defaultTube]!.using += 1
        tubes[Self.defaultTube]!.watching += 1
    }

    /// A connection closed: its reserved jobs are ready again, its tubes lose a user.
    mutating func disconnect(_ id: UInt64, now: Int64) {
        guard let c = connections.removeValue(forKey: id) else { return }
        if c.waitingUntil != nil {
            c.watching.forEach { tubes[$0]?.waiting -= 1 }
            waiters.removeAll { $0 == id }
        }
        for j in c.reserved.sorted() { makeReady(j, now: now) }
        tubes[c.using]?.using -= 1
        for t in c.watching { tubes[t]?.watching -= 1 }
        for name in c.watching + [c.using] { dropIfUnused(name) }
        matchWaiters(now: now)
    }

    // MARK: - Commands

    /// What a command does now. `body` is a put's job. `.wait` means the connection's
    /// reserve waits: its answer comes through `answers` (a job, TIMED_OUT, DEADLINE_SOON).
    enum Outcome: Equatable {
        case reply(BeanstalkReply)
        case wait
        case quit
        /// The command needs these cold jobs whole: the shell reads their puts back, gives
        /// them to `warm`, and runs the command again with `warmed` set. Nothing changed.
        case load([UInt64])
    }

    mutating func run(
        _ command: BeanstalkCommand, body: [UInt8] = [], from conn: UInt64, now: Int64, wallNow: Int64, warmed: Bool = false
    ) -> Outcome {
        precondition(connections.index(forKey: conn) != nil, "command from unknown connection \(conn)")
        if !warmed, let ids = coldNeeded(command, from: conn, now: now, wallNow: wallNow), !ids.isEmpty { return .load(ids) }
        count(command)
        switch command {
        case .put(let priority, let delay, let ttr, _):
            let tube = connections[conn]!.producing()
            if draining { return .reply(.draining) }
            let id = put(tube: tube, priority: priority, delay: delay, ttr: ttr, body: body, now: now, wallNow: wallNow)
            matchWaiters(now: now)
            return .reply(.inserted(id: id))
        case .use(let name):
            let old = connections[conn]!.using
            guard old != name else { return .reply(.using(tube: name)) }
            ensureTube(name)
            tubes[name]!.using += 1
            tubes[old]!.using -= 1
            connections[conn]!.using = name
            dropIfUnused(old)
            return .reply(.using(tube: name))
        case .reserve, .reserveWithTimeout:
            connections[conn]!.isWorker = true
            var timeout: Int64? = nil
            if case .reserveWithTimeout(let s) = command { timeout = Int64(s) * 1_000 }
            if let id = bestReady(for: conn, now: now) {
                reserve(id, to: conn, now: now)
                return .reply(.reserved(id: id, body: jobs[id]!.body))
            }
            if hasDeadlineSoon(conn, now: now) { return .reply(.deadlineSoon) }
            if timeout == 0 { return .reply(.timedOut) }
            connections[conn]!.waitingUntil = .some(timeout.map { now + $0 })
            waiters.append(conn)
            connections[conn]!.watching.forEach { tubes[$0]!.waiting += 1 }
            return .wait
        case .reserveJob(let id):
            connections[conn]!.isWorker = true
            guard let j = jobs[id], j.state != .reserved else { return .reply(.notFound) }
            reserve(id, to: conn, now: now)
            return .reply(.reserved(id: id, body: jobs[id]!.body))
        case .delete(let id):
            if let tube = cold.remove(id) {
                tubes[tube]!.delayedCount -= 1
                tubes[tube]!.deletes += 1
                dropIfUnused(tube)
                events.append(.delete(id: id))
                return .reply(.deleted)
            }
            guard let j = jobs[id], j.state != .reserved || j.holder == conn else { return .reply(.notFound) }
            leave(id)
            withTube(j.tube) { $0.deletes += 1 }
            jobs[id] = nil
            dropIfUnused(j.tube)
            events.append(.delete(id: id))
            return .reply(.deleted)
        case .release(let id, let priority, let delay):
            guard let j = jobs[id], j.state == .reserved, j.holder == conn else { return .reply(.notFound) }
            leave(id)
            jobs[id]!.priority = priority
            jobs[id]!.releases += 1
            if delay > 0 {
                jobs[id]!.delay = delay
                enterDelayed(id, until: now + Int64(delay) * 1_000)
            } else {
                enterReady(id)
            }
            events.append(.release(id: id, priority: priority, readyAt: delay == 0 ? 0 : wallNow + Int64(delay) * 1_000))
            matchWaiters(now: now)
            return .reply(.released)
        case .bury(let id, let priority):
            guard let j = jobs[id], j.state == .reserved, j.holder == conn else { return .reply(.notFound) }
            leave(id)
            jobs[id]!.priority = priority
            enterBuried(id)
            events.append(.bury(id: id, priority: priority))
            return .reply(.buried)
        case .touch(let id):
            guard let j = jobs[id], j.state == .reserved, j.holder == conn else { return .reply(.notFound) }
            setLease(id, until: now + Int64(j.ttr) * 1_000)
            return .reply(.touched)
        case .watch(let name):
            if !connections[conn]!.watching.contains(name) {
                ensureTube(name)
                tubes[name]!.watching += 1
                connections[conn]!.watching.append(name)
            }
            return .reply(.watching(count: connections[conn]!.watching.count))
        case .ignore(let name):
            let watching = connections[conn]!.watching
            guard let at = watching.firstIndex(of: name) else { return .reply(.watching(count: watching.count)) }
            guard watching.count > 1 else { return .reply(.notIgnored) }
            connections[conn]!.watching.remove(at: at)
            tubes[name]!.watching -= 1
            dropIfUnused(name)
            return .reply(.watching(count: watching.count - 1))
        case .peek(let id):
            guard let j = jobs[id] else { return .reply(.notFound) }
            return .reply(.found(id: id, body: j.body))
        case .peekReady:
            return found(peekReady(connections[conn]!.using))
        case .peekDelayed:
            return found(peekDelayed(connections[conn]!.using))
        case .peekBuried:
            return found(peekBuried(connections[conn]!.using))
        case .kick(let bound):
            let n = kick(tube: connections[conn]!.using, bound: Int(bound), now: now)
            return .reply(.kicked(count: n))
        case .kickJob(let id):
            guard let j = jobs[id], j.state == .buried || j.state == .delayed else { return .reply(.notFound) }
            kickJob(id)
            matchWaiters(now: now)
            return .reply(.kickedJob)
        case .statsJob(let id):
            guard let j = jobs[id] else { return .reply(.notFound) }
            return .reply(.ok(yaml: BeanstalkReply.yamlDictionary(Self.stats(of: j, now: now))))
        case .statsTube(let name):
            guard let t = tubes[name] else { return .reply(.notFound) }
            return .reply(.ok(yaml: BeanstalkReply.yamlDictionary(Self.stats(of: t, now: now))))
        case .stats:
            return .reply(.ok(yaml: ""))  // the shell fills in the server's figures (`serverStats`)
        case .listTubes:
            return .reply(.ok(yaml: BeanstalkReply.yamlList(tubeOrder)))
        case .listTubeUsed:
            return .reply(.using(tube: connections[conn]!.using))
        case .listTubesWatched:
            return .reply(.ok(yaml: BeanstalkReply.yamlList(connections[conn]!.watching)))
        case .pauseTube(let name, let delay):
            guard tubes[name] != nil else { return .reply(.notFound) }
            tubes[name]!.pauses += 1
            tubes[name]!.pauseSeconds = delay
            tubes[name]!.pausedUntil = delay == 0 ? 0 : now + Int64(delay) * 1_000
            if delay == 0 { matchWaiters(now: now) }
            return .reply(.paused)
        case .quit:
            return .quit
        }
    }

    /// Takes the journal records and answers gathered so far.
    mutating func takeEvents() -> [BeanstalkEvent] {
        // Handed over whole (no copy of the records): the next batch starts a new list.
        let taken = events
        events = []
        events.reserveCapacity(taken.count)
        return taken
    }


    // MARK: - Cold jobs

    /// The cold jobs `command` needs whole before it can run, if any.
    private mutating func coldNeeded(_ command: BeanstalkCommand, from conn: UInt64, now: Int64, wallNow: Int64) -> [UInt64]? {
        guard cold.count > 0 else { return nil }
        switch command {
        case .reserveJob(let id), .peek(let id), .statsJob(let id), .kickJob(let id):
            return cold.contains(id) ? [id] : nil
        case .peekDelayed:
            let name = connections[conn]!.using
            guard let c = cold.soonest(inTube: name) else { return nil }
            let coldDue = now + (BeanstalkColdJobs.wallMilliseconds(dueSecond: c.dueSecond) - wallNow)
            if let held = peekDelayed(name), jobs[held]!.due <= coldDue { return nil }
            return [c.id]
        case .kick(let bound):
            let name = connections[conn]!.using
            guard tubes[name]?.buriedCount == 0 else { return nil }
            return cold.soonest(inTube: name, limit: Int(min(UInt64(bound), UInt64(Self.coldKickLimit)))).map(\.id)
        default:
            return nil
        }
    }

    /// When the wake-up of the cold jobs due by the end of `second` fires (wall ms).
    static func wakeAt(dueSecond second: UInt32) -> Int64 { BeanstalkColdJobs.wallMilliseconds(dueSecond: second) - wakeLead }

    /// The wake-ups of `seconds` fired: the cold jobs due by the end of the last of them,
    /// in id order, for the shell to read back and `warm`.
    mutating func fired(seconds: [UInt32]) -> [UInt64] {
        guard let last = seconds.max() else { return [] }
        for s in seconds { wakeSeconds.remove(s) }
        return cold.due(atOrBefore: last)
    }

    /// The wake-ups of `seconds` were not scheduled (their write failed): they are asked
    /// for again by the next cold put due then; the cold jobs that counted on them, in id
    /// order, for the shell to read back and `warm` now.
    mutating func wakeupsLost(_ seconds: Set<UInt32>) -> [UInt64] {
        guard !seconds.isEmpty else { return [] }
        wakeSeconds.subtract(seconds)
        return cold.due(in: seconds)
    }

    /// Asks for the wake-up of every second that has cold jobs (after a restart: one may
    /// have been lost); the `.wake` events, in time order.
    mutating func askWakeupsAgain() -> [BeanstalkEvent] {
        let seconds = cold.dueSeconds()
        wakeSeconds.formUnion(seconds)
        return seconds.map { .wake(second: $0) }
    }

    /// A cold job's put record, read back from the journal or brought by its wake-up: the
    /// job is held whole again, ready if its time has come (reserves waiting get it), else
    /// delayed on the queue's own clock. A record of a job that is not cold changes nothing
    /// (its wake-up came after a delete, a kick, or a restart that already woke it).
    mutating func warm(_ event: BeanstalkEvent, now: Int64, wallNow: Int64) {
        guard case .put(let id, let name, let priority, let ttr, let readyAt, let delay, let body, _) = event, let tube = cold.remove(id) else { return }
        assert(tube == name, "cold job \(id) is in tube \(tube), its put says \(name)")
        tubes[tube]!.delayedCount -= 1
        let createdAt = now - max(0, wallNow - (readyAt - Int64(delay) * 1_000))
        jobs[id] = Job(id: id, tube: tube, priority: priority, ttr: max(1, ttr), state: .ready, createdAt: createdAt, delay: delay, body: body)
        place(id, readyAt: readyAt, now: now, wallNow: wallNow)
        matchWaiters(now: now)
    }

    /// Jobs warmed only to be shown go back cold if they are still delayed and untouched
    /// (their wake-ups were never cancelled): a read does not keep a job in memory.
    mutating func cool(_ ids: [UInt64], now: Int64, wallNow: Int64) {
        for id in ids {
            guard let j = jobs[id], j.state == .delayed, j.reserves == 0, j.releases == 0, j.buries == 0, j.kicks == 0, j.timeouts == 0 else { continue }
            // Only while the wake-up of its second is still to come (else it stays whole).
            let due = BeanstalkColdJobs.dueSecond(wallMilliseconds: wallNow + (j.due - now))
            guard wakeSeconds.contains(due), Self.wakeAt(dueSecond: due) > wallNow, cold.insert(id, tube: j.tube, dueSecond: due) else { continue }
            leave(id)
            jobs[id] = nil
            tubes[j.tube]!.delayedCount += 1
        }
    }

    /// A cold job whose put cannot be found: it leaves the counts.
    mutating func forgetCold(_ id: UInt64) {
        guard let tube = cold.remove(id) else { return }
        tubes[tube]!.delayedCount -= 1
        dropIfUnused(tube)
    }

    /// A journal write failed: the lease it carried may be lost, so the next cold put
    /// takes a new one (past every id handed out so far).
    mutating func leaseLost() {
        idLease = nextID
    }

    /// After recovery: ids go on from the lease, past any a lost put may have used.
    mutating func finishRecovery() {
        nextID = max(nextID, idLease)
    }

    /// What a snapshot keeps: the cold jobs, the ids, and the lowest id held whole (the
    /// journal is read back from that job's put on).
    func snapshotState() -> (cold: BeanstalkColdJobs, nextID: UInt64, idLease: UInt64, lowestHeld: UInt64?) {
        (cold, nextID, idLease, jobs.lowestID)
    }

    /// Starts from a snapshot's state, before the journal after it is replayed.
    mutating func restore(cold: BeanstalkColdJobs, nextID: UInt64, idLease: UInt64) {
        precondition(jobs.isEmpty && self.cold.count == 0, "restore into a queue that has jobs")
        self.cold = cold
        self.nextID = nextID
        self.idLease = idLease
        for (number, name) in cold.tubeNames {
            ensureTube(name)
            let n = cold.perTube[number] ?? 0
            tubes[name]!.delayedCount += n
            tubes[name]!.totalJobs += UInt64(n)
            totalJobs += UInt64(n)
        }
    }

    mutating func takeAnswers() -> [Answer] {
        defer { answers.removeAll(keepingCapacity: true) }
        return answers
    }

    /// A put whose job never arrived whole: counted as a put as beanstalkd does, and one
    /// that failed after its line was read (EXPECTED_CRLF) uses up an id, as there.
    mutating func refusedPut(usedAnID: Bool) {
        commandCounts[0] += 1  // put
        if usedAnID { nextID += 1 }
    }

    // MARK: - Time

    /// Everything due by `now`: delays end, TTRs run out (the job is ready again, a
    /// timeout), pauses end, waiting reserves time out or hear DEADLINE_SOON.
    mutating func tick(now: Int64) {
        while let e = delays.min, e.first <= now {
            delays.removeMin()
            guard let j = jobs[e.id], j.epoch == e.epoch, j.state == .delayed else { continue }
            leave(e.id)
            enterReady(e.id)
        }
        while let e = leases.min, e.first <= now {
            leases.removeMin()
            guard let j = jobs[e.id], j.epoch == e.epoch, j.state == .reserved else { continue }
            jobs[e.id]!.timeouts += 1
            jobTimeouts += 1
            makeReady(e.id, now: now)
        }
        for name in tubeOrder where tubes[name]!.pausedUntil != 0 && tubes[name]!.pausedUntil <= now {
            tubes[name]!.pausedUntil = 0
            tubes[name]!.pauseSeconds = 0
        }
        matchWaiters(now: now)
        for id in waiters {
            guard case .some(let until) = connections[id]!.waitingUntil else { continue }
            if hasDeadlineSoon(id, now: now) {
                stopWaiting(id)
                answers.append(Answer(connection: id, reply: .deadlineSoon))
            } else if let until, until <= now {
                stopWaiting(id)
                answers.append(Answer(connection: id, reply: .timedOut))
            }
        }
    }

    /// When `tick` next has something to do (steady ms), or nil.
    func nextDeadline() -> Int64? {
        var next = [delays.min?.first, leases.min?.first].compactMap { $0 }.min()
        for t in tubes.values where t.pausedUntil != 0 { next = min(next ?? .max, t.pausedUntil) }
        for id in waiters {
            let c = connections[id]!
            guard case .some(let until) = c.waitingUntil else { continue }
            if let until { next = min(next ?? .max, until) }
            if let soonest = c.reserved.compactMap({ jobs[$0]?.due }).min() { next = min(next ?? .max, soonest - Self.safetyMargin) }
        }
        return next
    }

    // MARK: - Recovery

    /// Applies a journal record read back after a restart (`now`/`wallNow`: the clocks
    /// now). Reserved jobs are not journaled: every job comes back ready, delayed or buried.
    ///
    /// A delayed put may go cold (`mayGoCold`, when its wake-up is known to be scheduled:
    /// the record is after the snapshot replay started from). A record about a cold job
    /// that needs it whole is not applied: its id is returned, and the shell warms the job
    /// and replays the record again.
    @discardableResult
    mutating func replay(_ event: BeanstalkEvent, now: Int64, wallNow: Int64, mayGoCold: Bool = true) -> UInt64? {
        switch event {
        case .put(let id, let tubeName, let priority, let ttr, let readyAt, let delay, let body, let wakeup):
            nextID = max(nextID, id + 1)
            guard jobs[id] == nil, !cold.contains(id) else { return nil }
            ensureTube(tubeName)
            tubes[tubeName]!.totalJobs += 1
            totalJobs += 1
            // Only a put whose wake-up was scheduled may go cold: it is what brings it back.
            let due = BeanstalkColdJobs.dueSecond(wallMilliseconds: readyAt)
            if mayGoCold, wakeup, coldDelays, readyAt > wallNow, due > 0, cold.insert(id, tube: tubeName, dueSecond: due) {
                tubes[tubeName]!.delayedCount += 1
                return nil
            }
            let createdAt: Int64, shown: UInt32
            if delay > 0 {
                (createdAt, shown) = (now - max(0, wallNow - (readyAt - Int64(delay) * 1_000)), delay)
            } else {  // a first-build record: the delay left stands for the delay
                (createdAt, shown) = (now, readyAt == 0 ? 0 : UInt32(clamping: max(0, (readyAt - wallNow + 999) / 1_000)))
            }
            jobs[id] = Job(id: id, tube: tubeName, priority: priority, ttr: ttr, state: .ready, createdAt: createdAt, delay: shown, body: body)
            place(id, readyAt: readyAt, now: now, wallNow: wallNow)
        case .delete(let id):
            nextID = max(nextID, id + 1)
            if let tube = cold.remove(id) {
                tubes[tube]!.delayedCount -= 1
                dropIfUnused(tube)
                return nil
            }
            guard let j = jobs[id] else { return nil }
            leave(id)
            jobs[id] = nil
            dropIfUnused(j.tube)
        case .release(let id, let priority, let readyAt):
            if cold.contains(id) { return id }
            guard jobs[id] != nil else { return nil }
            leave(id)
            jobs[id]!.priority = priority
            place(id, readyAt: readyAt, now: now, wallNow: wallNow)
        case .bury(let id, let priority):
            if cold.contains(id) { return id }
            guard jobs[id] != nil else { return nil }
            leave(id)
            jobs[id]!.priority = priority
            enterBuried(id)
        case .kick(let id):
            if cold.contains(id) { return id }
            guard jobs[id] != nil else { return nil }
            leave(id)
            enterReady(id)
        case .ids(let upTo):
            idLease = max(idLease, upTo)
        case .wake:
            break  // a wake-up, not a journal record
        }
        return nil
    }

    /// A journaled job becomes ready, or delayed until the wall time `readyAt`.
    private mutating func place(_ id: UInt64, readyAt: Int64, now: Int64, wallNow: Int64) {
        if readyAt > wallNow {
            enterDelayed(id, until: now + (readyAt - wallNow))
        } else {
            enterReady(id)
        }
    }

    // MARK: - Stats

    static func stats(of j: Job, now: Int64) -> [(String, String)] {
        let left: Int64 = j.state == .reserved || j.state == .delayed ? max(0, j.due - now) / 1_000 : 0
        return [
            ("id", "\(j.id)"), ("tube", j.tube), ("state", j.state.rawValue), ("pri", "\(j.priority)"),
            ("age", "\(max(0, now - j.createdAt) / 1_000)"), ("delay", "\(j.delay)"), ("ttr", "\(j.ttr)"), ("time-left", "\(left)"),
            ("file", "0"), ("reserves", "\(j.reserves)"), ("timeouts", "\(j.timeouts)"), ("releases", "\(j.releases)"),
            ("buries", "\(j.buries)"), ("kicks", "\(j.kicks)"),
        ]
    }

    static func stats(of t: Tube, now: Int64) -> [(String, String)] {
        [
            ("name", t.name), ("current-jobs-urgent", "\(t.urgent)"), ("current-jobs-ready", "\(t.readyCount)"),
            ("current-jobs-reserved", "\(t.reservedCount)"), ("current-jobs-delayed", "\(t.delayedCount)"),
            ("current-jobs-buried", "\(t.buriedCount)"), ("total-jobs", "\(t.totalJobs)"), ("current-using", "\(t.using)"),
            ("current-watching", "\(t.watching)"), ("current-waiting", "\(t.waiting)"), ("cmd-delete", "\(t.deletes)"),
            ("cmd-pause-tube", "\(t.pauses)"), ("pause", "\(t.pauseSeconds)"),
            ("pause-time-left", "\(t.pausedUntil == 0 ? 0 : max(0, t.pausedUntil - now) / 1_000)"),
        ]
    }

    /// The job counts and command counts of `stats`, in beanstalkd's order; the shell adds
    /// the process's figures around them.
    func jobAndCommandStats() -> [(String, String)] {
        var sums = (urgent: 0, ready: 0, reserved: 0, delayed: 0, buried: 0)
        for t in tubes.values {
            sums.urgent += t.urgent
            sums.ready += t.readyCount
            sums.reserved += t.reservedCount
            sums.delayed += t.delayedCount
            sums.buried += t.buriedCount
        }
        var out: [(String, String)] = [
            ("current-jobs-urgent", "\(sums.urgent)"), ("current-jobs-ready", "\(sums.ready)"),
            ("current-jobs-reserved", "\(sums.reserved)"), ("current-jobs-delayed", "\(sums.delayed)"),
            ("current-jobs-buried", "\(sums.buried)"),
        ]
        for (name, n) in zip(Self.commandNames, commandCounts) { out.append(("cmd-\(name)", "\(n)")) }
        out.append(("job-timeouts", "\(jobTimeouts)"))
        out.append(("total-jobs", "\(totalJobs)"))
        return out
    }

    func connectionStats() -> [(String, String)] {
        [
            ("current-tubes", "\(tubes.count)"), ("current-connections", "\(connections.count)"),
            ("current-producers", "\(connections.values.filter(\.isProducer).count)"),
            ("current-workers", "\(connections.values.filter(\.isWorker).count)"),
            ("current-waiting", "\(waiters.count)"),
            ("total-connections", "\(totalConnections)"),
        ]
    }

    /// The commands `stats` counts, in its order.
    static let commandNames = [
        "put", "peek", "peek-ready", "peek-delayed", "peek-buried", "reserve", "reserve-with-timeout", "delete", "release",
        "use", "watch", "ignore", "bury", "kick", "touch", "stats", "stats-job", "stats-tube", "list-tubes", "list-tube-used",
        "list-tubes-watched", "pause-tube",
    ]

    /// Counts a command under its place in `commandNames` (no string work per command).
    private mutating func count(_ command: BeanstalkCommand) {
        let at: Int
        switch command {
        case .put: at = 0
        case .peek: at = 1
        case .peekReady: at = 2
        case .peekDelayed: at = 3
        case .peekBuried: at = 4
        case .reserve: at = 5
        case .reserveWithTimeout: at = 6
        case .delete: at = 7
        case .release: at = 8
        case .use: at = 9
        case .watch: at = 10
        case .ignore: at = 11
        case .bury: at = 12
        case .kick: at = 13
        case .touch: at = 14
        case .stats: at = 15
        case .statsJob: at = 16
        case .statsTube: at = 17
        case .listTubes: at = 18
        case .listTubeUsed: at = 19
        case .listTubesWatched: at = 20
        case .pauseTube: at = 21
        case .reserveJob, .kickJob, .quit: return  // beanstalkd counts none of them
        }
        commandCounts[at] += 1
    }

    // MARK: - Moving jobs between states

    /// A new job, journaled: cold if it is delayed past its second's wake-up and
    /// `coldDelays` is set (its id then under a lease; the wake-up asked for unless it
    /// already is), else held whole.
    private mutating func put(tube name: String, priority: UInt32, delay: UInt32, ttr: UInt32, body: [UInt8], now: Int64, wallNow: Int64) -> UInt64 {
        let readyAt = delay == 0 ? 0 : wallNow + Int64(delay) * 1_000
        let due = BeanstalkColdJobs.dueSecond(wallMilliseconds: readyAt)
        // A wall clock before 2020 (a machine that has not set its clock yet) holds it whole.
        let goesCold = coldDelays && delay > 0 && Int64(delay) * 1_000 <= Self.longestColdDelay && due > 0
            && Self.wakeAt(dueSecond: due) > wallNow
        if goesCold && nextID >= idLease {
            idLease = nextID + Self.idLeaseBlock
            events.append(.ids(upTo: idLease))
        }
        let id = nextID
        nextID += 1
        assert(tubes[name] != nil, "a connection's tube is kept while it uses it")
        totalJobs += 1
        let cooled = goesCold && cold.insert(id, tube: name, dueSecond: due)
        if cooled && wakeSeconds.insert(due).inserted { events.append(.wake(second: due)) }
        events.append(.put(id: id, tube: name, priority: priority, ttr: max(1, ttr), readyAt: readyAt, delay: delay, body: body, wakeup: cooled))
        if cooled {
            withTube(name) { t in
                t.totalJobs += 1
                t.delayedCount += 1
            }
            return id
        }
        // The hot path of a put: one lookup of the job table and one of the tube.
        let job = Job(id: id, tube: name, priority: priority, ttr: max(1, ttr), state: .ready, createdAt: now, delay: delay, body: body)
        jobs[id] = job
        withTube(name) { t in
            t.totalJobs += 1
            if delay == 0 { t.enqueueReady(job) }
        }
        if delay > 0 { enterDelayed(id, until: now + Int64(delay) * 1_000) }
        return id
    }

    /// Takes a job out of its state's counts and lists (heap entries go stale by epoch;
    /// buried entries too).
    private mutating func leave(_ id: UInt64) {
        jobs[id]!.epoch &+= 1
        let j = jobs[id]!
        if j.state == .reserved {
            connections[j.holder]?.reserved.remove(id)
            jobs[id]!.holder = 0
        }
        withTube(j.tube) { t in
            switch j.state {
            case .ready:
                t.readyCount -= 1
                if j.priority < BeanstalkQueue.urgentBelow { t.urgent -= 1 }
            case .reserved: t.reservedCount -= 1
            case .delayed: t.delayedCount -= 1
            case .buried: t.buriedCount -= 1
            }
        }
    }

    /// Changes the tube `name` (which exists) in place: one lookup, no copy of it.
    private mutating func withTube(_ name: String, _ change: (inout Tube) -> Void) {
        guard let i = tubes.index(forKey: name) else { preconditionFailure("tube \(name) of a held job is gone") }
        change(&tubes.values[i])
    }

    private mutating func enterReady(_ id: UInt64) {
        jobs[id]!.state = .ready
        let j = jobs[id]!
        withTube(j.tube) { $0.enqueueReady(j) }
    }

    private mutating func enterDelayed(_ id: UInt64, until: Int64) {
        jobs[id]!.state = .delayed
        jobs[id]!.due = until
        let j = jobs[id]!
        tubes[j.tube]!.delayedCount += 1
        let e = Entry(first: until, id: id, epoch: j.epoch)
        tubes[j.tube]!.delayed.insert(e)
        delays.insert(e)
    }

    private mutating func enterBuried(_ id: UInt64) {
        jobs[id]!.state = .buried
        jobs[id]!.buries += 1
        let j = jobs[id]!
        tubes[j.tube]!.buriedCount += 1
        tubes[j.tube]!.buried.append(Entry(first: 0, id: id, epoch: j.epoch))
    }

    /// A ready, delayed or buried job is reserved by `conn` for its TTR.
    private mutating func reserve(_ id: UInt64, to conn: UInt64, now: Int64) {
        leave(id)
        let j = jobs[id]!
        jobs[id]!.state = .reserved
        jobs[id]!.holder = conn
        jobs[id]!.reserves += 1
        withTube(j.tube) { $0.reservedCount += 1 }
        connections[conn]!.reserved.insert(id)
        setLease(id, until: now + Int64(j.ttr) * 1_000)
    }

    private mutating func setLease(_ id: UInt64, until: Int64) {
        jobs[id]!.epoch &+= 1
        jobs[id]!.due = until
        leases.insert(Entry(first: until, id: id, epoch: jobs[id]!.epoch))
    }

    /// A reserved job goes back to ready (its TTR ran out, or its holder left).
    private mutating func makeReady(_ id: UInt64, now: Int64) {
        guard jobs[id]?.state == .reserved else { return }
        leave(id)
        enterReady(id)
    }

    private mutating func kickJob(_ id: UInt64) {
        leave(id)
        jobs[id]!.kicks += 1
        enterReady(id)
        events.append(.kick(id: id))
    }

    /// `kick n` on a tube: its buried jobs if it has any (oldest first), else its delayed
    /// ones (soonest first).
    private mutating func kick(tube name: String, bound: Int, now: Int64) -> Int {
        var kicked = 0
        if tubes[name]!.buriedCount > 0 {
            while kicked < bound, let e = tubes[name]!.buried.popFirst() {
                guard let j = jobs[e.id], j.epoch == e.epoch, j.state == .buried else { continue }
                kickJob(e.id)
                kicked += 1
            }
        } else {
            while kicked < bound, let e = tubes[name]!.delayed.popMin() {
                guard let j = jobs[e.id], j.epoch == e.epoch, j.state == .delayed else { continue }
                kickJob(e.id)
                kicked += 1
            }
        }
        matchWaiters(now: now)
        return kicked
    }

    // MARK: - Finding jobs

    /// Makes the tube `name` if it is new.
    private mutating func ensureTube(_ name: String) {
        guard tubes[name] == nil else { return }
        tubes[name] = Tube(name: name)
        tubeOrder.append(name)
    }

    /// A tube without jobs, users or watchers goes (`default` stays, as in beanstalkd).
    private mutating func dropIfUnused(_ name: String) {
        guard name != Self.defaultTube, let t = tubes[name], t.jobs == 0, t.using == 0, t.watching == 0 else { return }
        tubes[name] = nil
        tubeOrder.removeAll { $0 == name }
    }

    /// The best ready job of a tube, stale entries dropped on the way.
    private mutating func topReady(_ name: String) -> Entry? {
        while let e = tubes[name]?.ready.min {
            if let j = jobs[e.id], j.epoch == e.epoch, j.state == .ready { return e }
            tubes[name]!.ready.removeMin()
        }
        return nil
    }

    private mutating func bestReady(for conn: UInt64, now: Int64) -> UInt64? {
        var best: Entry?
        for name in connections[conn]!.watching {
            // No copy of the tube is held here: `topReady` then pops stale entries from a
            // heap it alone references, in place (a held copy made each pop copy the heap).
            guard let pausedUntil = tubes[name]?.pausedUntil, pausedUntil == 0 || pausedUntil <= now,
                tubes[name]!.readyCount > 0, let e = topReady(name)
            else { continue }
            if best == nil || e < best! { best = e }
        }
        return best?.id
    }

    private mutating func peekReady(_ name: String) -> UInt64? { topReady(name)?.id }

    private mutating func peekDelayed(_ name: String) -> UInt64? {
        while let e = tubes[name]?.delayed.min {
            if let j = jobs[e.id], j.epoch == e.epoch, j.state == .delayed { return e.id }
            tubes[name]!.delayed.removeMin()
        }
        return nil
    }

    private mutating func peekBuried(_ name: String) -> UInt64? {
        while let e = tubes[name]?.buried.first {
            if let j = jobs[e.id], j.epoch == e.epoch, j.state == .buried { return e.id }
            tubes[name]!.buried.removeFirst()
        }
        return nil
    }

    private func found(_ id: UInt64?) -> Outcome {
        guard let id, let j = jobs[id] else { return .reply(.notFound) }
        return .reply(.found(id: id, body: j.body))
    }

    private func hasDeadlineSoon(_ conn: UInt64, now: Int64) -> Bool {
        connections[conn]!.reserved.contains { id in jobs[id].map { $0.due - Self.safetyMargin <= now } ?? false }
    }

    private mutating func stopWaiting(_ conn: UInt64) {
        connections[conn]!.waitingUntil = nil
        connections[conn]!.watching.forEach { tubes[$0]!.waiting -= 1 }
        waiters.removeAll { $0 == conn }
    }

    /// Hands ready jobs to waiting reserves, oldest waiter first.
    private mutating func matchWaiters(now: Int64) {
        guard !waiters.isEmpty else { return }
        for conn in waiters {
            guard let id = bestReady(for: conn, now: now) else { continue }
            stopWaiting(conn)
            reserve(id, to: conn, now: now)
            answers.append(Answer(connection: conn, reply: .reserved(id: id, body: jobs[id]!.body)))
        }
    }
}
