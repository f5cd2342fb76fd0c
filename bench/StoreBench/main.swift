// StoreBench: append throughput of ChimeStore's SegmentLog.
//
// Not a test: it asserts nothing and is never run by CI. bench/store.sh builds it in release,
// measures the disk with fio first and passes the figure in with --fio-mbps, so each case can
// be read as a fraction of what the disk sustains. See bench/README.md.
//
// Scenario A: 100-byte records in batches of 1,000, for every durability policy
// (always, interval=10, never) × compression (none, lz4), 4 concurrent appenders.
// Scenario B: 4 KiB records in batches of 64 (256 KiB), always, uncompressed, 4 appenders:
// the headline disk-rate ratio against fio.
//
// Batches are encoded before the clock starts (encoding is the producer's work; the broker
// receives bytes). The encoder's own rate is measured separately.

import ChimeStore
import Foundation
import Logging
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// MARK: - Options

struct Options: Sendable {
    var directory = FileManager.default.currentDirectoryPath
    var seconds = 3.0
    /// Records per case (over all appenders) instead of a duration.
    var records: Int? = nil
    var appenders = 4
    var fioMBps: Double? = nil
    /// Shown next to the verdict, not used for it.
    var fioBestMBps: Double? = nil
    var fioDurableMBps: Double? = nil
    var headlineRuns = 3
    /// Records per batch in scenario B (64 × 4 KiB = 256 KiB); other values are for exploring.
    var largeBatchRecords = 64
    /// Where JSON lines go: a file path, or "-" for standard output.
    var jsonPath: String? = nil
    var seed: UInt64 = 0xC41E_5EED
    var poolBatches = 64
    var segmentMiB = 256
    var quick = false
    /// "all", "encode", "A" or "B": run only part (for profiling one scenario).
    var only = "all"

    static let usage = """
        usage: StoreBench [--dir PATH] [--seconds S | --records N | --quick] [--appenders N]
                          [--fio-mbps X] [--fio-best-mbps X] [--fio-durable-mbps X] [--headline-runs N]
                          [--json PATH|-] [--pool N] [--segment-mib N] [--seed N] [--only encode|A|B]

          --dir PATH         where temporary logs go (same filesystem as the data you care
                             about); default: the current directory
          --seconds S        run each case for S seconds (default 3)
          --records N        run each case for N records over all appenders instead
          --quick            about 0.5 s per case and smaller pools
          --appenders N      concurrent appender tasks (default 4)
          --fio-mbps X       fio's sequential-write MB/s on the same filesystem; each case's
                             disk MB/s is shown as a fraction of it (the reference
                             the 50 % target is judged against)
          --fio-best-mbps X  fio's best sequential-write run: a stricter ratio, shown
          --fio-durable-mbps X
                             fio writing 256 KiB with an fdatasync every 4 writes: the
                             headline's I/O pattern, shown
          --headline-runs N  runs of scenario B, the median counts (default 3; 1 with --quick)
          --b-batch N        records per batch in scenario B (default 64 = 256 KiB)
          --json PATH        also write one JSON object per line to PATH ("-" = stdout)
          --pool N           distinct pre-built batches per appender (default 64)
          --segment-mib N    segment size (default 256, the store's default)
          --seed N           seed of the body generator
          --only PART        run only the encode measurement, scenario A or scenario B
                             (for profiling one of them; targets print for what ran)
        """

