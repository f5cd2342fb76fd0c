import ChimeBroker
import ChimeStore
import Foundation
import Glibc
import Synchronization
import Testing

/// What a publish, a cancel and an ack wait for before they are acknowledged follows the
/// durability policy: an fdatasync under `always`; none on the caller's thread under
/// `interval` (its clock syncs; an ack waits for a shared sync of the messages it acks) and
/// `never` (issue 14: `Partition.publish` ran one per call on the partition's actor under
/// every policy).
@Suite struct AcknowledgementSyncTests {
    /// The fdatasyncs the broker's logs asked for.
    final class SyncCounter: Sendable {
        let count = Mutex(0)
        var calls: FileSystemCalls {
            FileSystemCalls(
                pwritev: { FileSystemCalls.system.pwritev($0, $1, $2, $3) },
                fdatasync: { fd in
                    self.count.withLock { $0 += 1 }
                    return FileSystemCalls.system.fdatasync(fd)
                },
                ftruncate: { FileSystemCalls.system.ftruncate($0, $1) })
        }
    }

    /// Syncs counted over publishes (now and later) and a cancel, then over acks of what
    /// was published, after the topic and the group exist.
    static func syncs(under policy: DurabilityPolicy) async throws -> (publishing: Int, acking: Int) {
        let counter = SyncCounter()
        let s = try await Scenario.make {
            $0.durability = policy
            $0.fileSystem = counter.calls
        }
        try s.broker.createTopic("jobs", settings: TopicSettings(partitions: 1))
        let m = try await s.broker.join(group: "g", member: "m", topics: ["jobs"])
        let before = counter.count.withLock { $0 }
        for n in 0..<10 { _ = try await s.broker.publish(topic: "jobs", [.text("now \(n)")], partition: 0) }
        let later = try await s.broker.publish(topic: "jobs", [.text("later", at: s.now + 60_000), .text("later 2", at: s.now + 60_000)], partition: 0)
        try await s.broker.cancel(later[0].id!)
        let published = counter.count.withLock { $0 }
        let got = try await s.fetchAll("g", m.memberID)
        for d in got { _ = try await s.broker.ack(group: "g", member: m.memberID, [d.receipt]) }
        let acked = counter.count.withLock { $0 }
        await s.broker.close()
        return (published - before, acked - published)
    }

    @Test func alwaysSyncsBeforeEachAcknowledgement() async throws {
        let syncs = try await Self.syncs(under: .always)
        #expect(syncs.publishing >= 12, "10 publishes, 1 scheduled publish, 1 cancel")
        #expect(syncs.acking >= 10, "10 acks")
    }

    @Test func intervalAcknowledgesPublishesWithoutASyncAndAcksOnceTheirMessagesAreOnDisk() async throws {
        let syncs = try await Self.syncs(under: .interval(milliseconds: 3_600_000))
        #expect(syncs.publishing == 0, "the interval clock syncs, not each call")
        // An ack must not reach the disk before its message (a power loss would leave the
        // group past the log's end): the first ack waits for one shared sync of the ready
        // log, which covers the other nine.
        #expect(syncs.acking == 1)
    }

    @Test func neverSyncs() async throws {
        let syncs = try await Self.syncs(under: .never)
        #expect(syncs.publishing == 0 && syncs.acking == 0)
    }
}
