// WheelBench: in-process throughput of the timing wheel over a real timer log.
//
//   WheelBench [--dir PATH] [--count N] [--quick]
//
// For each geometry (64 and 256 slots per level) and durability (never, always):
//   schedule: N messages with 100-byte bodies and random delays of 1 s – 30 days, in
//             calls of 1,000, into a fresh timer log: schedules/s.
//   fire:     N messages due within the same second, then one advance past that second
//             in simulated time: the wheel's own work for the whole burst, cascades included.
//   --pending N: hold N scheduled messages (delays 1 s – 30 days): resident memory above
//             the empty process, then the time to reopen with a checkpoint (clean stop)
//             and without one (full replay, the worst case after a crash). Only this runs.
//   realtime: the FiringLoop on the system clock with N messages due within one second a
//             few seconds ahead: lateness (hand-over time − due time) of every message,
//             and when the last one was handed over relative to the end of that second.
// Timings live here, never in tests.
import ChimeStore
import ChimeWheel
import Foundation
import Logging

/// Lateness of each hand-over on the system clock.
final class LatenessDestination: FireDestination, @unchecked Sendable {
    let clock = SystemWheelClock()
    var lateness: [Int64] = []
    var early = 0
    var lastHandOver: Int64 = 0
    var sequence: UInt64 = 0
    /// Hand-overs 10 ms or more late: (due time, lateness), to find what stalls the loop.
    var stalls: [(due: Int64, late: Int64)] = []
    var lastFireSequence: UInt64? { sequence == 0 ? nil : sequence }
    func deliver(_ messages: [FiredMessage], fireSequence: UInt64) throws {
        let now = clock.now()
        if let first = messages.first, now - first.message.dueAt >= 10 { stalls.append((first.message.dueAt, now - first.message.dueAt)) }
        for m in messages {
            let late = now - m.message.dueAt
            if late < 0 { early += 1 }
            lateness.append(late)
        }
        lastHandOver = now
        sequence = fireSequence
    }
}

final class CountingDestination: FireDestination {
    var count = 0
    var sequence: UInt64 = 0
    var lastFireSequence: UInt64? { sequence == 0 ? nil : sequence }
    func deliver(_ messages: [FiredMessage], fireSequence: UInt64) throws {
        count += messages.count
        sequence = fireSequence
    }
}

let args = Array(CommandLine.arguments.dropFirst())
@MainActor func option(_ name: String) -> String? {
    guard let i = args.firstIndex(of: name), i + 1 < args.count else { return nil }
    return args[i + 1]
}
let quick = args.contains("--quick")
let count = Int(option("--count") ?? "") ?? (quick ? 100_000 : 1_000_000)
let base = option("--dir") ?? FileManager.default.currentDirectoryPath
var logger = Logger(label: "wheelbench")
logger.logLevel = .error
let epoch: Int64 = 1_800_000_000_000
let body = [UInt8](repeating: 0x61, count: 100)

func fresh(_ name: String) -> String {
    let path = base + "/.wheelbench-\(getpid())-\(name)"
    try? FileManager.default.removeItem(atPath: path)
    return path
}

func seconds(_ d: Duration) -> Double { Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18 }

/// Resident set size of this process, kB: (total, anonymous).
func residentKB() -> (total: Int, anonymous: Int) {
    let text = (try? String(contentsOfFile: "/proc/self/status", encoding: .utf8)) ?? ""
    func field(_ name: String) -> Int {
        guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix(name) }) else { return -1 }
        return Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "") ?? -1
    }
    return (field("VmRSS:"), field("RssAnon:"))
}

