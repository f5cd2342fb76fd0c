import ChimeStore
import ChimeTestSupport
import Foundation
import Glibc
import Testing

@testable import ChimeWheel

/// Fault injection that plays a process dying at its N-th write: that write lands only in
/// part (a torn write), and from then on nothing reaches the disk.
final class CrashAtWrite: @unchecked Sendable {
    private let lock = NSLock()
    private var writesLeft: Int?
    private(set) var writes = 0
    private(set) var crashed = false

    init(after n: Int?) { writesLeft = n }

    var calls: FileSystemCalls {
        FileSystemCalls(
            pwritev: { fd, iov, count, offset in
                let action: Int = self.lock.withLock {
                    if self.crashed { return -1 }
                    self.writes += 1
                    if let left = self.writesLeft {
                        if left == 0 { self.crashed = true; return 1 }
                        self.writesLeft = left - 1
                    }
                    return 0
                }
                switch action {
                case -1: return -Int(EIO)
                case 1:
                    var half = iov.pointee
                    half.iov_len = half.iov_len / 2
                    if half.iov_len > 0 { _ = withUnsafePointer(to: &half) { FileSystemCalls.system.pwritev(fd, $0, 1, offset) } }
                    return -Int(EIO)
                default: return FileSystemCalls.system.pwritev(fd, iov, count, offset)
                }
            },
            fdatasync: { fd in self.lock.withLock { self.crashed } ? -EIO : FileSystemCalls.system.fdatasync(fd) },
            ftruncate: { fd, length in self.lock.withLock { self.crashed } ? -EIO : FileSystemCalls.system.ftruncate(fd, length) }
        )
    }
}

@Suite struct WheelCrashTests {
    static let epoch: Int64 = 1_800_000_000_000

    enum Op {
        case schedule([Int64])  // delays (ms)
        case cancel(Int)        // index into the ids scheduled so far
        case advance(Int64)     // by this many ms
        case checkpoint
        case ahead(Int)         // cascade ahead, steps of this many entries, up to 3 steps
        case reschedule(Int, Int64)  // index into the ids scheduled so far, new delay (ms)
        case compact            // compaction steps until the pass ends
    }

    /// A seeded script touching every kind of write: schedules (bursts in one millisecond,
    /// delays up to minutes so cascades happen), cancels, reschedules, advances,
    /// checkpoints, partial cascades ahead of time, compaction.
    static func script(seed: UInt64) -> [Op] {
        var rng = SplitMix64(seed: seed)
        let days: Int64 = 86_400_000
        // Stragglers: they pin the first segment until compaction moves them.
        var ops: [Op] = [.schedule([10 * days, 10 * days + 1])]
        for _ in 0..<50 {
            switch rng.next() % 9 {
            case 0, 1:
                let n = Int(rng.next() % 4) + 1
                let burst = rng.next() % 2 == 0
                // Delays from the moment of scheduling.
                let base = Int64(rng.next() % 300_000)
                ops.append(.schedule((0..<n).map { _ in burst ? base : Int64(rng.next() % 300_000) }))
            case 2: ops.append(.cancel(Int(rng.next() % 1000)))
            case 3: ops.append(.checkpoint)
            case 4: ops.append(.ahead(Int(rng.next() % 3) + 1))
            case 5: ops.append(.reschedule(Int(rng.next() % 1000), Int64(rng.next() % 300_000)))
            case 6: ops.append(.compact)
            default:
                ops.append(.advance(Int64(rng.next() % 60_000)))
            }
        }
        ops.append(.advance(400_000))
        // Everything but the stragglers fired: compaction moves them, a checkpoint lets
        // reclaim delete the dead prefix, and the wheel must keep working after it.
        ops.append(.checkpoint)
        ops.append(.compact)
        ops.append(.checkpoint)
        ops.append(.schedule([10, 20, 20]))
        ops.append(.advance(1_000))
        ops.append(.advance(11 * days))
        return ops
    }

    struct Outcome {
        var acknowledged: [Int64: Int64] = [:]  // id -> due
        var cancelled = Set<Int64>()
        var writes = 0
        var reclaimed = 0
        var aheadSteps = 0
        var rescheduled = 0
        var compactedSlots = 0
    }

