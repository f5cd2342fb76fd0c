// BrokerBench: the engine in-process, publish → (fire) → deliver → ack with one group.
//
//   BrokerBench [--messages N] [--partitions P] [--batch B] [--durability always|never]
//               [--only immediate|scheduled|memory] [--quick] [--dir PATH]
//
//   immediate: producers publish N 100-byte messages due now, in calls of B per partition
//              (one producer task per partition, up to 4 calls in flight each), while one
//              member of one group fetches (up to 8,192 at a time) and acks every delivery.
//              Throughput = N / (time from the first publish to the last ack).
//   scheduled: the same with every message due 0-1,000 ms after its publish: each goes
//              through the timer log and the wheel (firing loop on the system clock) into
//              the ready log before it can be delivered. Also reports fire lateness seen by
//              the consumer (delivered − due).
//   memory:    a member holds M deliveries unacked (maxInFlight M): the group's tracking
//              bytes per in-flight message (from its own accounting) and the resident
//              memory growth per message.
// Timings live here, never in tests.
import ChimeBroker
import ChimeStore
import ChimeWheel
import Foundation
import Logging

let args = Array(CommandLine.arguments.dropFirst())
func option(_ name: String) -> String? {
    guard let i = args.firstIndex(of: name), i + 1 < args.count else { return nil }
    return args[i + 1]
}
if args.contains("--help") {
    print("""
    BrokerBench: in-process publish → fire → deliver → ack throughput of the engine.
      --messages N        messages per run (default 2,000,000; --quick 200,000)
      --partitions P      partitions of the topic (default 4)
      --batch B           messages per publish call (default 1,000)
      --durability D      always (group commit, the default policy) or never
      --only PART         immediate | scheduled | memory
      --dir PATH          data directory (default: a fresh one under bench/)
    """)
    exit(0)
}
let quick = args.contains("--quick")
let total = option("--messages").flatMap(Int.init) ?? (quick ? 200_000 : 2_000_000)
let partitions = option("--partitions").flatMap(Int.init) ?? 4
let batch = option("--batch").flatMap(Int.init) ?? 1_000
let durability = option("--durability").flatMap(DurabilityPolicy.init) ?? .always
let only = option("--only")
var logger = Logger(label: "bench")
logger.logLevel = .error

func freshDirectory() -> String {
    let base = option("--dir") ?? FileManager.default.currentDirectoryPath + "/bench/.broker-bench"
    let dir = base + "/run-\(getpid())-\(UUID().uuidString.prefix(6))"
    try! FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    return dir
}

func residentBytes() -> Int {
    guard let s = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return 0 }
    let fields = s.split(separator: " ")
    return (Int(fields[1]) ?? 0) * Int(sysconf(Int32(_SC_PAGESIZE)))
}

let clock = SystemWheelClock()
func seconds(since start: ContinuousClock.Instant) -> Double {
    let d = ContinuousClock.now - start
    return Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
}

struct RunResult {
    var rate: Double
    var publishSeconds: Double
    var totalSeconds: Double
    var lateness: [Int64]
    /// Acks per second while producers were still publishing, from 1 s after the start
    /// (when the first due times have passed) to the last publish: the pipeline's
    /// sustained rate without the tail of messages still waiting for their due time.
    var steadyRate: Double?
}

func run(scheduled: Bool) async throws -> RunResult {
    let dir = freshDirectory()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let options = BrokerOptions(
        directory: dir, defaultGroup: GroupSettings(maxInFlight: 50_000, maxWindow: 200_000), durability: durability)
    let broker = try await Broker.open(options, logger: logger)
    try broker.createTopic("bench", settings: TopicSettings(partitions: partitions))
    let member = try await broker.join(group: "g", member: "bench", topics: ["bench"]).memberID
    let body = [UInt8](repeating: 0x61, count: 100)
    let perPartition = total / partitions
    let start = ContinuousClock.now
    var publishSeconds = 0.0
    let consumer = Task { () -> (lateness: [Int64], progress: [(seconds: Double, acked: Int)]) in
        var acked = 0
        var progress: [(seconds: Double, acked: Int)] = []
        var lateness: [Int64] = []
        if scheduled { lateness.reserveCapacity(perPartition * partitions) }
        while acked < perPartition * partitions {
            let got = try await broker.fetch(group: "g", member: member, max: 8_192)
            if got.isEmpty {
                try await Task.sleep(for: .microseconds(200))
                continue
            }
            if scheduled { for d in got { lateness.append(d.deliveredAt - d.dueAt) } }
            try await broker.ack(group: "g", member: member, got.map(\.receipt))
            acked += got.count
            progress.append((seconds(since: start), acked))
        }
        return (lateness, progress)
    }
    try await withThrowingTaskGroup(of: Void.self) { producers in
        for p in 0..<partitions {
            producers.addTask {
                // Up to four publish calls in flight per partition: they share syncs.
                try await withThrowingTaskGroup(of: Void.self) { inflight in
                    var sent = 0
                    var running = 0
                    var rng = SplitMix64(seed: UInt64(p) + 1)
                    while sent < perPartition {
                        if running == 4 {
                            try await inflight.next()
                            running -= 1
                        }
                        let n = min(batch, perPartition - sent)
                        let now = clock.now()
                        let messages = (0..<n).map { _ in
                            OutgoingMessage(body: body, due: scheduled ? .at(now + Int64.random(in: 0...1_000, using: &rng)) : nil)
                        }
                        inflight.addTask { _ = try await broker.publish(topic: "bench", messages, partition: p) }
                        running += 1
                        sent += n
                    }
                    try await inflight.waitForAll()
                }
            }
        }
        try await producers.waitForAll()
    }
    publishSeconds = seconds(since: start)
    let (lateness, progress) = try await consumer.value
    let elapsed = seconds(since: start)
    await broker.close()
    var steady: Double? = nil
    if publishSeconds > 2, let a = progress.last(where: { $0.seconds <= 1 }), let b = progress.last(where: { $0.seconds <= publishSeconds }), b.seconds > a.seconds + 0.5 {
        steady = Double(b.acked - a.acked) / (b.seconds - a.seconds)
    }
    return RunResult(
        rate: Double(perPartition * partitions) / elapsed, publishSeconds: publishSeconds, totalSeconds: elapsed, lateness: lateness, steadyRate: steady)
}

