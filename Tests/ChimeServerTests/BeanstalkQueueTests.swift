@testable import ChimeServer
import ChimeTestSupport
import Testing

/// The beanstalkd listener's pure state machine: order, time, waiting reserves, and the
/// journal it writes, replayed.
@Suite struct BeanstalkQueueTests {
    private static let wall: Int64 = 1_800_000_000_000

    private func put(_ q: inout BeanstalkQueue, _ conn: UInt64, _ body: String, pri: UInt32 = 0, delay: UInt32 = 0, ttr: UInt32 = 60, now: Int64 = 0) -> UInt64 {
        let bytes = Array(body.utf8)
        guard case .reply(.inserted(let id)) = q.run(.put(priority: pri, delay: delay, ttr: ttr, bytes: UInt32(bytes.count)), body: bytes, from: conn, now: now, wallNow: Self.wall + now) else {
            Issue.record("put refused")
            return 0
        }
        return id
    }

    private func reserved(_ outcome: BeanstalkQueue.Outcome) -> UInt64? {
        if case .reply(.reserved(let id, _)) = outcome { return id }
        return nil
    }

    /// Per tube, the counts the stats show agree with the jobs in each state.
    private func checkCounts(_ q: BeanstalkQueue) {
        for (name, t) in q.tubes {
            let mine = q.jobs.values.filter { $0.tube == name }
            #expect(t.readyCount == mine.filter { $0.state == .ready }.count, "\(name) ready")
            #expect(t.reservedCount == mine.filter { $0.state == .reserved }.count, "\(name) reserved")
            #expect(t.delayedCount == mine.filter { $0.state == .delayed }.count, "\(name) delayed")
            #expect(t.buriedCount == mine.filter { $0.state == .buried }.count, "\(name) buried")
            #expect(t.urgent == mine.filter { $0.state == .ready && $0.priority < 1_024 }.count, "\(name) urgent")
        }
    }

    @Test func reservesByPriorityThenIDOverWatchedTubesSkippingPausedOnes() {
        var q = BeanstalkQueue()
        q.connect(1)
        let a = put(&q, 1, "a", pri: 5)
        _ = q.run(.use(tube: "other"), from: 1, now: 0, wallNow: Self.wall)
        let b = put(&q, 1, "b", pri: 1)
        let c = put(&q, 1, "c", pri: 5)
        q.connect(2)
        #expect(reserved(q.run(.reserve, from: 2, now: 0, wallNow: Self.wall)) == a, "only default is watched")
        _ = q.run(.watch(tube: "other"), from: 2, now: 0, wallNow: Self.wall)
        _ = q.run(.pauseTube(tube: "other", delay: 10), from: 1, now: 0, wallNow: Self.wall)
        #expect(q.run(.reserveWithTimeout(seconds: 0), from: 2, now: 1_000, wallNow: Self.wall) == .reply(.timedOut), "a paused tube gives nothing")
        q.tick(now: 10_000)
        #expect(reserved(q.run(.reserve, from: 2, now: 10_000, wallNow: Self.wall)) == b)
        #expect(reserved(q.run(.reserve, from: 2, now: 10_000, wallNow: Self.wall)) == c)
        checkCounts(q)
    }

    @Test func aDelayedJobIsReadyAtItsTimeAndNotAMillisecondBefore() {
        var q = BeanstalkQueue()
        q.connect(1)
        let id = put(&q, 1, "later", delay: 2, now: 100)
        #expect(q.nextDeadline() == 2_100)
        q.tick(now: 2_099)
        #expect(q.jobs[id]?.state == .delayed)
        q.tick(now: 2_100)
        #expect(q.jobs[id]?.state == .ready)
        checkCounts(q)
    }

    @Test func aJobWhoseTTRRunsOutIsReadyAgainWithATimeoutCounted() {
        var q = BeanstalkQueue()
        q.connect(1)
        let id = put(&q, 1, "slow", ttr: 3)
        #expect(reserved(q.run(.reserve, from: 1, now: 0, wallNow: Self.wall)) == id)
        #expect(q.run(.touch(id: id), from: 1, now: 2_000, wallNow: Self.wall) == .reply(.touched))
        q.tick(now: 4_999)
        #expect(q.jobs[id]?.state == .reserved, "touch restarted the TTR")
        q.tick(now: 5_000)
        #expect(q.jobs[id]?.state == .ready)
        #expect(q.jobs[id]?.timeouts == 1)
        q.connect(2)
        #expect(q.run(.delete(id: id), from: 2, now: 5_000, wallNow: Self.wall) == .reply(.deleted), "a ready job is anyone's to delete")
        checkCounts(q)
    }

    @Test func waitingReservesAreAnsweredInArrivalOrderTimeOutAndHearDeadlineSoon() {
        var q = BeanstalkQueue()
        for c in 1...3 as ClosedRange<UInt64> { q.connect(c) }
        #expect(q.run(.reserve, from: 2, now: 0, wallNow: Self.wall) == .wait)
        #expect(q.run(.reserveWithTimeout(seconds: 1), from: 3, now: 0, wallNow: Self.wall) == .wait)
        let first = put(&q, 1, "one")
        #expect(q.takeAnswers() == [.init(connection: 2, reply: .reserved(id: first, body: Array("one".utf8)))])
        q.tick(now: 999)
        #expect(q.takeAnswers().isEmpty)
        q.tick(now: 1_000)
        #expect(q.takeAnswers() == [.init(connection: 3, reply: .timedOut)])
        // Connection 2 holds a job with a 60 s TTR: waiting again, it hears DEADLINE_SOON
        // in the last second.
        #expect(q.run(.reserve, from: 2, now: 1_000, wallNow: Self.wall) == .wait)
        #expect(q.nextDeadline() == 59_000)
        q.tick(now: 59_000)
        #expect(q.takeAnswers() == [.init(connection: 2, reply: .deadlineSoon)])
        checkCounts(q)
    }

