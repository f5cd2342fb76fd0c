@testable import ChimeServer
import ChimeTestSupport
import Testing

/// The queue with delayed puts kept cold: what it asks of its shell (wake-ups to schedule,
/// puts to read back) and that it answers as if every job were held whole.
@Suite struct BeanstalkQueueColdTests {
    private static let wall: Int64 = 1_800_000_000_000

    /// A queue with cold delays and the puts it journaled, as the shell would read them back.
    private struct Shell {
        var q = BeanstalkQueue()
        var puts: [UInt64: BeanstalkEvent] = [:]
        var journal: [BeanstalkEvent] = []
        /// The due seconds whose wake-ups the queue asked for, in order.
        var wakes: [UInt32] = []
        var loads = 0

        init() {
            q.coldDelays = true
            q.connect(1)
        }

        /// Runs a command as the engine does: a `.load` is answered from the journal.
        mutating func run(_ c: BeanstalkCommand, body: String = "", conn: UInt64 = 1, now: Int64 = 0) -> BeanstalkQueue.Outcome {
            var outcome = q.run(c, body: Array(body.utf8), from: conn, now: now, wallNow: wall + now)
            if case .load(let ids) = outcome {
                loads += 1
                for id in ids { q.warm(puts[id]!, now: now, wallNow: wall + now) }
                outcome = q.run(c, body: Array(body.utf8), from: conn, now: now, wallNow: wall + now, warmed: true)
                if c.onlyReads { q.cool(ids, now: now, wallNow: wall + now) }
            }
            take()
            return outcome
        }

        mutating func take() {
            for e in q.takeEvents() {
                switch e {
                case .wake(let second):
                    wakes.append(second)
                    continue  // a scheduled message, not a journal record
                case .put(let id, _, _, _, _, _, _, _): puts[id] = e
                default: break
                }
                journal.append(e)
            }
        }

        mutating func put(_ body: String, pri: UInt32 = 0, delay: UInt32, now: Int64 = 0) -> UInt64 {
            guard case .reply(.inserted(let id)) = run(.put(priority: pri, delay: delay, ttr: 60, bytes: UInt32(body.utf8.count)), body: body, now: now) else {
                Issue.record("put refused")
                return 0
            }
            return id
        }

        /// The wake-up of `second` fires at `now`: the jobs it names are read back.
        mutating func fire(second: UInt32, now: Int64) {
            for id in q.fired(seconds: [second]) { q.warm(puts[id]!, now: now, wallNow: wall + now) }
            take()
        }

        /// The wall ms a job put at `now` with `delay` s is due, and its due second.
        func due(putAt now: Int64, delay: UInt32) -> UInt32 {
            BeanstalkColdJobs.dueSecond(wallMilliseconds: wall + now + Int64(delay) * 1_000)
        }

        /// When the wake-up of `second` fires, on the queue's clock.
        func wakeTime(_ second: UInt32) -> Int64 { BeanstalkQueue.wakeAt(dueSecond: second) - wall }
    }

    private var wall: Int64 { Self.wall }

    /// Per tube, the counts agree with the jobs held whole plus the cold ones.
    private func checkCounts(_ q: BeanstalkQueue) {
        for (name, t) in q.tubes {
            let mine = q.jobs.values.filter { $0.tube == name }
            #expect(t.readyCount == mine.filter { $0.state == .ready }.count, "\(name) ready")
            #expect(t.reservedCount == mine.filter { $0.state == .reserved }.count, "\(name) reserved")
            #expect(t.delayedCount == mine.filter { $0.state == .delayed }.count + q.cold.count(inTube: name), "\(name) delayed")
            #expect(t.buriedCount == mine.filter { $0.state == .buried }.count, "\(name) buried")
        }
    }

    private func stat(_ yaml: BeanstalkQueue.Outcome, _ key: String) -> String? {
        guard case .reply(.ok(let text)) = yaml else { return nil }
        return text.split(separator: "\n").first { $0.hasPrefix(key + ": ") }.map { String($0.dropFirst(key.count + 2)) }
    }