if let pendingText = option("--pending"), let pending = Int(pendingText) {
    let before = residentKB()
    let dir = fresh("pending")
    var log = try TimerLog.open(directory: dir + "/timer", configuration: LogConfiguration(durability: .never), logger: logger)
    let dest = CountingDestination()
    var wheel = try TimingWheel(log: log, checkpointPath: dir + "/wheel.checkpoint", destination: dest, logger: logger)
    try wheel.advance(to: epoch)
    var rng = SplitMix64(seed: 9)
    let clock = ContinuousClock()
    let t0 = clock.now
    var batch: [ScheduledMessage] = []
    batch.reserveCapacity(1000)
    for k in 0..<(pending / 1000) {
        batch.removeAll(keepingCapacity: true)
        for _ in 0..<1000 {
            batch.append(ScheduledMessage(dueAt: epoch + 1000 + Int64(rng.next() % (30 * 86_400_000)), publishedAt: epoch, body: body))
        }
        try wheel.schedule(batch)
        if k % 1000 == 999 { print("  scheduled \((k + 1) * 1000)") }
    }
    let scheduleSeconds = seconds(clock.now - t0)
    let after = residentKB()
    print("pending: \(wheel.pendingCount) messages scheduled in \(String(format: "%.1f", scheduleSeconds)) s; wheel state \(wheel.stateBytes) bytes; timer log \(log.totalBytes / 1_000_000) MB on disk")
    print("resident: empty \(before.total / 1024) MiB (anonymous \(before.anonymous / 1024) MiB), holding \(pending): \(after.total / 1024) MiB (anonymous \(after.anonymous / 1024) MiB); growth \((after.total - before.total) / 1024) MiB, anonymous \((after.anonymous - before.anonymous) / 1024) MiB")
    try wheel.checkpoint()
    try log.close()

    let t1 = clock.now
    log = try TimerLog.open(directory: dir + "/timer", configuration: LogConfiguration(durability: .never), logger: logger)
    wheel = try TimingWheel(log: log, checkpointPath: dir + "/wheel.checkpoint", destination: dest, logger: logger)
    let clean = seconds(clock.now - t1)
    precondition(wheel.pendingCount == pending && wheel.recovery.fromCheckpoint)
    try log.close()
    try FileManager.default.removeItem(atPath: dir + "/wheel.checkpoint")
    try? FileManager.default.removeItem(atPath: dir + "/timer/" + "00000000000000000000.index")
    let t2 = clock.now
    log = try TimerLog.open(directory: dir + "/timer", configuration: LogConfiguration(durability: .never), logger: logger)
    wheel = try TimingWheel(log: log, checkpointPath: dir + "/wheel.checkpoint", destination: dest, logger: logger)
    let full = seconds(clock.now - t2)
    precondition(wheel.pendingCount == pending && !wheel.recovery.fromCheckpoint)
    print(String(format: "recovery with %d pending: %.3f s from the checkpoint (clean stop), %.3f s replaying the whole log (%d entries, no checkpoint)", pending, clean, full, wheel.recovery.replayedEntries))
    try log.close()
    try? FileManager.default.removeItem(atPath: dir)
    exit(0)
}