    static func parse(_ arguments: [String]) -> Options {
        var options = Options()
        var secondsGiven = false
        var runsGiven = false
        var rest = arguments.dropFirst()[...]
        func fail(_ message: String) -> Never {
            FileHandle.standardError.write(Data("StoreBench: \(message)\n\(usage)\n".utf8))
            exit(2)
        }
        func value(_ flag: String) -> String {
            guard let v = rest.popFirst() else { fail("\(flag) needs a value") }
            return v
        }
        func number<T: LosslessStringConvertible>(_ flag: String, _: T.Type) -> T {
            let text = value(flag)
            guard let n = T(text) else { fail("\(flag): '\(text)' is not a number") }
            return n
        }
        while let argument = rest.popFirst() {
            switch argument {
            case "--dir": options.directory = value(argument)
            case "--seconds":
                options.seconds = number(argument, Double.self)
                secondsGiven = true
            case "--records": options.records = number(argument, Int.self)
            case "--quick": options.quick = true
            case "--appenders": options.appenders = number(argument, Int.self)
            case "--fio-mbps": options.fioMBps = number(argument, Double.self)
            case "--fio-best-mbps": options.fioBestMBps = number(argument, Double.self)
            case "--fio-durable-mbps": options.fioDurableMBps = number(argument, Double.self)
            case "--b-batch": options.largeBatchRecords = number(argument, Int.self)
            case "--headline-runs":
                options.headlineRuns = number(argument, Int.self)
                runsGiven = true
            case "--json": options.jsonPath = value(argument)
            case "--pool": options.poolBatches = number(argument, Int.self)
            case "--segment-mib": options.segmentMiB = number(argument, Int.self)
            case "--seed": options.seed = number(argument, UInt64.self)
            case "--only":
                options.only = value(argument)
                guard ["all", "encode", "A", "B"].contains(options.only) else { fail("--only takes encode, A or B") }
            case "-h", "--help":
                print(usage)
                exit(0)
            default: fail("unknown argument '\(argument)'")
            }
        }
        if options.quick {
            if !secondsGiven { options.seconds = 0.5 }
            if !runsGiven { options.headlineRuns = 1 }
            options.poolBatches = min(options.poolBatches, 16)
        }
        guard options.seconds > 0, options.appenders > 0, options.poolBatches > 0, options.segmentMiB > 0,
            options.headlineRuns > 0, options.largeBatchRecords > 0
        else {
            fail("--seconds, --appenders, --pool, --segment-mib and --headline-runs must be positive")
        }
        if let r = options.records, r <= 0 { fail("--records must be positive") }
        if let f = options.fioMBps, f <= 0 { fail("--fio-mbps must be positive") }
        return options
    }
}

// MARK: - Seeded text

/// Event-like JSON bodies: a random 64-bit id, a user number, an event name and a message of
/// words from a small vocabulary, cut to the exact size. Compresses roughly like real
/// application events: repeated keys and words, a few random digits.
enum BodyText {
    static let events: [[UInt8]] = [
        "page_view", "click", "add_to_cart", "checkout", "login", "logout", "search", "payment_ok",
        "payment_failed", "signup",
    ].map { Array($0.utf8) }
    static let regions: [[UInt8]] = ["eu-west", "eu-central", "us-east", "us-west", "ap-south", "sa-east"].map { Array($0.utf8) }
    static let words: [[UInt8]] = [
        "order", "item", "price", "total", "user", "session", "cart", "shipping", "delivery", "status",
        "pending", "confirmed", "cancelled", "warehouse", "stock", "discount", "coupon", "account",
        "profile", "address", "invoice", "refund", "payment", "card", "express", "standard", "mobile",
        "desktop", "tablet", "browser", "request", "response", "latency", "timeout", "retry", "error",
        "success", "the", "and", "with", "from", "for", "new", "old", "blue", "red", "small", "large",
        "north", "south", "east", "west", "alpha", "beta", "gamma", "delta", "quick", "slow", "first",
        "second", "third", "last",
    ].map { Array($0.utf8) }
    static let hex = Array("0123456789abcdef".utf8)