    @Test func aDelayedPutIsHeldColdWithAWakeUpAndIsWholeAgainWhenItFires() {
        var s = Shell()
        let id = s.put("later", delay: 10)
        #expect(s.q.jobs[id] == nil && s.q.cold.contains(id), "not held whole")
        let second = s.due(putAt: 0, delay: 10)
        #expect(s.wakes == [second], "a wake-up for its due second")
        #expect(s.journal.first == .ids(upTo: id + BeanstalkQueue.idLeaseBlock), "its id is leased in the journal before its put")
        #expect(stat(s.run(.statsTube(tube: "default")), "current-jobs-delayed") == "1")
        s.q.connect(2)
        _ = s.run(.watch(tube: "default"), conn: 2)
        #expect(s.run(.reserve, conn: 2) == .wait)
        let woken = s.wakeTime(second)
        #expect(woken > 0 && woken <= 10_000 - 1_000, "it fires 1–2 s before the job is due: \(woken)")
        s.fire(second: second, now: woken)
        #expect(s.q.cold.count == 0 && s.q.jobs[id]?.state == .delayed, "held whole, still delayed")
        s.q.tick(now: 9_999)
        #expect(s.q.takeAnswers().isEmpty, "not ready a ms early")
        s.q.tick(now: 10_000)
        #expect(s.q.takeAnswers() == [.init(connection: 2, reply: .reserved(id: id, body: Array("later".utf8)))], "the waiting reserve gets it on its ms")
        s.fire(second: second, now: 10_001)
        #expect(s.q.jobs[id]?.state == .reserved, "a second wake-up changes nothing")
        checkCounts(s.q)
    }

    @Test func coldPutsDueInOneSecondShareOneWakeUp() {
        var s = Shell()
        let a = s.put("a", delay: 30), b = s.put("b", delay: 29, now: 400), c = s.put("c", delay: 31)
        #expect([a, b, c].allSatisfy { s.q.cold.contains($0) })
        #expect(s.due(putAt: 0, delay: 30) == s.due(putAt: 400, delay: 29), "due in the same second")
        #expect(s.wakes == [s.due(putAt: 0, delay: 30), s.due(putAt: 0, delay: 31)], "one per due second")
        s.fire(second: s.wakes[0], now: s.wakeTime(s.wakes[0]))
        #expect(s.q.jobs[a] != nil && s.q.jobs[b] != nil && s.q.cold.contains(c), "the first second's jobs only")
        let d = s.put("d", delay: 30, now: 400)
        #expect(s.q.cold.contains(d) && s.wakes.count == 2, "c's second is still to come: d counts on it")
        s.fire(second: s.wakes[1], now: s.wakeTime(s.wakes[1]))
        #expect(s.q.cold.count == 0)
        checkCounts(s.q)
    }

    @Test func aPutDueBeforeItsSecondsWakeUpWouldFireIsHeldWhole() {
        var s = Shell()
        let soon = s.put("soon", delay: 2), later = s.put("later", delay: 3)
        #expect(s.q.jobs[soon]?.state == .delayed && s.wakes == [s.due(putAt: 0, delay: 3)], "2 s: on the queue's clock, no wake-up")
        #expect(s.q.cold.contains(later))
        s.fire(second: s.wakes[0], now: s.wakeTime(s.wakes[0]))
        let again = s.put("again", delay: 2, now: 1_000)
        #expect(s.due(putAt: 1_000, delay: 2) == s.wakes[0])
        #expect(s.q.jobs[again]?.state == .delayed && s.wakes.count == 1, "its second's wake-up time has come: held whole")
        checkCounts(s.q)
    }

