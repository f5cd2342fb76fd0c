import HeapModule

/// The delayed jobs the beanstalkd listener keeps out of memory: their bodies are in the
/// journal and their wake-ups are scheduled messages in the broker's timing wheel, so all
/// that stays here is, per job, its due second and its tube number — 4 to 8 bytes
/// (`BeanstalkColdChunk`) against a few hundred for a job held whole.
///
/// Ids are dense (the queue hands them out in order), so the index is a set of chunks of
/// 65,536 consecutive ids; a chunk goes once its last job leaves.
struct BeanstalkColdJobs: Equatable {
    static let chunkBits = 16
    static let chunkSize = BeanstalkColdChunk.size
    /// Due seconds are counted from this Unix time (2020-09-13), so that 4 bytes reach 2156.
    static let epochSeconds: Int64 = 1_600_000_000

    private(set) var chunks: [UInt64: BeanstalkColdChunk] = [:]
    /// Tube numbers (1...65,535) of the tubes that have cold jobs, and how many each has.
    private(set) var tubeNames: [UInt16: String] = [:]
    private var tubeNumbers: [String: UInt16] = [:]
    private(set) var perTube: [UInt16: Int] = [:]
    private var nextNumber: UInt16 = 1
    private(set) var count = 0
    /// Per tube, its soonest cold job once looked for, kept true by inserts and removes
    /// (dropped when that job leaves): `peek-delayed` does not scan each time.
    private var soonestOf: [UInt16: Due] = [:]

    init() {}

    struct Inconsistent: Error, CustomStringConvertible {
        var description: String
    }

    /// The index from its chunks and tube numbers as a snapshot kept them (counts redone).
    init(chunks: [UInt64: BeanstalkColdChunk], tubeNames: [UInt16: String]) throws(Inconsistent) {
        self.tubeNames = tubeNames
        for (number, name) in tubeNames {
            guard number != 0, tubeNumbers.updateValue(number, forKey: name) == nil else {
                throw Inconsistent(description: "tube \(name) numbered twice, or 0")
            }
        }
        var counts = [Int](repeating: 0, count: Int(UInt16.max) + 1)
        for (key, c) in chunks where c.live > 0 {
            if c.isDense && c.tubes == nil {
                counts[Int(c.soleTube)] += c.live
            } else {
                c.forEachJob { _, tube, _ in counts[Int(tube)] += 1 }
            }
            self.chunks[key] = c
            count += c.live
        }
        for (n, k) in counts.enumerated() where k > 0 {
            guard n != 0, tubeNames[UInt16(n)] != nil else { throw Inconsistent(description: "tube number \(n) has no name") }
            perTube[UInt16(n)] = k
        }
        for (number, name) in tubeNames where perTube[number] == nil {
            self.tubeNames[number] = nil
            tubeNumbers[name] = nil
        }
        nextNumber = (tubeNames.keys.max() ?? 0) &+ 1
    }

    /// The due second stored for a wall-clock due time in ms: rounded up, so a cold job is
    /// never thought due before it is.
    static func dueSecond(wallMilliseconds: Int64) -> UInt32 {
        let s = (wallMilliseconds + 999).quotientAndRemainder(dividingBy: 1_000).quotient - epochSeconds
        return UInt32(clamping: Swift.max(0, s))
    }

    /// The wall time (ms) a stored due second stands for.
    static func wallMilliseconds(dueSecond: UInt32) -> Int64 { (Int64(dueSecond) + epochSeconds) * 1_000 }

    func contains(_ id: UInt64) -> Bool { slot(id) != nil }

    /// The tube and due second of a cold job.
    func job(_ id: UInt64) -> (tube: String, dueSecond: UInt32)? {
        guard let s = slot(id) else { return nil }
        return (tubeNames[s.tube]!, s.due)
    }

    func count(inTube name: String) -> Int { tubeNumbers[name].flatMap { perTube[$0] } ?? 0 }

    private func slot(_ id: UInt64) -> (tube: UInt16, due: UInt32)? {
        chunks[id >> UInt64(Self.chunkBits)]?.job(at: Int(id & UInt64(Self.chunkSize - 1)))
    }

    /// Adds a cold job (due after 2020: `dueSecond` > 0); false (and nothing added) when
    /// every tube number is taken.
    mutating func insert(_ id: UInt64, tube name: String, dueSecond: UInt32) -> Bool {
        precondition(dueSecond > 0, "a cold job due at the epoch")
        let number: UInt16
        if let n = tubeNumbers[name] {
            number = n
        } else {
            guard let n = freeNumber() else { return false }
            number = n
            tubeNumbers[name] = n
            tubeNames[n] = name
        }
        chunks[id >> UInt64(Self.chunkBits), default: BeanstalkColdChunk()].insert(at: Int(id & UInt64(Self.chunkSize - 1)), tube: number, due: dueSecond)
        if let known = soonestOf[number], Due(dueSecond: dueSecond, id: id) < known { soonestOf[number] = Due(dueSecond: dueSecond, id: id) }
        perTube[number, default: 0] += 1
        count += 1
        return true
    }

