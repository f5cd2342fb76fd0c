import ChimeBroker
import ChimeStore
import ChimeTestSupport
import ChimeWheel
import Foundation
import Synchronization
import Testing

/// A manual clock whose next `now()` after `arm()` blocks its caller until `release()`:
/// armed before a manual fire, it holds the firing loop's thread (and with it the wheel
/// actor) while the test does other things.
final class GateClock: WheelClock, @unchecked Sendable {
    private let lock = NSLock()
    private var current: Int64
    private var armed = false
    private var blockedCount = 0
    private let gate = DispatchSemaphore(value: 0)

    init(_ start: Int64) { current = start }

    func arm() { lock.withLock { armed = true } }
    var blocked: Bool { lock.withLock { blockedCount > 0 } }
    func release() { gate.signal() }

    func now() -> Int64 {
        let block: Bool = lock.withLock {
            guard armed else { return false }
            armed = false
            blockedCount += 1
            return true
        }
        if block { gate.wait() }
        return lock.withLock { current }
    }

    func advance(by ms: Int64) { lock.withLock { current += ms } }

    func sleep(until deadline: Int64?) async {
        while !Task.isCancelled { try? await Task.sleep(for: .milliseconds(5)) }
    }
}

/// Work that runs beside a checkpoint or a deletion (a producer snapshot, a topic created
/// again, a periodic checkpoint) never claims, removes or rewrites what it should not.
@Suite(.serialized) struct RacesWithSnapshotsAndDeletionTests {
    /// A producer snapshot taken while an idempotent publish is suspended in the wheel (its
    /// sequence recorded, its scheduled message not yet in the timer log) claims a publish
    /// the logs lack. A crash then makes the producer's retry a "duplicate": never stored.
    @Test func producerSnapshotDoesNotClaimAPublishStillInFlight() async throws {
        let dir = TemporaryDirectory("chime-snapshot-race")
        let clock = GateClock(BrokerFixture.epoch)
        let options = BrokerOptions(
            directory: dir.path, durability: .never, readySegmentBytes: 1 << 20, timerSegmentBytes: 1 << 20, groupSegmentBytes: 1 << 16,
            clock: clock, firing: .manual, randomSeed: 42)
        let broker = try await Broker.open(options, logger: BrokerFixture.logger)
        try broker.createTopic("jobs", settings: TopicSettings(partitions: 1))
        let due = BrokerFixture.epoch + 5_000
        let snapshot = dir.path + "/topics/jobs/0/producers.snapshot"
        #expect(!FileManager.default.fileExists(atPath: snapshot))

        // Hold the firing loop's thread.
        clock.arm()
        let firing = Task { try await broker.fireDue() }
        while !clock.blocked { try await Task.sleep(for: .milliseconds(1)) }
        // The publish records its sequence, then waits for the wheel.
        let publish = Task {
            try await broker.publish(topic: "jobs", [.text("later", at: due)], partition: 0, producer: ProducerStamp(producerID: 7, sequence: 0))
        }
        try await Task.sleep(for: .milliseconds(300))
        // A checkpoint meanwhile (the periodic one does the same).
        let checkpoint = Task { try await broker.checkpoint() }
        for _ in 0..<200 where !FileManager.default.fileExists(atPath: snapshot) { try await Task.sleep(for: .milliseconds(5)) }
        // The crash: what is on disk now.
        let image = TemporaryDirectory("chime-snapshot-race-image")
        try FileManager.default.removeItem(atPath: image.path)
        try FileManager.default.copyItem(atPath: dir.path, toPath: image.path)
        clock.release()
        _ = try await firing.value
        _ = try await publish.value
        try await checkpoint.value
        await broker.close()

        var imageOptions = options
        imageOptions.directory = image.path
        let reopened = try await Broker.open(imageOptions, logger: BrokerFixture.logger)
        // The producer never got its answer: it retries.
        let retry = try await reopened.publish(
            topic: "jobs", [.text("later", at: due)], partition: 0, producer: ProducerStamp(producerID: 7, sequence: 0))
        #expect(retry.map(\.duplicate) == [false], "the retry was taken for a duplicate of a publish the logs do not hold")
        let m = try await reopened.join(group: "g", member: "m", topics: ["jobs"])
        clock.advance(by: 6_000)
        try await reopened.fireDue()
        let got = try await reopened.fetch(group: "g", member: m.memberID, max: 10)
        #expect(got.texts == ["later"])
        await reopened.close()
    }

    /// A topic deleted and created again (auto-create by a publish, or createTopic) while the
    /// deletion is still closing the old partitions: the deletion must not then remove the
    /// new topic's files, losing what was published to it.
    @Test func deleteTopicDoesNotRemoveATopicCreatedAgainMeanwhile() async throws {
        let s = try await Scenario.make()
        try s.broker.createTopic("t", settings: TopicSettings(partitions: 8))
        _ = try await s.broker.publish(topic: "t", (0..<8).map { .text("old\($0)", key: "k\($0)") })
        let broker = s.broker
        let deletion = Task { try await broker.deleteTopic("t") }
        // Once the name is free, a publish creates the topic again (auto-create).
        while s.broker.listTopics().contains(where: { $0.name == "t" }) { await Task.yield() }
        var stored: [PublishedMessage] = []
        // Refused while the deletion holds the name's files; tried until it is accepted (a
        // bound on attempts failed on a loaded machine: the deletion took longer).
        let giveUp = ContinuousClock.now + .seconds(60)
        while ContinuousClock.now < giveUp {
            do {
                stored = try await s.broker.publish(topic: "t", [.text("new", key: "k")])
                break
            } catch {
                try await Task.sleep(for: .milliseconds(1))
            }
        }
        try await deletion.value
        #expect(stored.count == 1, "no publish to the new topic was accepted")
        try await s.restart()
        let m = try await s.broker.join(group: "g", member: "m", topics: ["t"])
        let got = try await s.fetchAll("g", m.memberID)
        #expect(got.texts == (stored.isEmpty ? [] : ["new"]), "an acknowledged publish to the re-created topic was lost")
        await s.broker.close()
    }

    /// The periodic checkpoint works on a snapshot of every partition; one of a topic being
    /// deleted was checkpointed after it closed, writing its snapshot files back into the
    /// directory the deletion was removing: the deletion failed ("Directory not empty") and
    /// the checkpoint pass failed on the closed logs.
    @Test func aTopicDeletedDuringACheckpointIsDeletedCleanly() async throws {
        let s = try await Scenario.make()
        let topics = 40
        for i in 0..<topics {
            try s.broker.createTopic("t\(i)")
            _ = try await s.broker.publish(topic: "t\(i)", [.text("m")])
        }
        let broker = s.broker
        let done = Mutex(false)
        let checkpoints = Task { () -> [String] in
            var failures: [String] = []
            while !done.withLock({ $0 }) {
                do { try await broker.checkpoint() } catch { failures.append("\(error)") }
            }
            return failures
        }
        var failures: [String] = []
        for i in 0..<topics {
            do { try await broker.deleteTopic("t\(i)") } catch { failures.append("\(error)") }
        }
        done.withLock { $0 = true }
        let checkpointFailures = await checkpoints.value
        #expect(failures.isEmpty, "deletions: \(failures.first ?? "")")
        #expect(checkpointFailures.isEmpty, "checkpoints: \(checkpointFailures.first ?? "")")
        await s.broker.close()
    }
}
