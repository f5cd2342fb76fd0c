import ChimeClient
import ChimeProtocol
import ChimeTestSupport
import ChimeWorker
import Foundation
import Logging
import Synchronization
import Testing

/// The pipeline engine's case: jobs routed to labels computed from two attributes
/// (component × pipeline, each with an `other` fallback), pools serving several labels,
/// labels served by several pools, and one overloaded label that does not starve the rest.
@Suite struct PipelineLabelTests {
    struct Step: ChimeJob {
        static let jobName = "pipeline-step"
        var label: String
        var n: Int
    }

    @Test func labelsFallBackToOtherForValuesNobodyPlannedFor() {
        let labels = Labels(["build", "test"], ["ios", "android"])
        #expect(labels.label(["build", "ios"]) == "build.ios")
        #expect(labels.label(["deploy", "ios"]) == "other.ios")
        #expect(labels.label(["test", nil]) == "test.other")
        #expect(labels.all.count == 9)
        #expect(Set(labels.all).contains("other.other"))
    }

    @Test func anOverloadedLabelDoesNotStarveTheOthersItsPoolsServe() async throws {
        var logger = Logger(label: "pipeline-test")
        logger.logLevel = .critical
        let dir = TemporaryDirectory("chime-pipeline")
        let server = try ServeProcess(data: dir.path + "/data", port: 0)
        defer { _ = server.stop() }
        let client = ChimeClient(ClientOptions(port: server.port, name: "pipeline"), logger: logger)
        let labels = Labels(["build", "test"], ["ios"])
        for label in labels.all {
            try await client.createTopic(
                label,
                settings: WireTopicSettings(partitions: 2, retentionMilliseconds: nil, retentionBytes: nil, maxMessageBytes: 1 << 20, maxAttempts: 5, dedupWindowMilliseconds: 0))
        }
        // build.ios is overloaded: 1,500 jobs waiting; every other label has 10.
        let busy = labels.label(["build", "ios"])
        for n in 0..<1_500 { try await client.enqueue(Step(label: busy, n: n), to: busy) }
        let quiet = labels.all.filter { $0 != busy }
        for label in quiet { for n in 0..<10 { try await client.enqueue(Step(label: label, n: n), to: label) } }

        // Two pools, many-to-many, in one group (so a label two pools serve runs each job
        // once): one serves build.*, the busy label among them; the other serves every label
        // but build.other, the busy one included.
        let order = Mutex<[String]>([])
        let worker = ChimeWorker(client: client, options: .init(gracePeriod: .seconds(1), name: "pipeline-worker"), logger: logger)
        worker.register(Step.self, retry: .never) { step, _ in
            order.withLock { $0.append(step.label) }
            try await Task.sleep(for: .milliseconds(2))
        }
        worker.addPool(WorkerPool(group: "pipeline", topics: labels.all.filter { $0.hasPrefix("build.") }, concurrency: 2, prefetch: 4))
        worker.addPool(WorkerPool(group: "pipeline", topics: labels.all.filter { $0 != "build.other" }, concurrency: 2, prefetch: 4))
        let running = Task { try await worker.run() }
        // Every quiet job is done while the busy label still has most of its backlog: a
        // starved label would wait for the busy one to drain.
        var done: [String] = []
        for _ in 0..<1_200 {
            done = order.withLock { $0 }
            if quiet.allSatisfy({ label in done.filter { $0 == label }.count >= 10 }) { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        running.cancel()
        _ = try? await running.value
        await client.close()
        for label in quiet {
            #expect(done.filter { $0 == label }.count == 10, "\(label): \(done.filter { $0 == label }.count) of its 10 jobs")
        }
        #expect(done.filter { $0 == busy }.count < 1_000, "the quiet labels finished before the busy one drained")
    }
}
