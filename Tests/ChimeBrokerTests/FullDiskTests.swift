import ChimeBroker
import ChimeStore
import Foundation
import Glibc
import Testing

/// A disk that can be full (every write fails with ENOSPC) or broken (every fdatasync
/// fails with EIO), switched by the test, for the broker's logs and meta.json.
final class DiskFaults: @unchecked Sendable {
    private let lock = NSLock()
    private var _full = false
    private var _syncFails = false
    var full: Bool { get { lock.withLock { _full } } set { lock.withLock { _full = newValue } } }
    var syncFails: Bool { get { lock.withLock { _syncFails } } set { lock.withLock { _syncFails = newValue } } }

    var calls: FileSystemCalls {
        FileSystemCalls(
            pwritev: { fd, iov, count, offset in
                self.full ? -Int(ENOSPC) : FileSystemCalls.system.pwritev(fd, iov, count, offset)
            },
            fdatasync: { fd in self.syncFails ? -EIO : FileSystemCalls.system.fdatasync(fd) },
            ftruncate: { fd, length in FileSystemCalls.system.ftruncate(fd, length) })
    }
}

/// A full disk and failed syncs lose nothing acknowledged and leave no state that a later
/// start would misread (issue 14, faults 1, 2, 3 and 5).
@Suite struct FullDiskTests {
    static let settings = GroupSettings(leaseMilliseconds: 60_000, sessionTimeoutMilliseconds: 1_000_000)

    @Test func aGroupWhoseCreationHitAFullDiskLeavesNothingAndALaterGroupMissesNothing() async throws {
        let faults = DiskFaults()
        let s = try await Scenario.make { $0.fileSystem = faults.calls }
        try s.broker.createTopic("jobs", settings: TopicSettings(partitions: 1))
        _ = try await s.broker.publish(topic: "jobs", [.text("m0"), .text("m1")])
        faults.full = true
        await expectBrokerError(.storage) { try await s.broker.join(group: "g1", member: "m", topics: ["jobs"], settings: Self.settings) }
        faults.full = false
        await expectBrokerError(.unknownGroup) { try await s.broker.groupStats("g1") }

        try await s.restart()
        let m = try await s.broker.join(group: "g2", member: "m", topics: ["jobs"], settings: Self.settings)
        #expect(try await s.fetchAll("g2", m.memberID).texts == ["m0", "m1"], "the group that took the free id starts at the first message")
    }

    @Test func aGroupDirectoryThatMetaJsonDoesNotNameIsNotAdopted() async throws {
        let s = try await Scenario.make()
        try s.broker.createTopic("jobs", settings: TopicSettings(partitions: 1))
        _ = try await s.broker.publish(topic: "jobs", (0..<4).map { .text("m\($0)") })
        let m1 = try await s.broker.join(group: "g1", member: "m", topics: ["jobs"], settings: Self.settings)
        let got = try await s.fetchAll("g1", m1.memberID)
        _ = try await s.broker.ack(group: "g1", member: m1.memberID, [got[0].receipt, got[1].receipt])
        // What an earlier version left after a group's meta.json write failed: its
        // directory, acks and all, and meta.json without it, its id free again.
        try await s.restart {
            let path = s.dir.path + "/meta.json"
            var meta = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as! [String: Any]
            meta["groups"] = []
            meta["nextGroupID"] = 1
            try JSONSerialization.data(withJSONObject: meta).write(to: URL(fileURLWithPath: path))
        }
        #expect(!FileManager.default.fileExists(atPath: s.dir.path + "/topics/jobs/0/groups/g1"), "removed at opening")
        let m2 = try await s.broker.join(group: "g2", member: "m", topics: ["jobs"], settings: Self.settings)
        #expect(try await s.fetchAll("g2", m2.memberID).texts == ["m0", "m1", "m2", "m3"], "g2 has id 1 and none of g1's acks")
    }

    @Test func anAckTheJournalRefusedChangesNothing() async throws {
        let faults = DiskFaults()
        let s = try await Scenario.make { $0.fileSystem = faults.calls }
        try s.broker.createTopic("jobs", settings: TopicSettings(partitions: 1))
        _ = try await s.broker.publish(topic: "jobs", [.text("m0"), .text("m1")])
        let m = try await s.broker.join(group: "g", member: "m", topics: ["jobs"], settings: Self.settings)
        let got = try await s.fetchAll("g", m.memberID)
        faults.full = true
        await expectBrokerError(.storage) { try await s.broker.ack(group: "g", member: m.memberID, [got[0].receipt]) }
        faults.full = false
        #expect(try await s.broker.groupStats("g").partitions.map(\.committed) == [0], "a refused ack moved nothing")
        try await s.broker.checkpoint()

        let retried = try await s.broker.ack(group: "g", member: m.memberID, [got[0].receipt])
        #expect(retried.allSatisfy { $0 == nil }, "the lease is still there to ack")
        #expect(try await s.broker.groupStats("g").partitions.map(\.committed) == [1])
        try await s.restart()
        let again = try await s.broker.join(group: "g", member: "m", topics: ["jobs"], settings: Self.settings)
        #expect(try await s.fetchAll("g", again.memberID).texts == ["m1"])
    }

