/// The cold jobs of 65,536 consecutive ids (`BeanstalkColdJobs`). Sparse while few of
/// its ids are cold jobs — sorted slot numbers with each job's due second and tube number,
/// 8 bytes a job — and dense once a quarter are: a due second per id (0: no job there),
/// and a tube number per id only if the jobs are in more than one tube — 4 to 6 bytes an
/// id. So a chunk never costs more than about twice its jobs' dense size, however thinly
/// delayed jobs are spread among the ids.
struct BeanstalkColdChunk: Equatable {
    static let size = 1 << 16
    /// Past this many jobs a sparse chunk turns dense.
    static let sparseLimit = size / 4

    /// Dense: a due second per id. Sparse: per job, in slot order.
    private(set) var dues: [UInt32]
    /// Dense: every job's tube when they share one, else 0. Unused when sparse.
    private(set) var soleTube: UInt16
    /// Dense: a tube number per id, or nil when `soleTube` says it. Sparse: per job.
    private(set) var tubes: [UInt16]?
    /// Sparse: the jobs' slots, rising. Nil when dense.
    private(set) var slots: [UInt16]?
    private(set) var live: Int

    /// An empty chunk (sparse).
    init() {
        dues = []
        soleTube = 0
        tubes = []
        slots = []
        live = 0
    }

    /// A dense chunk as a snapshot kept it; nil if its arrays are not whole.
    init?(dense dues: [UInt32], soleTube: UInt16, tubes: [UInt16]?) {
        guard dues.count == Self.size, tubes.map({ $0.count == Self.size }) ?? (soleTube != 0) else { return nil }
        (self.dues, self.soleTube, self.tubes, slots) = (dues, soleTube, tubes, nil)
        live = dues.reduce(0) { $0 + ($1 == 0 ? 0 : 1) }
    }

    /// A sparse chunk as a snapshot kept it; nil if its slots do not rise or the arrays differ in length.
    init?(slots: [UInt16], dues: [UInt32], tubes: [UInt16]) {
        guard slots.count == dues.count, slots.count == tubes.count, !dues.contains(0), !tubes.contains(0),
            zip(slots, slots.dropFirst()).allSatisfy({ $0 < $1 })
        else { return nil }
        (self.slots, self.dues, self.tubes, soleTube, live) = (slots, dues, tubes, 0, slots.count)
    }

    var isDense: Bool { slots == nil }

    /// The job at slot `i`: its tube number and due second.
    func job(at i: Int) -> (tube: UInt16, due: UInt32)? {
        if let slots {
            guard let k = Self.index(of: UInt16(i), in: slots) else { return nil }
            return (tubes![k], dues[k])
        }
        return dues[i] == 0 ? nil : (tubes?[i] ?? soleTube, dues[i])
    }

    /// Adds a job at an empty slot (`due` > 0).
    mutating func insert(at i: Int, tube: UInt16, due: UInt32) {
        precondition(due > 0 && tube > 0, "a cold job needs a due second and a tube")
        if var s = slots {
            let k = Self.insertionPoint(of: UInt16(i), in: s)
            precondition(k == s.count || s[k] != UInt16(i), "slot \(i) taken")
            slots = nil  // the arrays are changed in place, not copied
            s.insert(UInt16(i), at: k)
            slots = s
            dues.insert(due, at: k)
            tubes!.insert(tube, at: k)
            live += 1
            if live > Self.sparseLimit { densify() }
            return
        }
        precondition(dues[i] == 0, "slot \(i) taken")
        if tubes == nil && soleTube != tube {
            tubes = Array(repeating: soleTube, count: Self.size)
            soleTube = 0
        }
        tubes?[i] = tube
        dues[i] = due
        live += 1
    }

    /// Takes out the job at slot `i`; its tube number, or nil if there was none.
    mutating func remove(at i: Int) -> UInt16? {
        if var s = slots {
            guard let k = Self.index(of: UInt16(i), in: s) else { return nil }
            slots = nil
            s.remove(at: k)
            slots = s
            dues.remove(at: k)
            live -= 1
            return tubes!.remove(at: k)
        }
        guard dues[i] != 0 else { return nil }
        dues[i] = 0
        live -= 1
        return tubes?[i] ?? soleTube
    }

    /// Every job: slot, tube number, due second, in slot order.
    func forEachJob(_ body: (Int, UInt16, UInt32) -> Void) {
        if let slots {
            for k in slots.indices { body(Int(slots[k]), tubes![k], dues[k]) }
            return
        }
        dues.withUnsafeBufferPointer { dues in
            if let tubes {
                for i in 0..<Self.size where dues[i] != 0 { body(i, tubes[i], dues[i]) }
            } else {
                for i in 0..<Self.size where dues[i] != 0 { body(i, soleTube, dues[i]) }
            }
        }
    }

    /// The due second of every job, in slot order.
    func forEachDue(_ body: (UInt32) -> Void) {
        dues.withUnsafeBufferPointer { dues in
            for d in dues where d != 0 { body(d) }
        }
    }

    /// Appends `base | slot` for each job whose due second passes `test`, in slot order.
    func appendIDs(base: UInt64, to out: inout [UInt64], where test: (UInt32) -> Bool) {
        dues.withUnsafeBufferPointer { dues in
            if let slots {
                for k in 0..<dues.count where test(dues[k]) { out.append(base | UInt64(slots[k])) }
            } else {
                for i in 0..<dues.count where dues[i] != 0 && test(dues[i]) { out.append(base | UInt64(i)) }
            }
        }
    }

    /// Whether any job here may be in tube `number` (a dense chunk of another sole tube has none).
    func mayHold(tube number: UInt16) -> Bool { !isDense || tubes != nil || soleTube == number }

    private mutating func densify() {
        let (s, d, t) = (slots!, dues, tubes!)
        var dense = [UInt32](repeating: 0, count: Self.size)
        for k in s.indices { dense[Int(s[k])] = d[k] }
        let sole = t.allSatisfy { $0 == t[0] }
        var numbers: [UInt16]? = nil
        if !sole {
            numbers = [UInt16](repeating: 0, count: Self.size)
            for k in s.indices { numbers![Int(s[k])] = t[k] }
        }
        (dues, tubes, soleTube, slots) = (dense, numbers, sole ? t[0] : 0, nil)
    }

    private static func insertionPoint(of slot: UInt16, in slots: [UInt16]) -> Int {
        var (lo, hi) = (0, slots.count)
        while lo < hi {
            let mid = (lo + hi) / 2
            if slots[mid] < slot { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }

    private static func index(of slot: UInt16, in slots: [UInt16]) -> Int? {
        let k = insertionPoint(of: slot, in: slots)
        return k < slots.count && slots[k] == slot ? k : nil
    }
}