    @Test func aClosedConnectionsJobsAreReadyAgainAndItsTubesGo() {
        var q = BeanstalkQueue()
        q.connect(1)
        _ = q.run(.use(tube: "mine"), from: 1, now: 0, wallNow: Self.wall)
        let id = put(&q, 1, "x")
        _ = q.run(.watch(tube: "mine"), from: 1, now: 0, wallNow: Self.wall)
        #expect(reserved(q.run(.reserve, from: 1, now: 0, wallNow: Self.wall)) == id)
        q.disconnect(1, now: 10)
        #expect(q.jobs[id]?.state == .ready)
        #expect(q.tubes["mine"] != nil, "it still holds a job")
        q.connect(2)
        #expect(q.run(.delete(id: id), from: 2, now: 20, wallNow: Self.wall) == .reply(.deleted))
        #expect(q.tubes["mine"] == nil, "no jobs, users or watchers: gone")
        #expect(q.tubes["default"] != nil)
    }

    @Test func theJournalReplayedBringsBackEveryJobInItsStateWithReservedOnesReady() throws {
        var q = BeanstalkQueue()
        q.connect(1)
        var ids: [UInt64] = []
        for i in 0..<40 {
            _ = q.run(.use(tube: "t\(i % 3)"), from: 1, now: 0, wallNow: Self.wall)
            ids.append(put(&q, 1, "job \(i)", pri: UInt32(i % 7), delay: i % 5 == 0 ? 30 : 0))
        }
        for t in ["t0", "t1", "t2"] { _ = q.run(.watch(tube: t), from: 1, now: 0, wallNow: Self.wall) }
        var held: [UInt64] = []
        for n in 0..<20 {
            guard let id = reserved(q.run(.reserveWithTimeout(seconds: 0), from: 1, now: 0, wallNow: Self.wall)) else { break }
            switch n % 4 {
            case 0: _ = q.run(.delete(id: id), from: 1, now: 0, wallNow: Self.wall)
            case 1: _ = q.run(.bury(id: id, priority: 9), from: 1, now: 0, wallNow: Self.wall)
            case 2: _ = q.run(.release(id: id, priority: 3, delay: 20), from: 1, now: 0, wallNow: Self.wall)
            default: held.append(id)
            }
        }
        _ = q.run(.kick(bound: 1), from: 1, now: 0, wallNow: Self.wall)  // the used tube (t0 or t1 or t2)
        let journal = q.takeEvents()
        var back = BeanstalkQueue()
        for e in journal {
            back.replay(try BeanstalkEvent(decoding: e.encoded), now: 500, wallNow: Self.wall + 500)
        }
        #expect(Set(back.jobs.keys) == Set(q.jobs.keys))
        for j in q.jobs.values {
            let id = j.id
            let b = back.jobs[id]!
            #expect(b.state == (j.state == .reserved ? .ready : j.state), "job \(id)")
            #expect((b.priority, b.tube, b.body, b.ttr) == (j.priority, j.tube, j.body, j.ttr), "job \(id)")
            if j.state == .delayed { #expect(b.due == j.due, "job \(id): due at the same moment, counted from the wall clock") }
        }
        #expect(!held.isEmpty)
        checkCounts(back)
        back.connect(9)
        #expect(put(&back, 9, "next") == ids.last! + 1, "ids go on from the journal's highest")
    }

    @Test func aSeededRandomWorkloadKeepsEveryCountTrue() {
        var rng = SeededRandom(seed: 42)
        var q = BeanstalkQueue()
        var live: [UInt64] = [1, 2, 3, 4]
        live.forEach { q.connect($0) }
        var now: Int64 = 0
        for _ in 0..<5_000 {
            let slot = Int(rng.next() % 4)
            let conn = live[slot]
            let id = UInt64(rng.next() % 200 + 1)
            let tube = "t\(rng.next() % 3)"
            let command: BeanstalkCommand
            switch rng.next() % 14 {
            case 0, 1: command = .put(priority: UInt32(rng.next() % 2_000), delay: UInt32(rng.next() % 3), ttr: UInt32(rng.next() % 4), bytes: 1)
            case 2: command = .reserveWithTimeout(seconds: 0)
            case 3: command = .delete(id: id)
            case 4: command = .release(id: id, priority: 1, delay: UInt32(rng.next() % 2))
            case 5: command = .bury(id: id, priority: 2)
            case 6: command = .kick(bound: 3)
            case 7: command = .kickJob(id: id)
            case 8: command = .use(tube: tube)
            case 9: command = .watch(tube: tube)
            case 10: command = .ignore(tube: tube)
            case 11: command = .touch(id: id)
            case 12: command = .reserveJob(id: id)
            default: command = .pauseTube(tube: tube, delay: UInt32(rng.next() % 2))
            }
            if q.connections[conn]?.waitingUntil != nil { continue }
            _ = q.run(command, body: [1], from: conn, now: now, wallNow: Self.wall + now)
            now += Int64(rng.next() % 300)
            q.tick(now: now)
            if rng.next() % 500 == 0 {
                q.disconnect(conn, now: now)
                live[slot] = conn + 10
                q.connect(conn + 10)
            }
            _ = q.takeAnswers()
        }
        checkCounts(q)
        #expect(q.jobs.count > 0)
    }
}