if let rateText = option("--sustained"), let rate = Int(rateText) {
    // `rate` messages due per second, evenly spread, for `--for` seconds, a few seconds ahead.
    let duration = Int(option("--for") ?? "30") ?? 30
    let dir = fresh("sustained")
    let segmentMiB = Int(option("--segment-mib") ?? "256") ?? 256
    // `--checkpoint`: as the broker runs it, with a checkpoint every second, and so
    // reclaim and compaction; `--stragglers N`: N more messages due in 30 days.
    let checkpointing = CommandLine.arguments.contains("--checkpoint")
    let stragglers = Int(option("--stragglers") ?? "0") ?? 0
    let log = try TimerLog.open(
        directory: dir + "/timer", configuration: LogConfiguration(segmentBytes: segmentMiB << 20, durability: .never), logger: logger)
    let dest = LatenessDestination()
    let geometry: WheelGeometry = option("--slots") == "256" ? .slots256 : .slots64
    let wheel = try TimingWheel(
        log: log, geometry: geometry, checkpointPath: checkpointing ? dir + "/wheel.checkpoint" : nil, destination: dest, logger: logger)
    let system = SystemWheelClock()
    try wheel.advance(to: system.now())
    let total = rate * duration
    // Reserved and touched up front: growing the record of latenesses while the loop runs
    // would stall the loop (a 2^k-element copy) and be measured as lateness.
    dest.lateness = [Int64](repeating: 0, count: total)
    dest.lateness.removeAll(keepingCapacity: true)
    let start = (system.now() / 1000 + 3 + Int64(total / 1_000_000)) * 1000
    var batch: [ScheduledMessage] = []
    for k in 0..<stragglers {
        batch.append(ScheduledMessage(dueAt: start + 30 * 86_400_000 + Int64(k % 1000), publishedAt: start, body: body))
        if batch.count == 1000 { try wheel.schedule(batch); batch.removeAll(keepingCapacity: true) }
    }
    for k in 0..<total {
        batch.append(ScheduledMessage(dueAt: start + Int64(k) * 1000 / Int64(rate), publishedAt: start, body: body))
        if batch.count == 1000 { try wheel.schedule(batch); batch.removeAll(keepingCapacity: true) }
    }
    if !batch.isEmpty { try wheel.schedule(batch) }
    // The whole run's schedules were written in a few seconds: let their writeback finish
    // first, so the kernel's dirty-page throttling is not measured as the wheel's lateness.
    try log.flush()
    precondition(system.now() < start, "scheduling must finish before the first due time")
    let loop = FiringLoop(wheel: wheel, clock: system, logger: logger)
    let running = Task { try await loop.run() }
    while await loop.pendingCount > stragglers { try await Task.sleep(for: .milliseconds(100)) }
    if checkpointing { try await Task.sleep(for: .seconds(3)) }  // a checkpoint, reclaim and compaction after the last fire
    running.cancel()
    _ = await running.result
    let sorted = dest.lateness.sorted()
    func p(_ q: Double) -> Int64 { sorted[min(sorted.count - 1, Int(Double(sorted.count) * q))] }
    if CommandLine.arguments.contains("--stalls") {
        // The first late hand-over of each run of late ones.
        var previous: Int64 = .min
        for s in dest.stalls {
            if s.due > previous + 50 { print("  stall at +\(s.due - start) ms: \(s.late) ms late") }
            previous = s.due
        }
    }
    print("sustained (\(geometry)): \(rate) due/s for \(duration) s (\(sorted.count) handed over), early \(dest.early), lateness ms p50 \(p(0.5)) p99 \(p(0.99)) p99.9 \(p(0.999)) max \(sorted.last ?? -1)")
    if checkpointing {
        let disk = log.segmentInfos.reduce(Int64(0)) { $0 + $1.bytes }
        print(String(
            format: "  with checkpoints every second: %d stragglers pending; timer log on disk %.1f MB in %d segment(s), live %.1f MB (%.2fx)",
            wheel.pendingCount, Double(disk) / 1e6, log.segmentInfos.count, Double(wheel.liveBytes) / 1e6, Double(disk) / Double(max(1, wheel.liveBytes))))
    }
    try log.close()
    try? FileManager.default.removeItem(atPath: dir)
    exit(0)
}

