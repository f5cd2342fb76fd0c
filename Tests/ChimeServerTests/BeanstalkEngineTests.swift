import ChimeBroker
@testable import ChimeServer
import ChimeTestSupport
import Logging
import Testing

/// The beanstalkd engine on a real broker: delayed jobs kept cold come back when their
/// wake-ups fire in the broker's wheel, and a restart starts from the snapshot.
@Suite struct BeanstalkEngineTests {
    private static func open(_ dir: TemporaryDirectory) async throws -> (Broker, BeanstalkEngine) {
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let broker = try await Broker.open(BrokerOptions(directory: dir.path, durability: .never), logger: logger)
        return (broker, try await BeanstalkEngine.open(broker: broker, logger: logger))
    }

    private static func send(_ engine: BeanstalkEngine, _ conn: UInt64, _ command: BeanstalkCommand, _ body: String = "") async -> BeanstalkReply {
        let progress = await engine.execute(conn, [.command(command, body: Array(body.utf8))][...])
        // As the listener does: the reply is given once what it depends on is synced.
        let written = await engine.written(after: progress.syncAfter, upTo: progress.syncUpTo)
        if progress.then == .wait { return await engine.answer(conn) }
        return written ? progress.replies.first! : .internalError
    }

    private static func put(_ engine: BeanstalkEngine, _ conn: UInt64, _ body: String, delay: UInt32) async -> UInt64 {
        guard case .inserted(let id) = await send(engine, conn, .put(priority: 1, delay: delay, ttr: 60, bytes: UInt32(body.utf8.count)), body) else {
            Issue.record("put refused")
            return 0
        }
        return id
    }

