/// A change to the beanstalkd listener's jobs that must survive a restart: one record in
/// the journal topic `__beanstalk` (partition 0), written and synced before the command's
/// answer leaves. Reserving, touching and pausing are not journaled: after a restart every
/// job is ready, delayed or buried again, as with beanstalkd's binlog.
///
/// Body of each record (little-endian; docs/formats.md, "beanstalkd journal"):
/// version (1 byte, 3; 1 and 2 are still read), kind (1 byte), then by kind —
/// put (6 with a wake-up scheduled, 8 without): id u64, priority u32, ttr u32, readyAt
/// i64, delay u32, tube length u8, tube, job body; delete (2): id u64; release (3): id u64, priority u32, readyAt i64;
/// bury (4): id u64, priority u32; kick (5): id u64; ids (7): upTo u64 — no id below it
/// is handed out again after a restart (a wake-up scheduled for a put whose journal
/// record was lost must not find another job under its id).
/// Kind 1 is the put of the first builds, without the delay; it is still read.
/// `readyAt` is a wall-clock time in ms since the Unix epoch (0: ready at once).
/// wake (9): second u32 — not a journal record but the body of a wake-up, a scheduled
/// message in the topic `__beanstalk_due` that brings back every cold job due by the end
/// of that second (`BeanstalkColdJobs.dueSecond`), due `BeanstalkQueue.wakeLead` ms before
/// the second starts. The first cold builds scheduled a wake-up per job whose body was
/// the job's put (kind 6), due at `readyAt`; such wake-ups are still read.
enum BeanstalkEvent: Equatable, Sendable {
    /// `wakeup`: the put's wake-up was scheduled (only such a put may be kept cold).
    case put(id: UInt64, tube: String, priority: UInt32, ttr: UInt32, readyAt: Int64, delay: UInt32, body: [UInt8], wakeup: Bool = false)
    case delete(id: UInt64)
    case release(id: UInt64, priority: UInt32, readyAt: Int64)
    case bury(id: UInt64, priority: UInt32)
    case kick(id: UInt64)
    case ids(upTo: UInt64)
    /// The wake-up of the cold jobs due by the end of `second` (not journaled).
    case wake(second: UInt32)

    /// 3 since the wake-up per due second (kind 9); 2 since the delay, the wake-up flag
    /// and the ids lease (kinds 6, 7, 8). Records of versions 1 (kinds 1–5) and 2 are
    /// still read.
    static let version: UInt8 = 3
    static let readable: ClosedRange<UInt8> = 1...3

    /// A record that is not an event of this version.
    struct Malformed: Error, Equatable, CustomStringConvertible {
        var description: String
    }

    var encoded: [UInt8] {
        var out: [UInt8] = [Self.version]
        func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { out += $0 } }
        func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { out += $0 } }
        switch self {
        case .put(let id, let tube, let priority, let ttr, let readyAt, let delay, let body, let wakeup):
            out.reserveCapacity(body.count + tube.utf8.count + 32)
            out.append(wakeup ? 6 : 8)
            u64(id)
            u32(priority)
            u32(ttr)
            u64(UInt64(bitPattern: readyAt))
            u32(delay)
            precondition(tube.utf8.count <= Int(UInt8.max), "tube names are at most 200 bytes")
            out.append(UInt8(tube.utf8.count))
            out += tube.utf8
            out += body
        case .delete(let id):
            out.append(2)
            u64(id)
        case .release(let id, let priority, let readyAt):
            out.append(3)
            u64(id)
            u32(priority)
            u64(UInt64(bitPattern: readyAt))
        case .bury(let id, let priority):
            out.append(4)
            u64(id)
            u32(priority)
        case .kick(let id):
            out.append(5)
            u64(id)
        case .ids(let upTo):
            out.append(7)
            u64(upTo)
        case .wake(let second):
            out.append(9)
            u32(second)
        }
        return out
    }

    /// The job id a record is about (nil for `ids` and `wake`).
    var id: UInt64? {
        switch self {
        case .put(let id, _, _, _, _, _, _, _), .delete(let id), .release(let id, _, _), .bury(let id, _), .kick(let id): id
        case .ids, .wake: nil
        }
    }

    /// The job id of a put record, read without decoding the rest; nil for other records.
    static func putID(in bytes: [UInt8]) -> UInt64? {
        guard bytes.count >= 10, readable.contains(bytes[0]), bytes[1] == 1 || bytes[1] == 6 || bytes[1] == 8 else { return nil }
        var v: UInt64 = 0
        for i in 0..<8 { v |= UInt64(bytes[2 + i]) << (8 * i) }
        return v
    }

    init(decoding bytes: [UInt8]) throws(Malformed) {
        var at = 2
        func need(_ n: Int) throws(Malformed) {
            guard bytes.count - at >= n else { throw Malformed(description: "a beanstalkd journal record cut short (\(bytes.count) bytes)") }
        }
        func u64() throws(Malformed) -> UInt64 {
            try need(8)
            var v: UInt64 = 0
            for i in 0..<8 { v |= UInt64(bytes[at + i]) << (8 * i) }
            at += 8
            return v
        }
        func u32() throws(Malformed) -> UInt32 {
            try need(4)
            var v: UInt32 = 0
            for i in 0..<4 { v |= UInt32(bytes[at + i]) << (8 * i) }
            at += 4
            return v
        }
        guard bytes.count >= 2, Self.readable.contains(bytes[0]) else {
            throw Malformed(description: "a beanstalkd journal record of version \(bytes.first.map(String.init) ?? "none"), not 1 to 3")
        }
        let kind = bytes[1]
        switch kind {
        case 1, 6, 8:
            let id = try u64(), priority = try u32(), ttr = try u32(), readyAt = Int64(bitPattern: try u64())
            let delay = kind == 1 ? 0 : try u32()
            try need(1)
            let n = Int(bytes[at])
            at += 1
            try need(n)
            let tube = String(decoding: bytes[at..<at + n], as: UTF8.self)
            at += n
            self = .put(id: id, tube: tube, priority: priority, ttr: ttr, readyAt: readyAt, delay: delay, body: Array(bytes[at...]), wakeup: kind == 6)
            return
        case 2: self = .delete(id: try u64())
        case 3: self = .release(id: try u64(), priority: try u32(), readyAt: Int64(bitPattern: try u64()))
        case 4: self = .bury(id: try u64(), priority: try u32())
        case 5: self = .kick(id: try u64())
        case 7: self = .ids(upTo: try u64())
        case 9 where bytes[0] >= 3: self = .wake(second: try u32())
        default: throw Malformed(description: "a beanstalkd journal record of unknown kind \(kind)")
        }
        guard at == bytes.count else { throw Malformed(description: "a beanstalkd journal record of kind \(kind) with \(bytes.count - at) bytes too many") }
    }
}
