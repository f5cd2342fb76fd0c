import ChimeBroker
import ChimeStore
import Foundation
import Testing

/// A checkpoint of a partition where nothing happened writes nothing: at 10,000 partitions
/// the periodic checkpoint rewrote every snapshot and mark each second and starved the
/// broker. What it skips must still be there after a restart.
@Suite struct IdleCheckpointTests {
    /// A file's inode: an atomic rewrite (a new file renamed over it) changes it.
    static func inode(_ path: String) -> UInt64? {
        var st = stat()
        return stat(path, &st) == 0 ? UInt64(st.st_ino) : nil
    }

    @Test func checkpointsOfAPartitionWhereNothingHappenedRewriteNothing() async throws {
        let s = try await Scenario.make()
        try s.broker.createTopic("idle", settings: TopicSettings(partitions: 1))
        let t0 = s.now
        _ = try await s.broker.publish(topic: "idle", [.text("now"), .text("later", at: t0 + 60_000)], partition: 0)
        try await s.broker.checkpoint()
        let files = ["producers.snapshot", "wheel.checkpoint"].map { s.dir.path + "/topics/idle/0/" + $0 }
        let first = files.map(Self.inode)
        #expect(first.allSatisfy { $0 != nil }, "the first checkpoint wrote both")

        try await s.broker.checkpoint()
        #expect(files.map(Self.inode) == first, "nothing moved: nothing rewritten")

        _ = try await s.broker.publish(topic: "idle", [.text("soon", at: t0 + 30_000)], partition: 0)
        try await s.broker.checkpoint()
        let second = files.map(Self.inode)
        #expect(zip(first, second).allSatisfy { $0 != $1 }, "a publish: both rewritten")

        // A stop writes nothing new either, and the restart has every message.
        try await s.restart()
        #expect(files.map(Self.inode) == second, "an unchanged partition's stop rewrote nothing")
        #expect(try await s.broker.partitionStats(topic: "idle").first?.scheduled == 2)
        try await s.advance(by: 60_000)
        let m = try await s.broker.join(group: "g", member: "m", topics: ["idle"])
        let got = try await s.fetchAll("g", m.memberID)
        #expect(got.texts == ["now", "soon", "later"])
    }
}

extension IdleCheckpointTests {
    @Test func aGroupThatAckedNothingSinceRewritesNoSnapshot() async throws {
        let s = try await Scenario.make()
        try s.broker.createTopic("jobs", settings: TopicSettings(partitions: 1))
        _ = try await s.broker.publish(topic: "jobs", (0..<4).map { .text("m\($0)") }, partition: 0)
        let m = try await s.broker.join(group: "g", member: "m", topics: ["jobs"])
        let got = try await s.fetchAll("g", m.memberID)
        try await s.broker.ack(group: "g", member: m.memberID, [got[0].receipt])
        try await s.broker.checkpoint()
        let groupDirs = try FileManager.default.contentsOfDirectory(atPath: s.dir.path + "/topics/jobs/0/groups")
        #expect(groupDirs.count == 1)
        let snapshot = s.dir.path + "/topics/jobs/0/groups/" + groupDirs[0] + "/acks.snapshot"
        let first = Self.inode(snapshot)
        #expect(first != nil, "the first checkpoint after an ack writes the group's snapshot")

        try await s.broker.checkpoint()
        #expect(Self.inode(snapshot) == first, "no ack since: not rewritten")

        try await s.broker.ack(group: "g", member: m.memberID, [got[1].receipt])
        try await s.broker.checkpoint()
        let second = Self.inode(snapshot)
        #expect(second != first, "an ack: rewritten")

        try await s.restart()
        let again = try await s.broker.join(group: "g", member: "m", topics: ["jobs"])
        #expect(try await s.fetchAll("g", again.memberID).texts == ["m2", "m3"])
    }
}
