import ChimeBroker
import Synchronization
import Testing

/// Defects found reviewing issue 5's changes, in the engine.
@Suite struct ReviewSession5BrokerTests {
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