func percentile(_ sorted: [Int64], _ p: Double) -> Int64 {
    guard !sorted.isEmpty else { return 0 }
    return sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))]
}

func fmt(_ v: Double) -> String {
    let n = Int(v.rounded())
    var s = String(n)
    var i = s.count - 3
    while i > 0 {
        s.insert(",", at: s.index(s.startIndex, offsetBy: i))
        i -= 3
    }
    return s
}

func memory() async throws {
    let dir = freshDirectory()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let held = quick ? 100_000 : 500_000
    let options = BrokerOptions(
        directory: dir, defaultGroup: GroupSettings(maxInFlight: held, maxWindow: held), durability: .never)
    let broker = try await Broker.open(options, logger: logger)
    try broker.createTopic("mem", settings: TopicSettings(partitions: 1))
    let body = [UInt8](repeating: 0x61, count: 100)
    for _ in 0..<(held / 10_000) {
        _ = try await broker.publish(topic: "mem", Array(repeating: OutgoingMessage(body: body), count: 10_000), partition: 0)
    }
    let member = try await broker.join(group: "g", member: "m", topics: ["mem"]).memberID
    // Receipts only are kept, as a consumer that acks later would.
    var receipts: [DeliveryReceipt] = []
    receipts.reserveCapacity(held)
    let before = residentBytes()
    while receipts.count < held {
        let got = try await broker.fetch(group: "g", member: member, max: 10_000)
        if got.isEmpty { break }
        receipts.append(contentsOf: got.map(\.receipt))
    }
    let after = residentBytes()
    let stats = try await broker.groupStats("g")
    let tracked = stats.partitions.reduce(0) { $0 + $1.trackedBytes }
    let inFlight = stats.partitions.reduce(0) { $0 + $1.inFlight }
    let receiptBytes = MemoryLayout<DeliveryReceipt>.stride * receipts.count
    print("memory: \(fmt(Double(inFlight))) in flight; group tracking \(fmt(Double(tracked))) B = \(tracked / max(1, inFlight)) B/message;"
        + " RSS +\(fmt(Double(after - before))) B = \((after - before) / max(1, inFlight)) B/message (incl. the bench's \(MemoryLayout<DeliveryReceipt>.stride) B receipt each, \(fmt(Double(receiptBytes))) B, and the read cache)")
    await broker.close()
}

print("BrokerBench: \(fmt(Double(total))) messages of 100 B, \(partitions) partitions, publish calls of \(batch), durability \(durability), one group, one member")
if only == nil || only == "immediate" {
    let r = try await run(scheduled: false)
    print("immediate: \(fmt(r.rate)) messages/s publish→deliver→ack (all published after \(String(format: "%.2f", r.publishSeconds)) s, all acked after \(String(format: "%.2f", r.totalSeconds)) s)")
}
if only == nil || only == "scheduled" {
    let r = try await run(scheduled: true)
    let sorted = r.lateness.sorted()
    print("scheduled: \(fmt(r.rate)) messages/s publish→fire→deliver→ack, due 0-1,000 ms after publish (all published after \(String(format: "%.2f", r.publishSeconds)) s, all acked after \(String(format: "%.2f", r.totalSeconds)) s)")
    if let steady = r.steadyRate {
        print("scheduled: \(fmt(steady)) messages/s acked while publishing (from 1 s to the last publish: the sustained rate without the final due-time tail)")
    }
    print("scheduled: delivered − due p50 \(percentile(sorted, 0.5)) ms, p99 \(percentile(sorted, 0.99)) ms, max \(sorted.last ?? 0) ms, early \(sorted.filter { $0 < 0 }.count) (earliest \(sorted.first ?? 0) ms)")
}
if only == nil || only == "memory" {
    try await memory()
}