    private mutating func freeNumber() -> UInt16? {
        guard tubeNames.count < Int(UInt16.max) else { return nil }
        while tubeNames[nextNumber] != nil || nextNumber == 0 { nextNumber &+= 1 }
        defer { nextNumber &+= 1 }
        return nextNumber
    }

    /// Takes a cold job out; its tube, or nil if it was not cold.
    @discardableResult
    mutating func remove(_ id: UInt64) -> String? {
        let key = id >> UInt64(Self.chunkBits)
        guard chunks[key] != nil, let number = chunks[key]!.remove(at: Int(id & UInt64(Self.chunkSize - 1))) else { return nil }
        if chunks[key]!.live == 0 { chunks[key] = nil }
        let name = tubeNames[number]!
        perTube[number]! -= 1
        if soonestOf[number]?.id == id { soonestOf[number] = nil }
        if perTube[number] == 0 {
            perTube[number] = nil
            tubeNames[number] = nil
            tubeNumbers[name] = nil
        }
        count -= 1
        return name
    }

    struct Due: Comparable {
        var dueSecond: UInt32
        var id: UInt64
        static func < (a: Due, b: Due) -> Bool { (a.dueSecond, a.id) < (b.dueSecond, b.id) }
    }

    /// The soonest cold job of a tube (then lowest id); a scan only when not known.
    mutating func soonest(inTube name: String) -> Due? {
        guard let number = tubeNumbers[name] else { return nil }
        if let known = soonestOf[number] { return known }
        let found = soonest(inTube: name, limit: 1).first
        soonestOf[number] = found
        return found
    }

    /// Up to `limit` cold jobs of a tube, soonest due first (then lowest id): one pass over
    /// the index, so it costs in proportion to the cold jobs of every tube.
    func soonest(inTube name: String, limit: Int) -> [Due] {
        guard limit > 0, let number = tubeNumbers[name] else { return [] }
        var best = Heap<Due>()  // the `limit` soonest so far; its max is the one to beat
        for (key, c) in chunks where c.mayHold(tube: number) {
            c.forEachJob { i, tube, due in
                guard tube == number else { return }
                let e = Due(dueSecond: due, id: key << UInt64(Self.chunkBits) | UInt64(i))
                if best.count < limit {
                    best.insert(e)
                } else if e < best.max! {
                    best.replaceMax(with: e)
                }
            }
        }
        return best.unordered.sorted()
    }

    /// The cold jobs due at or before `second`, in id order: one pass over the due seconds.
    func due(atOrBefore second: UInt32) -> [UInt64] {
        var out: [UInt64] = []
        for key in chunks.keys.sorted() {
            chunks[key]!.appendIDs(base: key << UInt64(Self.chunkBits), to: &out) { $0 <= second }
        }
        return out
    }

    /// The due seconds that have cold jobs, rising: one pass, marking a bitmap when they
    /// span less than 2^24 s (half a year), else a set.
    func dueSeconds() -> [UInt32] {
        var (lo, hi) = (UInt32.max, UInt32(0))
        for c in chunks.values { c.forEachDue { lo = Swift.min(lo, $0); hi = Swift.max(hi, $0) } }
        guard lo <= hi else { return [] }
        if hi - lo < 1 << 24 {
            var marked = [UInt64](repeating: 0, count: Int(hi - lo) / 64 + 1)
            for c in chunks.values { c.forEachDue { marked[Int($0 - lo) >> 6] |= 1 << UInt64(($0 - lo) & 63) } }
            var out: [UInt32] = []
            for (w, word) in marked.enumerated() where word != 0 {
                var bits = word
                while bits != 0 {
                    out.append(lo + UInt32(w * 64 + bits.trailingZeroBitCount))
                    bits &= bits - 1
                }
            }
            return out
        }
        var seen = Set<UInt32>()
        for c in chunks.values { c.forEachDue { seen.insert($0) } }
        return seen.sorted()
    }

    /// The cold jobs due in one of `seconds`, in id order.
    func due(in seconds: Set<UInt32>) -> [UInt64] {
        var out: [UInt64] = []
        for key in chunks.keys.sorted() {
            chunks[key]!.appendIDs(base: key << UInt64(Self.chunkBits), to: &out) { seconds.contains($0) }
        }
        return out
    }

    /// Every cold job, in id order.
    func forEach(_ body: (UInt64, String, UInt32) -> Void) {
        for key in chunks.keys.sorted() {
            chunks[key]!.forEachJob { i, tube, due in body(key << UInt64(Self.chunkBits) | UInt64(i), tubeNames[tube]!, due) }
        }
    }
}
