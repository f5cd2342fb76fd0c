/// Live timer-log bytes per chunk of address space (an entry counts in the chunk where it
/// starts): messages until they fire (or are dropped as cancelled), links and cancels
/// until their slot is processed. A prefix of chunks at zero, below the checkpoint, can be
/// deleted; the sum drives compaction.
///
/// Dense along the log: `counts[i]` counts chunk `base + i` (an array, not a map: it is
/// touched for every entry scheduled, cascaded and fired).
struct LiveBytes {
    /// log2 of the chunk size.
    let chunkShift: Int64
    private var counts: [Int32] = []
    private var base: Int64 = 0

    init(chunkShift: Int64) {
        self.chunkShift = chunkShift
    }

    /// Counts `delta` bytes (negative: retired) for the entry at `position`.
    @inline(__always)
    mutating func add(_ position: Int64, _ delta: Int32) {
        let chunk = position >> chunkShift
        if counts.isEmpty { base = chunk }
        if chunk < base {
            // Below everything counted so far (a replay that starts late): grow downwards.
            counts.insert(contentsOf: repeatElement(0, count: Int(base - chunk)), at: 0)
            base = chunk
        }
        let i = Int(chunk - base)
        if i >= counts.count { counts.append(contentsOf: repeatElement(0, count: i - counts.count + 1)) }
        let updated = counts[i] + delta
        assert(updated >= 0, "live bytes of chunk \(chunk) went negative (\(counts[i]) \(delta)): an entry retired twice or never counted")
        counts[i] = updated
    }

    /// Starts over from a checkpoint's counts.
    mutating func load(_ chunks: [Int64: Int32]) {
        counts = []
        for (chunk, n) in chunks.sorted(by: { $0.key < $1.key }) { add(chunk << chunkShift, n) }
    }

    /// The non-zero counts by chunk (for the checkpoint and tests).
    var chunks: [Int64: Int32] {
        var out: [Int64: Int32] = [:]
        for (i, n) in counts.enumerated() where n > 0 { out[base + Int64(i)] = n }
        return out
    }

    var total: Int64 { counts.reduce(0) { $0 + Int64($1) } }

    /// The start of the first chunk holding anything live; nil when nothing is.
    var firstLivePosition: Int64? { counts.firstIndex { $0 > 0 }.map { (base + Int64($0)) << chunkShift } }

    /// Forgets the leading chunks that hold nothing (they never will again: entries are
    /// only added at the end of the log); returns where the first live one starts, nil
    /// when nothing is live.
    mutating func forgetDeadPrefix() -> Int64? {
        let dead = counts.prefix { $0 == 0 }.count
        counts.removeFirst(dead)
        base += Int64(dead)
        return counts.isEmpty ? nil : base << chunkShift
    }
}