    @Test func aJobShownAfterItsSecondsWakeUpFiredStaysWhole() {
        var s = Shell()
        let id = s.put("x", delay: 60)
        let second = s.wakes[0]
        #expect(s.q.run(.peek(id: id), from: 1, now: 0, wallNow: wall) == .load([id]))
        s.q.warm(s.puts[id]!, now: 0, wallNow: wall)
        // The wake-up fires while the job is out for the peek: it finds nothing cold.
        #expect(s.q.fired(seconds: [second]).isEmpty)
        _ = s.q.run(.peek(id: id), from: 1, now: 0, wallNow: wall, warmed: true)
        s.q.cool([id], now: 0, wallNow: wall)
        #expect(s.q.jobs[id]?.state == .delayed && !s.q.cold.contains(id), "no wake-up is left to bring it back: it stays whole")
        let other = s.put("y", delay: 120)
        _ = s.run(.peek(id: other))
        #expect(s.q.cold.contains(other), "shown while its wake-up is still to come: cold again")
        checkCounts(s.q)
    }

    @Test func lostWakeUpsBringBackTheJobsThatCountedOnThemAndAreAskedForAgain() {
        var s = Shell()
        let a = s.put("a", delay: 30), b = s.put("b", delay: 30), c = s.put("c", delay: 90)
        let lost = s.q.wakeupsLost([s.wakes[0]])
        #expect(lost == [a, b] && s.q.cold.contains(c), "the jobs of the lost second, in id order")
        for id in lost { s.q.warm(s.puts[id]!, now: 0, wallNow: wall) }
        _ = s.put("d", delay: 30)
        #expect(s.wakes.count == 3 && s.wakes[2] == s.wakes[0], "the next cold put due then asks for it again")
        checkCounts(s.q)
    }

    @Test func aRestartAsksAgainForTheWakeUpOfEverySecondWithColdJobs() throws {
        var s = Shell()
        let a = s.put("a", delay: 30), b = s.put("b", delay: 30), c = s.put("c", delay: 90)
        var back = BeanstalkQueue()
        back.coldDelays = true
        for e in s.journal { back.replay(try BeanstalkEvent(decoding: e.encoded), now: 0, wallNow: wall) }
        #expect([a, b, c].allSatisfy { back.cold.contains($0) } && back.wakeSeconds.isEmpty)
        let asked = back.askWakeupsAgain()
        #expect(asked == [.wake(second: s.due(putAt: 0, delay: 30)), .wake(second: s.due(putAt: 0, delay: 90))], "one per second, in time order")
        back.finishRecovery()
        back.connect(1)
        _ = back.run(.put(priority: 0, delay: 30, ttr: 1, bytes: 1), body: [1], from: 1, now: 0, wallNow: wall)
        #expect(!back.takeEvents().contains { if case .wake = $0 { true } else { false } }, "a put due then counts on it")
    }

    @Test func aFirstBuildsWakeUpCarryingThePutStillBringsItBack() {
        var s = Shell()
        let id = s.put("old", delay: 10)
        s.q.warm(s.puts[id]!, now: 10_000, wallNow: wall + 10_000)
        #expect(s.q.jobs[id]?.state == .ready && s.q.cold.count == 0)
        checkCounts(s.q)
    }

    @Test func aCommandThatNeedsAColdJobAsksForItFirstAndIsAnsweredAsIfHeld() {
        var s = Shell()
        let a = s.put("a", pri: 7, delay: 100), b = s.put("b", delay: 50)
        let cmdPeek = { (q: BeanstalkQueue) in q.counts["peek"] ?? 0 }
        #expect(s.q.run(.peek(id: a), from: 1, now: 0, wallNow: wall) == .load([a]))
        #expect(cmdPeek(s.q) == 0, "asking changed nothing, not even the command counts")
        #expect(s.run(.peek(id: a)) == .reply(.found(id: a, body: Array("a".utf8))))
        #expect(stat(s.run(.statsJob(id: a), now: 2_000), "state") == "delayed")
        #expect(stat(s.run(.statsJob(id: a), now: 2_000), "delay") == "100")
        #expect(stat(s.run(.statsJob(id: a), now: 2_000), "time-left") == "98")
        #expect(stat(s.run(.statsJob(id: a), now: 2_000), "pri") == "7")
        #expect(s.q.cold.contains(a) && s.q.jobs[a] == nil, "read only to be shown, it went back out of memory")
        // peek-delayed: b is due sooner.
        #expect(s.run(.peekDelayed) == .reply(.found(id: b, body: Array("b".utf8))))
        #expect(s.q.cold.contains(b))
        let c = s.put("c", delay: 10)
        #expect(s.run(.delete(id: c)) == .reply(.deleted), "a cold job is deleted without being read")
        #expect(s.run(.delete(id: c)) == .reply(.notFound))
        #expect(s.run(.kickJob(id: a)) == .reply(.kickedJob))
        #expect(s.q.jobs[a]?.state == .ready)
        checkCounts(s.q)
    }