    /// Runs the script; on a crash, reopens everything from disk with healthy calls,
    /// catches up, and goes on with the rest of the script.
    func run(_ ops: [Op], crashAt: Int?, dir: TemporaryDirectory, dest: RecordingDestination) throws -> Outcome {
        var now = Self.epoch
        dest.clock = { now }
        let injector = CrashAtWrite(after: crashAt)
        func open(_ calls: FileSystemCalls) throws -> TimingWheel {
            let log = try TimerLog.open(
                directory: dir.path + "/timer", configuration: LogConfiguration(segmentBytes: 4096, durability: .always),
                calls: calls, logger: testLogger)
            return try TimingWheel(
                log: log, checkpointPath: dir.file("wheel.checkpoint"), destination: dest, reclaimChunkBytes: 4096,
                compactionMinimumBytes: 4096, logger: testLogger)
        }
        var wheel = try open(injector.calls)
        try wheel.advance(to: now)
        var outcome = Outcome()
        var ids: [Int64] = []
        var crashed = false
        for op in ops {
            do {
                switch op {
                case .schedule(let dues):
                    let got = try wheel.schedule(dues.map { ScheduledMessage(dueAt: now + $0, publishedAt: now, body: [1]) })
                    try wheel.log.flush()  // acknowledged = durable
                    for (id, due) in zip(got, dues) { outcome.acknowledged[id] = now + due }
                    ids += got
                case .cancel(let k):
                    guard !ids.isEmpty else { continue }
                    let id = ids[k % ids.count]
                    guard outcome.acknowledged[id]! > now, !outcome.cancelled.contains(id) else { continue }
                    try wheel.cancel(id)
                    try wheel.log.flush()
                    outcome.cancelled.insert(id)
                case .advance(let ms):
                    now += ms
                    try wheel.advance(to: now)
                case .checkpoint:
                    try wheel.checkpoint()
                    outcome.reclaimed += try wheel.reclaim().count
                case .ahead(let step):
                    for _ in 0..<3 where try wheel.cascadeAhead(maxEntries: step) {}
                    outcome.aheadSteps += 1
                case .reschedule(let k, let delay):
                    guard !ids.isEmpty else { continue }
                    let id = ids[k % ids.count]
                    guard outcome.acknowledged[id]! > now, !outcome.cancelled.contains(id) else { continue }
                    let moved = try wheel.reschedule(id, dueAt: outcome.acknowledged[id]!, to: now + delay)
                    try wheel.log.flush()
                    outcome.cancelled.insert(id)
                    outcome.acknowledged[moved] = now + delay
                    ids.append(moved)
                    outcome.rescheduled += 1
                case .compact:
                    while try wheel.compact() { outcome.compactedSlots += 1 }
                }
            } catch {
                precondition(injector.crashed, "only the injected crash may fail: \(error)")
                precondition(!crashed, "one crash per run")
                crashed = true
                try? wheel.log.close()
                wheel = try open(.system)
                try wheel.advance(to: now)
            }
        }
        outcome.writes = injector.writes
        try wheel.log.close()
        return outcome
    }

    @Test(arguments: [UInt64(1), 2, 3])
    func aCrashAtAnyWriteLosesNothingAcknowledgedAndDoublesNothing(seed: UInt64) throws {
        let ops = Self.script(seed: seed)
        let referenceDest = RecordingDestination()
        let reference = try run(ops, crashAt: nil, dir: TemporaryDirectory(), dest: referenceDest)
        let referenceFired = Set(referenceDest.fired.map(\.id))
        let referenceMust = Set(reference.acknowledged.keys).subtracting(reference.cancelled)
        #expect(referenceMust == referenceFired, "without a crash, exactly the acknowledged, uncancelled messages fire")
        #expect(reference.writes > 30, "the script must exercise many writes")
        #expect(reference.reclaimed > 0, "the script must reclaim segments")
        #expect(reference.aheadSteps > 0, "the script must cascade ahead")
        #expect(reference.rescheduled > 0, "the script must reschedule")
        #expect(reference.compactedSlots > 0, "the script must compact")
        var crashesChecked = 0
        for n in 0..<reference.writes {
            let dest = RecordingDestination()
            let outcome = try run(ops, crashAt: n, dir: TemporaryDirectory(), dest: dest)
            let fired = dest.fired
            let firedIDs = Set(fired.map(\.id))
            #expect(firedIDs.count == fired.count, "crash at write \(n): a message fired twice")
            let mustFire = Set(outcome.acknowledged.keys).subtracting(outcome.cancelled)
            #expect(mustFire.isSubset(of: firedIDs), "crash at write \(n): acknowledged messages lost: \(mustFire.subtracting(firedIDs).sorted())")
            #expect(firedIDs.isDisjoint(with: outcome.cancelled), "crash at write \(n): a cancelled message fired")
            #expect(fired.allSatisfy { $0.at >= $0.message.dueAt }, "crash at write \(n): fired early")
            crashesChecked += 1
        }
        #expect(crashesChecked == reference.writes)
    }
}