    /// Appends one body of exactly `size` bytes (size ≥ 2) to `out`.
    static func append(size: Int, to out: inout [UInt8], rng: inout SplitMix64) {
        let start = out.count
        out.append(contentsOf: #"{"id":""#.utf8)
        var id = rng.next()
        for _ in 0..<16 {
            out.append(hex[Int(id & 0xF)])
            id >>= 4
        }
        out.append(contentsOf: #"","user":"u"#.utf8)
        appendDecimal(Int(rng.next() % 100_000), to: &out)
        out.append(contentsOf: #"","event":""#.utf8)
        out.append(contentsOf: events[Int(rng.next() % UInt64(events.count))])
        out.append(contentsOf: #"","region":""#.utf8)
        out.append(contentsOf: regions[Int(rng.next() % UInt64(regions.count))])
        out.append(contentsOf: #"","amount":"#.utf8)
        appendDecimal(Int(rng.next() % 50_000), to: &out)
        out.append(contentsOf: #","msg":""#.utf8)
        while out.count - start < size {
            out.append(contentsOf: words[Int(rng.next() % UInt64(words.count))])
            out.append(0x20)
        }
        out.removeLast(out.count - start - (size - 2))
        out.append(contentsOf: #""}"#.utf8)
    }

    static func appendDecimal(_ value: Int, to out: inout [UInt8]) {
        var digits: [UInt8] = []
        var v = value
        repeat {
            digits.append(UInt8(ascii: "0") + UInt8(v % 10))
            v /= 10
        } while v > 0
        out.append(contentsOf: digits.reversed())
    }

    /// `count` bodies of `size` bytes, back to back.
    static func bodies(count: Int, size: Int, seed: UInt64) -> [UInt8] {
        var rng = SplitMix64(seed: seed)
        var out: [UInt8] = []
        out.reserveCapacity(count * size)
        for _ in 0..<count { append(size: size, to: &out, rng: &rng) }
        return out
    }
}

// MARK: - Encoding

struct Shape: Sendable {
    var recordBytes: Int
    var recordsPerBatch: Int
}

/// Encodes batches from back-to-back bodies; the builder is reused as a producer would.
struct Encoder {
    var builder: RecordBatchBuilder
    let shape: Shape
    /// Record-section bytes before and after compression (header excluded), summed.
    var sectionBytes = 0
    var storedSectionBytes = 0

    init(compression: Compression, shape: Shape) {
        self.shape = shape
        builder = RecordBatchBuilder(
            compression: compression, capacity: shape.recordsPerBatch * (shape.recordBytes + 8))
    }

    /// Batch number `batch` of `bodies`, which holds a whole number of batches.
    mutating func encode(_ bodies: [UInt8], batch: Int, firstTimestamp: Int64) throws -> [UInt8] {
        builder.reset()
        let size = shape.recordBytes
        let first = batch * shape.recordsPerBatch
        bodies.withUnsafeBytes { raw in
            for r in 0..<shape.recordsPerBatch {
                let at = (first + r) * size
                builder.append(
                    timestamp: firstTimestamp + Int64(r), body: UnsafeRawBufferPointer(rebasing: raw[at..<(at + size)]))
            }
        }
        sectionBytes += builder.sectionSize
        let bytes = try builder.build()
        storedSectionBytes += bytes.count - RecordBatchHeader.size
        return bytes
    }

    var compressionRatio: Double { storedSectionBytes == 0 ? 1 : Double(sectionBytes) / Double(storedSectionBytes) }
}

/// Distinct pre-built batches for each appender, same bodies whatever the compression.
struct Pools: Sendable {
    var batches: [[[UInt8]]]
    var compressionRatio: Double
    var batchBytes: Int
}

func buildPools(shape: Shape, compression: Compression, appenders: Int, batchesPerAppender: Int, seed: UInt64) throws -> Pools {
    var encoder = Encoder(compression: compression, shape: shape)
    var pools: [[[UInt8]]] = []
    var total = 0
    for task in 0..<appenders {
        let bodies = BodyText.bodies(
            count: batchesPerAppender * shape.recordsPerBatch, size: shape.recordBytes,
            seed: seed &+ UInt64(task) &* 0x1_0000_0001 &+ UInt64(shape.recordBytes))
        var pool: [[UInt8]] = []
        pool.reserveCapacity(batchesPerAppender)
        for b in 0..<batchesPerAppender {
            let bytes = try encoder.encode(bodies, batch: b, firstTimestamp: 1_700_000_000_000 + Int64(b * shape.recordsPerBatch))
            total += bytes.count
            pool.append(bytes)
        }
        pools.append(pool)
    }
    return Pools(batches: pools, compressionRatio: encoder.compressionRatio, batchBytes: total / (appenders * batchesPerAppender))
}

struct EncodeResult: Sendable {
    var compression: Compression
    var shape: Shape
    var records: Int
    var seconds: Double
    var ratio: Double
    var recordsPerSecond: Double { Double(records) / seconds }
    var payloadMBps: Double { Double(records * shape.recordBytes) / seconds / 1e6 }
}

/// One thread, bodies already in memory: the cost of RecordBatchBuilder alone.
func measureEncode(compression: Compression, shape: Shape, minimumSeconds: Double, seed: UInt64) throws -> EncodeResult {
    let batchesInMemory = 64
    let bodies = BodyText.bodies(count: batchesInMemory * shape.recordsPerBatch, size: shape.recordBytes, seed: seed)
    var encoder = Encoder(compression: compression, shape: shape)
    var sink = 0
    // Warm-up: one pass, not timed.
    for b in 0..<batchesInMemory { sink &+= try encoder.encode(bodies, batch: b, firstTimestamp: 0).count }
    encoder.sectionBytes = 0
    encoder.storedSectionBytes = 0
    let clock = ContinuousClock()
    let start = clock.now
    var batches = 0
    var elapsed = 0.0
    repeat {
        for b in 0..<batchesInMemory {
            sink &+= try encoder.encode(bodies, batch: b, firstTimestamp: 1_700_000_000_000).count
        }
        batches += batchesInMemory
        elapsed = seconds(clock.now - start)
    } while elapsed < minimumSeconds
    precondition(sink > 0)
    return EncodeResult(
        compression: compression, shape: shape, records: batches * shape.recordsPerBatch, seconds: elapsed,
        ratio: encoder.compressionRatio)
}

// MARK: - System-call accounting

/// Wraps the store's system calls to count and time pwritev and fdatasync calls.
/// Two clock reads and two relaxed atomic adds per call; the calls themselves are the system's.
final class SyscallCounters: Sendable {
    let writes = Atomic<Int>(0)
    let writeNanoseconds = Atomic<Int>(0)
    let syncs = Atomic<Int>(0)
    let syncNanoseconds = Atomic<Int>(0)

    var calls: FileSystemCalls {
        let system = FileSystemCalls.system
        return FileSystemCalls(
            pwritev: { [self] fd, iov, count, offset in
                let start = monotonicNanoseconds()
                let result = system.pwritev(fd, iov, count, offset)
                writeNanoseconds.add(monotonicNanoseconds() - start, ordering: .relaxed)
                writes.add(1, ordering: .relaxed)
                return result
            },
            fdatasync: { [self] fd in
                let start = monotonicNanoseconds()
                let result = system.fdatasync(fd)
                syncNanoseconds.add(monotonicNanoseconds() - start, ordering: .relaxed)
                syncs.add(1, ordering: .relaxed)
                return result
            },
            ftruncate: system.ftruncate)
    }
}

/// fdatasync of every segment file in `directory`.
func syncSegmentFiles(in directory: String) throws {
    for name in try FileManager.default.contentsOfDirectory(atPath: directory) where name.hasSuffix(".log") {
        let fd = open(directory + "/" + name, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw StoreBenchError("open \(name): errno \(errno)") }
        defer { close(fd) }
        guard fdatasync(fd) == 0 else { throw StoreBenchError("fdatasync \(name): errno \(errno)") }
    }
}

func monotonicNanoseconds() -> Int {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Int(ts.tv_sec) * 1_000_000_000 + Int(ts.tv_nsec)
}

func seconds(_ d: Duration) -> Double {
    let c = d.components
    return Double(c.seconds) + Double(c.attoseconds) / 1e18
}

// MARK: - Append cases

struct CaseResult: Sendable {
    var scenario: String
    var durability: DurabilityPolicy
    var compression: Compression
    var shape: Shape
    var appenders: Int
    var records: Int
    var batches: Int
    /// Until the last append returned.
    var appendSeconds: Double
    /// `close()` (final fdatasync and the index) plus an fdatasync of every segment file.
    var closeSeconds: Double
    var diskBytes: Int64
    var writes: Int
    /// Time inside pwritev, summed. SegmentLog holds its lock across the write, so this
    /// over the append time is how busy the one-writer-at-a-time path was.
    var writeSeconds: Double
    var syncs: Int
    var syncSeconds: Double
    var latencyP50Microseconds: Double
    var latencyP99Microseconds: Double
    var perAppenderBatches: [Int]

    /// Rates are over append + close, so every case ends with its data on disk, as fio's
    /// figure (written with end_fsync) does.
    var seconds: Double { appendSeconds + closeSeconds }
    var recordsPerSecond: Double { Double(records) / seconds }
    var payloadMBps: Double { Double(records * shape.recordBytes) / seconds / 1e6 }
    var diskMBps: Double { Double(diskBytes) / seconds / 1e6 }
    var recordsPerSync: Double { syncs == 0 ? 0 : Double(records) / Double(syncs) }
    var writeBusy: Double { writeSeconds / appendSeconds }
    var syncBusy: Double { syncSeconds / appendSeconds }

    func fioRatio(_ fio: Double?) -> Double? { fio.map { diskMBps / $0 } }
}

struct AppenderStats: Sendable {
    var batches = 0
    var latencies: [Int] = []
}

func runCase(
    scenario: String, durability: DurabilityPolicy, compression: Compression, shape: Shape, pools: Pools,
    options: Options
) async throws -> CaseResult {
    let directory = options.directory + "/storebench-\(getpid())-\(scenario)-\(durability)-\(compression)"
        .replacingOccurrences(of: "=", with: "")
    try? FileManager.default.removeItem(atPath: directory)
    defer { try? FileManager.default.removeItem(atPath: directory) }

    let counters = SyscallCounters()
    let log = try RecordLog.open(
        directory: directory,
        configuration: LogConfiguration(segmentBytes: options.segmentMiB << 20, durability: durability),
        calls: counters.calls, logger: Logger(label: "chime.store"))
    let writesAtStart = counters.writes.load(ordering: .relaxed)
    let writeNanosAtStart = counters.writeNanoseconds.load(ordering: .relaxed)
    let syncsAtStart = counters.syncs.load(ordering: .relaxed)
    let syncNanosAtStart = counters.syncNanoseconds.load(ordering: .relaxed)

    let appenders = options.appenders
    let batchesPerAppender: Int? = options.records.map { max(1, $0 / shape.recordsPerBatch / appenders) }
    let yields = durability != .always
    let clock = ContinuousClock()
    let start = clock.now
    let deadline = start + .milliseconds(Int(options.seconds * 1000))

    let stats: [AppenderStats] = try await withThrowingTaskGroup(of: AppenderStats.self) { group in
        for task in 0..<appenders {
            let pool = pools.batches[task]
            group.addTask {
                var s = AppenderStats()
                s.latencies.reserveCapacity(1 << 14)
                var now = clock.now
                while batchesPerAppender.map({ s.batches < $0 }) ?? (now < deadline) {
                    try await log.appendDurably(pool[s.batches % pool.count])
                    let after = clock.now
                    s.latencies.append(Int((after - now) / .nanoseconds(1)))
                    now = after
                    s.batches += 1
                    // appendDurably does not suspend unless it waits for a sync: let the
                    // other appenders in, so all of them really run concurrently.
                    if yields {
                        await Task.yield()
                        now = clock.now
                    }
                }
                return s
            }
        }
        var all: [AppenderStats] = []
        for try await s in group { all.append(s) }
        return all
    }
    let appended = clock.now
    // Calls made while appending; close()'s own syncs are in closeSeconds.
    let writes = counters.writes.load(ordering: .relaxed) - writesAtStart
    let writeSeconds = Double(counters.writeNanoseconds.load(ordering: .relaxed) - writeNanosAtStart) / 1e9
    let syncs = counters.syncs.load(ordering: .relaxed) - syncsAtStart
    let syncSeconds = Double(counters.syncNanoseconds.load(ordering: .relaxed) - syncNanosAtStart) / 1e9
    let diskBytes = log.totalBytes
    try log.close()
    // Every case must end with its bytes on disk, as fio's end_fsync run does. The log
    // syncs segments at roll and close under every policy, so this pass finds nothing dirty;
    // it keeps the measurement point explicit.
    try syncSegmentFiles(in: directory)
    let closed = clock.now

    let batches = stats.reduce(0) { $0 + $1.batches }
    var latencies = stats.flatMap(\.latencies)
    latencies.sort()
    func percentile(_ p: Double) -> Double {
        guard !latencies.isEmpty else { return 0 }
        let i = min(latencies.count - 1, Int((Double(latencies.count) * p).rounded(.up)) - 1)
        return Double(latencies[max(0, i)]) / 1000
    }
    return CaseResult(
        scenario: scenario, durability: durability, compression: compression, shape: shape, appenders: appenders,
        records: batches * shape.recordsPerBatch, batches: batches,
        appendSeconds: seconds(appended - start), closeSeconds: seconds(closed - appended),
        diskBytes: diskBytes,
        writes: writes, writeSeconds: writeSeconds, syncs: syncs, syncSeconds: syncSeconds,
        latencyP50Microseconds: percentile(0.50), latencyP99Microseconds: percentile(0.99),
        perAppenderBatches: stats.map(\.batches))
}

// MARK: - Output

func format(_ value: Double, _ decimals: Int = 0) -> String { String(format: "%.\(decimals)f", value) }

/// 1234567 → "1,234,567"
func grouped(_ value: Double) -> String {
    let digits = String(Int(value.rounded()))
    var out = ""
    for (i, c) in digits.reversed().enumerated() {
        if i > 0 && i % 3 == 0 && c != "-" { out.append(",") }
        out.append(c)
    }
    return String(out.reversed())
}

func pad(_ s: String, _ width: Int, left: Bool = false) -> String {
    let fill = String(repeating: " ", count: max(0, width - s.count))
    return left ? s + fill : fill + s
}

struct JSONLines {
    private var handle: FileHandle?
    private var toStandardOutput = false

    init(path: String?) throws {
        guard let path else { return }
        if path == "-" {
            toStandardOutput = true
        } else {
            guard FileManager.default.createFile(atPath: path, contents: nil) else {
                throw StoreBenchError("cannot create \(path)")
            }
            handle = FileHandle(forWritingAtPath: path)
        }
    }

    /// One object per line; values are numbers, strings, booleans or nil (null).
    func write(_ fields: KeyValuePairs<String, Any?>) {
        guard handle != nil || toStandardOutput else { return }
        var parts: [String] = []
        for (key, value) in fields { parts.append("\"\(key)\":\(Self.encode(value))") }
        let line = "{" + parts.joined(separator: ",") + "}\n"
        if toStandardOutput { print(line, terminator: "") } else { handle?.write(Data(line.utf8)) }
    }

    static func encode(_ value: Any?) -> String {
        switch value {
        case nil: return "null"
        case let v as Bool: return v ? "true" : "false"
        case let v as Int: return String(v)
        case let v as Int64: return String(v)
        case let v as Double: return v.isFinite ? String((v * 1000).rounded() / 1000) : "null"
        case let v as [Int]: return "[" + v.map(String.init).joined(separator: ",") + "]"
        case let v as String:
            var s = "\""
            for c in v.unicodeScalars {
                switch c {
                case "\"": s += "\\\""
                case "\\": s += "\\\\"
                case "\n": s += "\\n"
                default: s.unicodeScalars.append(c)
                }
            }
            return s + "\""
        default: return "\"\(String(describing: value!))\""
        }
    }

    func close() { try? handle?.close() }
}

struct StoreBenchError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

func caseLabel(_ r: CaseResult) -> String {
    let size = r.shape.recordBytes >= 1024 ? "\(r.shape.recordBytes / 1024)KiB" : "\(r.shape.recordBytes)B"
    return "\(r.durability) \(r.compression) \(size)x\(r.shape.recordsPerBatch)"
}

let tableHeader = [
    pad("case", 27, left: true), pad("records", 11), pad("rec/s", 11), pad("payload MB/s", 13), pad("disk MB/s", 10),
    pad("vs fio", 7), pad("close ms", 9), pad("fdatasyncs", 11), pad("rec/sync", 9), pad("p50 µs", 8),
    pad("p99 µs", 8), pad("write%", 6), pad("sync%", 6),
].joined(separator: " ")

func tableRow(_ r: CaseResult, fio: Double?) -> String {
    [
        pad(caseLabel(r), 27, left: true),
        pad(grouped(Double(r.records)), 11),
        pad(grouped(r.recordsPerSecond), 11),
        pad(format(r.payloadMBps, 1), 13),
        pad(format(r.diskMBps, 1), 10),
        pad(r.fioRatio(fio).map { format($0 * 100, 0) + "%" } ?? "n/a", 7),
        pad(format(r.closeSeconds * 1000, 0), 9),
        pad(grouped(Double(r.syncs)), 11),
        pad(r.syncs == 0 ? "-" : grouped(r.recordsPerSync), 9),
        pad(format(r.latencyP50Microseconds, 0), 8),
        pad(format(r.latencyP99Microseconds, 0), 8),
        pad(format(r.writeBusy * 100, 0), 6),
        pad(r.syncs == 0 ? "-" : format(r.syncBusy * 100, 0), 6),
    ].joined(separator: " ")
}

func flush() { fflush(nil) }

// MARK: - Main

enum StoreBench {
    static func run() async throws {
        let options = Options.parse(CommandLine.arguments)
        let json = try JSONLines(path: options.jsonPath)
        defer { json.close() }
        let small = Shape(recordBytes: 100, recordsPerBatch: 1000)
        let large = Shape(recordBytes: 4096, recordsPerBatch: options.largeBatchRecords)
        let fio = options.fioMBps
        let policies: [DurabilityPolicy] = [.always, .interval(milliseconds: 10), .never]
        let compressions: [Compression] = [.none, .lz4]

        print("StoreBench: \(options.appenders) appenders, "
            + (options.records.map { "\(grouped(Double($0))) records per case" } ?? "\(format(options.seconds, 1)) s per case")
            + ", \(options.poolBatches) pre-built batches per appender, segments of \(options.segmentMiB) MiB")
        print("temporary logs under \(options.directory); fio sequential write: "
            + (fio.map { format($0, 1) + " MB/s" } ?? "not given (--fio-mbps)"))
        print("CRC-32C hardware: \(CRC32C.isHardwareAccelerated ? "yes" : "no"); MB = 10^6 bytes")
        json.write([
            "type": "config", "appenders": options.appenders, "seconds": options.records == nil ? options.seconds : nil,
            "records": options.records, "pool_batches": options.poolBatches, "segment_mib": options.segmentMiB,
            "fio_mbps": fio, "crc_hardware": CRC32C.isHardwareAccelerated,
        ])

        let runEncode = options.only == "all" || options.only == "encode"
        let runA = options.only == "all" || options.only == "A"
        let runB = options.only == "all" || options.only == "B"

        // Encoder alone.
        if runEncode { print("\n== Encode: RecordBatchBuilder, one thread, bodies already in memory, median of 3 ==") }
        flush()
        for shape in runEncode ? [small, large] : [] {
            for compression in compressions {
                // Three runs, the median reported: one thread on a shared 2-core VM is noisy.
                let runs = try (0..<3).map { _ in
                    try measureEncode(
                        compression: compression, shape: shape, minimumSeconds: options.quick ? 0.1 : 0.4,
                        seed: options.seed ^ 0xE1C0DE)
                }.sorted { $0.recordsPerSecond < $1.recordsPerSecond }
                let e = runs[1]
                let spread = "(runs \(grouped(runs[0].recordsPerSecond))..\(grouped(runs[2].recordsPerSecond)))"
                let ratio = compression == .lz4 ? ", LZ4 ratio \(format(e.ratio, 2)):1 (record section raw/compressed)" : ""
                print("encode \(pad(compression.description, 4, left: true)) \(pad("\(shape.recordBytes) B x \(shape.recordsPerBatch)", 12, left: true)): "
                    + "\(pad(grouped(e.recordsPerSecond), 11)) records/s, \(pad(format(e.payloadMBps, 1), 7)) MB/s payload \(spread)\(ratio)")
                json.write([
                    "type": "encode", "compression": compression.description, "record_bytes": shape.recordBytes,
                    "batch_records": shape.recordsPerBatch, "records": e.records, "seconds": e.seconds,
                    "records_per_s": e.recordsPerSecond, "payload_mbps": e.payloadMBps,
                    "records_per_s_min": runs[0].recordsPerSecond, "records_per_s_max": runs[2].recordsPerSecond,
                    "lz4_ratio": compression == .lz4 ? e.ratio : nil,
                ])
                flush()
            }
        }

        // Scenario A.
        var results: [CaseResult] = []
        if runA {
            print("\n== A: \(small.recordBytes)-byte records, batches of \(small.recordsPerBatch), \(options.appenders) concurrent appenders ==")
            var smallPools: [Compression: Pools] = [:]
            for compression in compressions {
                let p = try buildPools(
                    shape: small, compression: compression, appenders: options.appenders,
                    batchesPerAppender: options.poolBatches, seed: options.seed)
                smallPools[compression] = p
                print("pool \(compression): \(options.appenders) x \(options.poolBatches) batches, \(grouped(Double(p.batchBytes))) bytes per batch"
                    + (compression == .lz4 ? ", LZ4 ratio \(format(p.compressionRatio, 2)):1" : ""))
            }
            print(tableHeader)
            flush()
            for policy in policies {
                for compression in compressions {
                    let r = try await runCase(
                        scenario: "A", durability: policy, compression: compression, shape: small,
                        pools: smallPools[compression]!, options: options)
                    results.append(r)
                    print(tableRow(r, fio: fio))
                    flush()
                    emit(r, fio: fio, lz4Ratio: compression == .lz4 ? smallPools[compression]!.compressionRatio : nil, to: json)
                }
            }
            smallPools = [:]
        }

        // Scenario B.
        var headline: CaseResult? = nil
        if runB {
            print("\n== B (headline): \(large.recordBytes / 1024) KiB records, batches of \(large.recordsPerBatch) (\(large.recordBytes * large.recordsPerBatch / 1024) KiB), always, none, \(options.appenders) appenders ==")
            let largePools = try buildPools(
                shape: large, compression: .none, appenders: options.appenders,
                batchesPerAppender: options.poolBatches, seed: options.seed)
            print(tableHeader)
            flush()
            var runs: [CaseResult] = []
            for _ in 0..<options.headlineRuns {
                let r = try await runCase(
                    scenario: "B", durability: .always, compression: .none, shape: large, pools: largePools, options: options)
                runs.append(r)
                print(tableRow(r, fio: fio))
                flush()
                emit(r, fio: fio, lz4Ratio: nil, to: json)
            }
            // The median run by disk rate (the middle one, or the lower middle for an even count).
            let median = runs.sorted { $0.diskMBps < $1.diskMBps }[(runs.count - 1) / 2]
            headline = median
            if runs.count > 1 {
                print("median of \(runs.count) runs: \(format(median.diskMBps, 1)) disk MB/s, \(grouped(median.recordsPerSecond)) records/s")
            }
        }

        // Targets.
        if runA || runB { print("\n== Targets ==") }
        for r in results where r.scenario == "A" && r.durability == .always {
            let met = r.recordsPerSecond >= 2_000_000
            print("always, \(r.compression), 100 B, \(r.appenders) appenders: \(grouped(r.recordsPerSecond)) records/s "
                + "vs target 2,000,000 -> \(met ? "MET" : "MISSED")")
            json.write([
                "type": "target", "name": "always_100B_records_per_s", "compression": r.compression.description,
                "value": r.recordsPerSecond, "target": 2_000_000.0, "met": met,
            ])
        }
        if let headline, let ratio = headline.fioRatio(fio) {
            let met = ratio >= 0.5
            print("always, none, 4 KiB, \(headline.appenders) appenders: disk \(format(headline.diskMBps, 1)) MB/s = "
                + "\(format(ratio * 100, 1))% of fio's \(format(fio!, 1)) MB/s vs target 50% -> \(met ? "MET" : "MISSED")")
            json.write([
                "type": "target", "name": "always_4KiB_disk_vs_fio", "compression": "none", "value": ratio,
                "target": 0.5, "met": met, "fio_mbps": fio, "disk_mbps": headline.diskMBps,
            ])
            for (name, key, reference) in [
                ("fio's best sequential-write run", "always_4KiB_disk_vs_fio_best", options.fioBestMBps),
                ("fio's durable stream (256 KiB, fdatasync every 4)", "always_4KiB_disk_vs_fio_durable", options.fioDurableMBps),
            ] {
                guard let reference else { continue }
                let r = headline.diskMBps / reference
                print("  same run against \(name), \(format(reference, 1)) MB/s: \(format(r * 100, 1))%"
                    + " (\(r >= 0.5 ? "≥" : "<") 50%)")
                json.write([
                    "type": "ratio", "name": key, "value": r, "fio_mbps": reference, "disk_mbps": headline.diskMBps,
                ])
            }
        } else if let headline {
            print("always, none, 4 KiB: disk \(format(headline.diskMBps, 1)) MB/s; no --fio-mbps given, ratio not computed")
        }
        flush()
    }

    static func emit(_ r: CaseResult, fio: Double?, lz4Ratio: Double?, to json: JSONLines) {
        json.write([
            "type": "append", "scenario": r.scenario, "durability": r.durability.description,
            "compression": r.compression.description, "record_bytes": r.shape.recordBytes,
            "batch_records": r.shape.recordsPerBatch, "appenders": r.appenders, "records": r.records,
            "batches": r.batches, "append_s": r.appendSeconds, "close_s": r.closeSeconds, "seconds": r.seconds,
            "records_per_s": r.recordsPerSecond, "payload_mbps": r.payloadMBps, "disk_bytes": r.diskBytes,
            "disk_mbps": r.diskMBps, "fio_mbps": fio, "fio_ratio": r.fioRatio(fio), "lz4_ratio": lz4Ratio,
            "pwritev_calls": r.writes, "pwritev_s": r.writeSeconds, "fdatasyncs": r.syncs, "fdatasync_s": r.syncSeconds,
            "records_per_sync": r.syncs == 0 ? nil : r.recordsPerSync,
            "latency_p50_us": r.latencyP50Microseconds, "latency_p99_us": r.latencyP99Microseconds,
            "per_appender_batches": r.perAppenderBatches,
        ])
    }
}

do {
    try await StoreBench.run()
} catch {
    FileHandle.standardError.write(Data("StoreBench: \(error)\n".utf8))
    exit(1)
}