    @Test func onlyAPutWithAWakeUpGoesColdOnReplayAndAClockBefore2020HoldsJobsWhole() throws {
        var back = BeanstalkQueue()
        back.coldDelays = true
        let later = wall + 60_000
        back.replay(.put(id: 1, tube: "t", priority: 0, ttr: 5, readyAt: later, delay: 60, body: [1], wakeup: true), now: 0, wallNow: wall)
        back.replay(.put(id: 2, tube: "t", priority: 0, ttr: 5, readyAt: later, delay: 60, body: [2], wakeup: false), now: 0, wallNow: wall)
        let first: [UInt8] = [1, 1] + [3, 0, 0, 0, 0, 0, 0, 0] + [0, 0, 0, 0, 5, 0, 0, 0] + withUnsafeBytes(of: later.littleEndian, Array.init) + [1, 116, 3]
        back.replay(try BeanstalkEvent(decoding: first), now: 0, wallNow: wall)
        #expect(back.cold.contains(1))
        #expect(back.jobs[2]?.state == .delayed && back.jobs[3]?.state == .delayed, "no wake-up was scheduled for them: held whole, on the queue's clock")
        #expect(back.nextDeadline() == 60_000)

        var early = BeanstalkQueue()
        early.coldDelays = true
        early.connect(1)
        let bytes = Array("x".utf8)
        guard case .reply(.inserted(let id)) = early.run(.put(priority: 0, delay: 5, ttr: 1, bytes: 1), body: bytes, from: 1, now: 0, wallNow: 1_000) else {
            Issue.record("put refused")
            return
        }
        #expect(early.jobs[id]?.state == .delayed && early.cold.count == 0, "a wall clock in 1970: held whole, not a crash")
    }

    @Test func aFailedWriteMakesTheNextColdPutTakeANewLease() {
        var s = Shell()
        _ = s.put("a", delay: 10)
        s.q.leaseLost()
        let b = s.put("b", delay: 10)
        #expect(s.journal.filter { if case .ids = $0 { true } else { false } }.count == 2)
        #expect(s.journal.contains(.ids(upTo: b + BeanstalkQueue.idLeaseBlock)))
        s.q.forgetCold(b)
        #expect(s.q.tubes["default"]!.delayedCount == 1, "a cold job whose put is lost leaves the counts")
        checkCounts(s.q)
    }

    @Test func kickBringsBackTheSoonestColdJobsFirst() {
        var s = Shell()
        let ids = [30, 10, 20, 40].map { s.put("job \($0)", delay: UInt32($0)) }
        #expect(s.run(.kick(bound: 2)) == .reply(.kicked(count: 2)))
        #expect(s.q.jobs[ids[1]]?.state == .ready && s.q.jobs[ids[2]]?.state == .ready, "due in 10 and 20 s")
        #expect(s.q.cold.count == 2)
        #expect(s.run(.kick(bound: 10)) == .reply(.kicked(count: 2)))
        #expect(s.q.cold.count == 0)
        checkCounts(s.q)
    }

