import ChimeClient
import ChimeProtocol
import ChimeSchedule
import ChimeTestSupport
import ChimeWorker
import Foundation
import Logging
import Synchronization
import Testing

/// A job registered with a schedule: every worker of a fleet asks for it when it starts,
/// the broker keeps one schedule, and each occurrence runs once in the pool's group.
@Suite struct WorkerScheduleTests {
    struct Report: ChimeJob {
        static let jobName = "nightly-report"
        var region: String
    }

    @Test func tenWorkersRegisteringOneScheduleMakeOneAndEachOccurrenceRunsOnce() async throws {
        let server = try WorkerTestServer("chime-worker-schedule")
        defer { server.stop() }
        let admin = server.client("admin")
        try await admin.createTopic("reports", settings: topicSettings(partitions: 2))
        let runs = Mutex<[String]>([])
        var workers: [Task<Void, any Error>] = []
        var clients: [ChimeClient] = []
        for n in 0..<10 {
            let client = server.client("worker-\(n)")
            clients.append(client)
            let worker = ChimeWorker(client: client, options: .init(gracePeriod: .seconds(1), name: "worker-\(n)"), logger: testLogger)
            worker.register(Report.self, retry: .never) { job, context in
                #expect(job.region == "eu")
                runs.withLock { $0.append(context.headers.first { $0.name == "chime-occurrence" }.map { String(decoding: $0.value, as: UTF8.self) } ?? "?") }
            }
            try worker.schedule(Report(region: "eu"), every: .seconds(1), to: "reports", options: ScheduleOptions(misfire: .all))
            worker.addPool(WorkerPool(group: "reporters", topics: ["reports"], concurrency: 2))
            workers.append(Task { try await worker.run() })
        }
        #expect(await eventually { runs.withLock { $0.count } >= 3 })
        for w in workers { w.cancel() }
        for w in workers { _ = try? await w.value }
        for c in clients { await c.close() }
        let schedules = try await admin.schedules()
        #expect(schedules.count == 1)
        #expect(schedules.first?.schedule.name == "nightly-report" && schedules.first?.schedule.revision == 1, "ten identical registrations make one revision")
        let occurrences = runs.withLock { $0 }
        #expect(Set(occurrences).count == occurrences.count, "an occurrence ran twice: \(occurrences.sorted())")
        #expect(!occurrences.contains("?"))
        // Whole seconds one after another: none skipped between the first and the last.
        let seconds = occurrences.compactMap { Int64($0) }.map { $0 / 1_000 }.sorted()
        #expect(seconds.last! - seconds.first! == Int64(seconds.count - 1), "\(seconds)")
        await admin.close()
    }

    @Test func aBadCronSpecIsRefusedWhenRegistered() throws {
        let worker = ChimeWorker(client: ChimeClient(ClientOptions(port: 1, name: "unused"), logger: testLogger), logger: testLogger)
        #expect(throws: ScheduleSpecError.self) { try worker.schedule(Report(region: "eu"), cron: "0 25 * * *", to: "reports") }
        #expect(throws: ScheduleSpecError.self) { try worker.schedule(Report(region: "eu"), cron: "@daily", timeZone: "Mars/Olympus", to: "reports") }
    }
}
