import ChimeClient
import ChimeProtocol
import ChimeWorker
import Foundation
import Logging
import ServiceLifecycle

// A nightly report, sharded over every live worker (README, "Flows"):
//
//   cron schedule (02:00 Europe/Berlin) → NightlyReport (the splitter)
//     → 64 ReportShard jobs, spread over all workers of the group "reports", at most
//       200 a second cluster-wide (the group's rate limit)
//     → ReportTotal (the reducer), once, with every shard's result.
//
//   swift run ShardedReport                 a worker, on the broker at 127.0.0.1:7420
//   swift run ShardedReport --port 7421     another broker
//   swift run ShardedReport --now           also run the report now, and exit once it is done
//
// Start as many as you like: the schedule is registered once, shards go to whichever
// worker is free, and the total is computed exactly once.

struct NightlyReport: ChimeJob {
    static let jobName = "nightly-report"
    var shards: Int
}

struct ReportShard: ChimeJob {
    static let jobName = "report-shard"
}

struct ReportTotal: ChimeJob {
    static let jobName = "report-total"
}

@main
struct ShardedReport {
    static func main() async throws {
        let args = CommandLine.arguments
        let port = args.firstIndex(of: "--port").flatMap { Int(args[$0 + 1]) } ?? 7420
        let now = args.contains("--now")
        var logger = Logger(label: "sharded-report")
        logger.logLevel = .notice
        let client = ChimeClient(ClientOptions(port: port, name: "sharded-report"), logger: logger)

        // The topic, and the group whose rate limit spreads the shards smoothly over time.
        _ = try? await client.createTopic("reports")
        _ = try await client.createGroup("reports", settings: WireGroupSettings(mode: .shared, rateLimitMillis: 200_000), ifAbsent: true)

        let finished = AsyncStream<Int>.makeStream()
        let worker = ChimeWorker(client: client, logger: logger)
        try worker.schedule(NightlyReport(shards: 64), cron: "0 2 * * *", timeZone: "Europe/Berlin", to: "reports")
        // The splitter: 64 shards, then the total. Atomic: all of them, or none.
        worker.registerResumable(NightlyReport.self) { report, _ in
            try .spawn(shards: 0..<report.shards, { _ in ReportShard() }, then: ReportTotal())
        }
        // A shard: its index is its slice of the work; its result goes to the reducer.
        worker.registerResumable(ReportShard.self) { _, context in
            let shard = context.flow?.index ?? 0
            let rows = (shard * 1_000..<(shard + 1) * 1_000).reduce(0) { $0 + $1 % 7 }
            return .done(result: "\(rows)")
        }
        // The reducer: once, with every shard's outcome.
        worker.register(ReportTotal.self) { _, context in
            let outcomes = try await context.childOutcomes()
            let total = outcomes.compactMap { Int($0.detail) }.reduce(0, +)
            let failed = outcomes.filter { !$0.succeeded }.count
            print("report \(context.continues ?? "?"): \(outcomes.count) shards, \(failed) failed, total \(total)")
            finished.continuation.yield(total)
        }
        worker.addPool(WorkerPool(group: "reports", topics: ["reports"], concurrency: 8))

        let group = ServiceGroup(
            configuration: .init(services: [.init(service: client), .init(service: worker)], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        if now {
            try await client.enqueue(NightlyReport(shards: 64), to: "reports")
            let running = Task { try await group.run() }
            for await _ in finished.stream { break }
            await group.triggerGracefulShutdown()
            try await running.value
        } else {
            print("working on topic reports (group reports); the report runs at 02:00 Europe/Berlin. Ctrl-C to stop.")
            try await group.run()
        }
    }
}