    @Test func deletingATopicWorksOnAFullDiskAndTheNextStartFinishesIt() async throws {
        let faults = DiskFaults()
        let s = try await Scenario.make { $0.fileSystem = faults.calls }
        try s.broker.createTopic("big", settings: TopicSettings(partitions: 2))
        try s.broker.createTopic("kept", settings: TopicSettings(partitions: 1))
        _ = try await s.broker.publish(topic: "big", (0..<100).map { .text("b\($0)") })
        _ = try await s.broker.publish(topic: "kept", [.text("k0")])
        faults.full = true
        await expectBrokerError(.storage) { try await s.broker.publish(topic: "kept", [.text("k1")]) }
        // meta.json cannot be rewritten on this disk: the deletion is decided by moving the
        // directory aside, and its files go.
        try await s.broker.deleteTopic("big")
        #expect(s.broker.listTopics().map(\.name) == ["kept"])
        #expect(!FileManager.default.fileExists(atPath: s.dir.path + "/topics/big"))
        let aside = try FileManager.default.subpathsOfDirectory(atPath: s.dir.path + "/deleting")
        #expect(aside.count == 1, "only the emptied directory is left: \(aside)")

        faults.full = false
        try await s.restart()
        #expect(s.broker.listTopics().map(\.name) == ["kept"], "the start finished the deletion")
        #expect(try FileManager.default.contentsOfDirectory(atPath: s.dir.path + "/deleting").isEmpty)
        let meta = try String(contentsOfFile: s.dir.path + "/meta.json", encoding: .utf8)
        #expect(!meta.contains("\"big\""), "meta.json rewritten without it")
        try s.broker.createTopic("big", settings: TopicSettings(partitions: 1))
        let m = try await s.broker.join(group: "g", member: "m", topics: ["big", "kept"], settings: Self.settings)
        #expect(try await s.fetchAll("g", m.memberID).texts == ["k0"], "the topic created again is empty")
    }

    @Test func deletingATopicLeavesNothingAside() async throws {
        let s = try await Scenario.make()
        try s.broker.createTopic("gone", settings: TopicSettings(partitions: 2))
        _ = try await s.broker.publish(topic: "gone", [.text("x")])
        try await s.broker.deleteTopic("gone")
        #expect(try FileManager.default.contentsOfDirectory(atPath: s.dir.path + "/deleting").isEmpty)
        #expect(try FileManager.default.contentsOfDirectory(atPath: s.dir.path + "/topics").isEmpty)
        try await s.restart()
        #expect(s.broker.listTopics().isEmpty)
    }

    @Test func keylessPublishesSkipAPartitionWhoseSyncFailed() async throws {
        let faults = DiskFaults()
        let s = try await Scenario.make {
            $0.fileSystem = faults.calls
            $0.durability = .always
        }
        try s.broker.createTopic("jobs", settings: TopicSettings(partitions: 3))
        faults.syncFails = true
        await expectBrokerError(.storage) { try await s.broker.publish(topic: "jobs", [.text("lost")], partition: 1) }
        faults.syncFails = false
        var partitions: Set<Int> = []
        for n in 0..<12 {
            let r = try await s.broker.publish(topic: "jobs", [.text("k\(n)")])
            partitions.insert(r[0].partition)
        }
        #expect(partitions == [0, 2], "every keyless publish went through, none to the failed partition")
        await expectBrokerError(.storage) { try await s.broker.publish(topic: "jobs", [.text("named")], partition: 1) }
    }
}

extension FullDiskTests {
    @Test func aStopThatCannotSaveItsStateSaysSoAndNothingAcknowledgedIsLost() async throws {
        let faults = DiskFaults()
        let s = try await Scenario.make {
            $0.fileSystem = faults.calls
            $0.durability = .always
        }
        try s.broker.createTopic("jobs", settings: TopicSettings(partitions: 1))
        _ = try await s.broker.publish(topic: "jobs", [.text("now"), .text("later", at: s.now + 5_000)])
        #expect(s.broker.failedPartitions.isEmpty)
        faults.syncFails = true
        await expectBrokerError(.storage) { try await s.broker.publish(topic: "jobs", [.text("refused", at: s.now + 6_000)]) }
        #expect(s.broker.failedPartitions == ["jobs/0"], "the partition whose log failed is reported")
        let problems = await s.broker.close()
        #expect(!problems.isEmpty, "the wheel checkpoint could not be written: the stop says so")
        #expect(problems.allSatisfy { $0.hasPrefix("jobs/0") }, "\(problems)")

        faults.syncFails = false
        try await s.restart()
        #expect(s.broker.failedPartitions.isEmpty, "a restart reopens the logs")
        try await s.advance(by: 5_000)
        let m = try await s.broker.join(group: "g", member: "m", topics: ["jobs"], settings: Self.settings)
        let texts = try await s.fetchAll("g", m.memberID).texts
        #expect(texts.starts(with: ["now", "later"]), "everything acknowledged is there: \(texts)")
    }
}

extension FullDiskTests {
    /// A dead letter is a move: under `interval` the copy must be on disk before the group
    /// acks the original, whatever a client's publish may skip.
    @Test func aDeadLetterIsSyncedBeforeItsOriginalIsAckedUnderInterval() async throws {
        let counter = AcknowledgementSyncTests.SyncCounter()
        let s = try await Scenario.make {
            $0.durability = .interval(milliseconds: 3_600_000)
            $0.fileSystem = counter.calls
        }
        try s.broker.createTopic("jobs", settings: TopicSettings(partitions: 1))
        _ = try await s.broker.publish(topic: "jobs", [.text("bad")])
        let m = try await s.broker.join(group: "g", member: "m", topics: ["jobs"], settings: Self.settings)
        let got = try await s.fetchAll("g", m.memberID)
        let before = counter.count.withLock { $0 }
        _ = try await s.broker.term(group: "g", member: m.memberID, [got[0].receipt], reason: "poison")
        #expect(counter.count.withLock { $0 } > before, "the dead-letter topic's copy was synced")
    }
}