print("WheelBench: \(count) messages of \(body.count) B per case, calls of 1,000; CPU cores \(ProcessInfo.processInfo.activeProcessorCount)")
print(String(format: "%-22@ %-8@ %14@ %12@ %16@", "geometry" as NSString, "sync" as NSString, "schedules/s" as NSString, "fire s" as NSString, "fired/s" as NSString))
for geometry in [WheelGeometry.slots64, .slots256] {
    for durability in [DurabilityPolicy.never, .always] {
        // Schedule: random delays 1 s – 30 days.
        var rng = SplitMix64(seed: 42)
        let dir = fresh("schedule")
        let log = try TimerLog.open(directory: dir, configuration: LogConfiguration(durability: durability), logger: logger)
        let dest = CountingDestination()
        let wheel = try TimingWheel(log: log, geometry: geometry, destination: dest, logger: logger)
        try wheel.advance(to: epoch)
        let batches: [[ScheduledMessage]] = (0..<(count / 1000)).map { _ in
            (0..<1000).map { _ in
                ScheduledMessage(dueAt: epoch + 1000 + Int64(rng.next() % (30 * 86_400_000)), publishedAt: epoch, body: body)
            }
        }
        let clock = ContinuousClock()
        let t0 = clock.now
        for b in batches {
            try wheel.schedule(b)
            if durability == .always { try await log.waitUntilDurable(log.endOffset) }
        }
        let scheduleRate = Double(count) / seconds(clock.now - t0)
        try log.close()
        try? FileManager.default.removeItem(atPath: dir)

        // Fire: everything due within one second.
        let dir2 = fresh("fire")
        let log2 = try TimerLog.open(directory: dir2, configuration: LogConfiguration(durability: durability), logger: logger)
        let dest2 = CountingDestination()
        let wheel2 = try TimingWheel(log: log2, geometry: geometry, destination: dest2, logger: logger)
        try wheel2.advance(to: epoch)
        let due = epoch + 60_000
        for k in 0..<(count / 1000) {
            try wheel2.schedule((0..<1000).map { i in ScheduledMessage(dueAt: due + Int64((k * 1000 + i) % 1000), publishedAt: epoch, body: body) })
        }
        try log2.flush()
        let t1 = clock.now
        try wheel2.advance(to: due + 999)
        let fireSeconds = seconds(clock.now - t1)
        precondition(dest2.count == count, "all fired")
        try log2.close()
        try? FileManager.default.removeItem(atPath: dir2)
        print(String(format: "%-22@ %-8@ %14.0f %12.3f %16.0f", "\(geometry)" as NSString, "\(durability)" as NSString, scheduleRate, fireSeconds, Double(count) / fireSeconds))
    }
}

// Real time: the burst as the broker would live it.
print("")
print("realtime: \(count) messages due within one second, FiringLoop on the system clock")
for geometry in [WheelGeometry.slots64, .slots256] {
    let dir = fresh("realtime")
    let segmentMiB = Int(option("--segment-mib") ?? "256") ?? 256
    let log = try TimerLog.open(directory: dir, configuration: LogConfiguration(segmentBytes: segmentMiB << 20, durability: .never), logger: logger)
    let dest = LatenessDestination()
    let wheel = try TimingWheel(log: log, geometry: geometry, destination: dest, logger: logger)
    let system = SystemWheelClock()
    let second = (system.now() / 1000 + 4) * 1000  // a whole second, a few seconds ahead
    try wheel.advance(to: system.now())
    for k in 0..<(count / 1000) {
        try wheel.schedule((0..<1000).map { i in ScheduledMessage(dueAt: second + Int64((k * 1000 + i) % 1000), publishedAt: second, body: body) })
    }
    precondition(system.now() < second, "scheduling must finish before the burst")
    let loop = FiringLoop(wheel: wheel, clock: system, logger: logger)
    let running = Task { try await loop.run() }
    while await loop.pendingCount > 0 { try await Task.sleep(for: .milliseconds(50)) }
    running.cancel()
    _ = await running.result
    let sorted = dest.lateness.sorted()
    func p(_ q: Double) -> Int64 { sorted[min(sorted.count - 1, Int(Double(sorted.count) * q))] }
    print(String(format: "%-22@ handed over %d, early %d, lateness ms p50 %lld p99 %lld max %lld; last hand-over %+lld ms after the second's last ms",
                 "\(geometry)" as NSString, sorted.count, dest.early, p(0.5), p(0.99), sorted.last ?? -1, dest.lastHandOver - (second + 999)))
    try log.close()
    try? FileManager.default.removeItem(atPath: dir)
}