    @Test func theJournalReplayedKeepsDelayedPutsColdAndIdsGoOnPastTheLease() throws {
        var s = Shell()
        let a = s.put("a", delay: 100), b = s.put("b", delay: 100), c = s.put("c", delay: 100)
        _ = s.put("now", delay: 0)
        #expect(s.run(.kickJob(id: c), now: 1_000) == .reply(.kickedJob))
        #expect(s.run(.reserveJob(id: c), now: 1_000) == .reply(.reserved(id: c, body: Array("c".utf8))))
        #expect(s.run(.release(id: c, priority: 5, delay: 0), now: 1_000) == .reply(.released))
        #expect(s.run(.delete(id: b), now: 1_000) == .reply(.deleted))

        var back = BeanstalkQueue()
        back.coldDelays = true
        var asked: [UInt64] = []
        for e in s.journal {
            let again = try BeanstalkEvent(decoding: e.encoded)
            if let id = back.replay(again, now: 2_000, wallNow: wall + 2_000) {
                asked.append(id)
                back.warm(s.puts[id]!, now: 2_000, wallNow: wall + 2_000)
                #expect(back.replay(again, now: 2_000, wallNow: wall + 2_000) == nil)
            }
        }
        #expect(asked == [c], "the kick of a cold job needs its put")
        #expect(back.cold.contains(a) && !back.cold.contains(b) && back.jobs[b] == nil)
        #expect(back.jobs[c]?.state == .ready && back.jobs[c]?.priority == 5)
        back.finishRecovery()
        back.connect(1)
        guard case .reply(.inserted(let next)) = back.run(.put(priority: 0, delay: 0, ttr: 1, bytes: 0), from: 1, now: 2_000, wallNow: wall + 2_000) else {
            Issue.record("put refused")
            return
        }
        #expect(next == 1 + BeanstalkQueue.idLeaseBlock, "no id under the lease is used again: a wake-up may carry it")
        checkCounts(back)
    }

    @Test func aSnapshotsStateRestoredCountsItsColdJobs() {
        var s = Shell()
        for i in 0..<5 { _ = s.put("j\(i)", delay: 60) }
        _ = s.run(.use(tube: "x"))
        _ = s.put("x", delay: 60)
        let state = s.q.snapshotState()
        var back = BeanstalkQueue()
        back.coldDelays = true
        back.restore(cold: state.cold, nextID: state.nextID, idLease: state.idLease)
        #expect(back.tubes["default"]?.delayedCount == 5 && back.tubes["x"]?.delayedCount == 1)
        checkCounts(back)
    }

    @Test func aSeededRandomWorkloadWithColdJobsKeepsEveryCountTrue() {
        var rng = SeededRandom(seed: 7)
        var s = Shell()
        s.q.connect(2)
        var now: Int64 = 0
        for _ in 0..<3_000 {
            now += Int64(rng.next() % 300)
            let id = UInt64(rng.next() % 60) + 1
            let conn = UInt64(rng.next() % 2) + 1
            let command: BeanstalkCommand
            switch rng.next() % 12 {
            case 0, 1, 2: command = .put(priority: UInt32(rng.next() % 2_000), delay: UInt32(rng.next() % 6), ttr: 2, bytes: 1)
            case 3: command = .reserveWithTimeout(seconds: 0)
            case 4: command = .delete(id: id)
            case 5: command = .release(id: id, priority: 1, delay: UInt32(rng.next() % 2))
            case 6: command = .bury(id: id, priority: 3)
            case 7: command = .kick(bound: UInt32(rng.next() % 3))
            case 8: command = .peekDelayed
            case 9: command = .kickJob(id: id)
            case 10: command = .peek(id: id)
            default: command = .use(tube: rng.next() % 2 == 0 ? "a" : "b")
            }
            _ = s.run(command, body: "x", conn: conn, now: now)
            // Wake-ups fire at their time, some twice.
            for w in s.wakes where s.wakeTime(w) <= now && (s.q.wakeSeconds.contains(w) || rng.next() % 8 == 0) { s.fire(second: w, now: now) }
            #expect(s.q.cold.due(atOrBefore: BeanstalkColdJobs.dueSecond(wallMilliseconds: wall + now + BeanstalkQueue.wakeLead - 1_000)).isEmpty, "no cold job is left behind its wake-up")
            s.q.tick(now: now)
            _ = s.q.takeAnswers()
            checkCounts(s.q)
        }
        #expect(s.loads > 0 && s.q.counts["put"]! > 500)
    }
}