    @Test func aColdJobComesBackWhenItsWakeUpFiresInTheBrokersWheel() async throws {
        let dir = TemporaryDirectory("chime-beanstalk-engine")
        let (broker, engine) = try await Self.open(dir)
        let conn = await engine.connect()
        let later = await Self.put(engine, conn, "later", delay: 3_600)
        #expect(await engine.coldCount() == 1, "a delayed job is cold")
        let putAt = ContinuousClock.now
        let soon = await Self.put(engine, conn, "soon", delay: 3)
        let coldNow = await engine.coldCount()
        // Its second's wake-up fires 1–2 s before it is due: on a loaded machine it may have.
        if ContinuousClock.now - putAt < .milliseconds(900) { #expect(coldNow == 2, "due past its second's wake-up: cold too") }
        let got = await Self.send(engine, conn, .reserveWithTimeout(seconds: 120))
        #expect(got == .reserved(id: soon, body: Array("soon".utf8)), "its wake-up fired and a waiting reserve got it")
        #expect(await engine.coldCount() == 1)
        // The other is read back from the journal when a command needs it.
        #expect(await Self.send(engine, conn, .peek(id: later)) == .found(id: later, body: Array("later".utf8)))
        #expect(await engine.coldCount() == 1, "read back to be shown, then out of memory again")
        await engine.close()
        _ = await broker.close()
    }

    @Test func aColdJobWhoseWakeUpWasLostComesBackAfterARestart() async throws {
        let dir = TemporaryDirectory("chime-beanstalk-lost-wakeup")
        var (broker, engine) = try await Self.open(dir)
        await engine.close()
        // A journal that says job 5 is cold (its put: kind 6), with no wake-up scheduled for
        // it: as a write that failed after later batches counted on its second leaves it.
        let readyAt = BeanstalkEngine.wallNow() + 4_000
        let put = BeanstalkEvent.put(id: 5, tube: "default", priority: 1, ttr: 60, readyAt: readyAt, delay: 4, body: Array("lost".utf8), wakeup: true)
        _ = try await broker.publish(topic: BeanstalkEngine.topic, [OutgoingMessage(body: BeanstalkEvent.ids(upTo: 10_000).encoded), OutgoingMessage(body: put.encoded)], partition: 0)
        _ = await broker.close()

        (broker, engine) = try await Self.open(dir)
        let conn = await engine.connect()
        let got = await Self.send(engine, conn, .reserveWithTimeout(seconds: 60))
        #expect(got == .reserved(id: 5, body: Array("lost".utf8)), "the restart asked for its second's wake-up again")
        await engine.close()
        _ = await broker.close()
    }

    @Test func coldJobsScatteredThroughTheJournalAreEachReadBackThroughTheIndex() async throws {
        let dir = TemporaryDirectory("chime-beanstalk-scattered")
        let (broker, engine) = try await Self.open(dir)
        let conn = await engine.connect()
        // Cold jobs between ready ones, due in many seconds: their puts lie far apart in
        // the journal, and a kick reads them back soonest first.
        var cold: [UInt64: String] = [:]
        for i in 0..<600 {
            if i % 7 == 0 {
                cold[await Self.put(engine, conn, "cold \(i)", delay: UInt32(600 + (i * 37) % 500))] = "cold \(i)"
            } else {
                _ = await Self.put(engine, conn, "ready \(i)", delay: 0)
            }
        }
        #expect(await engine.coldCount() == cold.count)
        for (id, body) in cold.shuffled().prefix(20) {
            #expect(await Self.send(engine, conn, .peek(id: id)) == .found(id: id, body: Array(body.utf8)))
        }
        #expect(await Self.send(engine, conn, .kick(bound: 1_000)) == .kicked(count: cold.count))
        #expect(await engine.coldCount() == 0)
        for (id, body) in cold {
            #expect(await Self.send(engine, conn, .peek(id: id)) == .found(id: id, body: Array(body.utf8)), "job \(id)")
        }
        await engine.close()
        _ = await broker.close()
    }

    @Test func aWakeUpOfTheFirstColdBuildsStillBringsItsJobBack() async throws {
        let dir = TemporaryDirectory("chime-beanstalk-old-wakeup")
        let (broker, engine) = try await Self.open(dir)
        let conn = await engine.connect()
        let id = await Self.put(engine, conn, "old", delay: 3_600)
        #expect(await engine.coldCount() == 1)
        // The first cold builds' wake-up: the put record itself, due now.
        let put = BeanstalkEvent.put(id: id, tube: "default", priority: 1, ttr: 60, readyAt: 0, delay: 0, body: Array("old".utf8), wakeup: true)
        _ = try await broker.publish(topic: BeanstalkEngine.wakeupTopic, [OutgoingMessage(body: put.encoded, due: .at(BeanstalkEngine.wallNow()))], partition: 0)
        let got = await Self.send(engine, conn, .reserveWithTimeout(seconds: 60))
        #expect(got == .reserved(id: id, body: Array("old".utf8)), "made whole and ready, as its record says")
        #expect(await engine.coldCount() == 0)
        await engine.close()
        _ = await broker.close()
    }

    @Test func aSnapshotTakenWhileThePutsGoOnMatchesTheJournal() async throws {
        let dir = TemporaryDirectory("chime-beanstalk-busy")
        var (broker, engine) = try await Self.open(dir)
        let busy = engine
        let writers = try await withThrowingTaskGroup(of: [UInt64].self) { group in
            for w in 0..<4 {
                group.addTask {
                    let conn = await busy.connect()
                    var ids: [UInt64] = []
                    for i in 0..<400 { ids.append(await Self.put(busy, conn, "w\(w)-\(i)", delay: i % 2 == 0 ? 3_600 : 0)) }
                    return ids
                }
            }
            group.addTask {
                for _ in 0..<20 {
                    await busy.snapshotForTests()
                    try await Task.sleep(for: .milliseconds(5))
                }
                return []
            }
            return try await group.reduce(into: []) { $0 += $1 }
        }
        #expect(await engine.snapshotsWritten > 0)
        await engine.abandonForTests()
        _ = await broker.close()

        (broker, engine) = try await Self.open(dir)
        let conn = await engine.connect()
        let (cold, all) = (await engine.coldCount(), await engine.jobCount())
        #expect(cold == 800 && all == 1_600, "every answered put is back, the delayed ones cold")
        for id in writers.shuffled().prefix(50) {
            guard case .found(let got, _) = await Self.send(engine, conn, .peek(id: id)) else {
                Issue.record("job \(id) is gone")
                continue
            }
            #expect(got == id)
        }
        await engine.close()
        _ = await broker.close()
    }

    @Test func aRestartReadsTheSnapshotNotThePutsOfTheColdJobs() async throws {
        let dir = TemporaryDirectory("chime-beanstalk-snapshot")
        var (broker, engine) = try await Self.open(dir)
        var conn = await engine.connect()
        var ids: [UInt64] = []
        for i in 0..<300 { ids.append(await Self.put(engine, conn, "job \(i)", delay: 3_600)) }
        let ready = await Self.put(engine, conn, "ready", delay: 0)
        #expect(await Self.send(engine, conn, .delete(id: ids[7])) == .deleted)
        await engine.close()
        _ = await broker.close()

        (broker, engine) = try await Self.open(dir)
        conn = await engine.connect()
        #expect(await engine.coldCount() == 299)
        let replayed = await engine.recordsReplayed
        #expect(replayed > 0 && replayed <= Int(BeanstalkJournalIndex.everyPuts) + 2, "read from the indexed put at or before the job held whole, not from the start: \(replayed)")
        #expect(await Self.send(engine, conn, .peek(id: ids[250])) == .found(id: ids[250], body: Array("job 250".utf8)))
        #expect(await Self.send(engine, conn, .peek(id: ids[7])) == .notFound)
        #expect(await Self.send(engine, conn, .peekReady) == .found(id: ready, body: Array("ready".utf8)))
        let next = await Self.put(engine, conn, "next", delay: 3_600)
        #expect(next > ready)
        // Stopped without its snapshot (as by SIGKILL): the journal after the last one is read.
        #expect(await Self.send(engine, conn, .delete(id: ids[8])) == .deleted)
        await engine.abandonForTests()
        _ = await broker.close()

        (broker, engine) = try await Self.open(dir)
        conn = await engine.connect()
        #expect(await engine.coldCount() == 299, "299 + 1 put − 1 deleted; the one a peek read is cold as before")
        #expect(await Self.send(engine, conn, .peek(id: ids[8])) == .notFound)
        #expect(await Self.send(engine, conn, .peek(id: next)) == .found(id: next, body: Array("next".utf8)))
        guard case .ok(let stats) = await Self.send(engine, conn, .statsTube(tube: "default")) else { Issue.record("no stats"); return }
        #expect(stats.contains("current-jobs-delayed: 299\n") && stats.contains("current-jobs-ready: 1\n"), "\(stats)")
        await engine.close()
        _ = await broker.close()
    }
}
