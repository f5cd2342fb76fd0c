import DequeModule

/// A partition's memory of idempotent producers and dedup keys. Rebuilt on opening from
/// its snapshot plus the logs after it, so it survives restarts.
struct ProducerState {
    struct Producer {
        /// Sequence of the last message stored.
        var lastSequence: Int32
        /// When it last published (ms since the epoch): producers silent for the expiry
        /// are forgotten, so a broker whose clients come and go keeps a bounded table.
        var lastSeen: Int64 = 0
        /// Ids of the last few publishes, so a retry of one is answered with them.
        var recent: Deque<(sequence: Int32, count: Int, ids: [MessageID?])>
    }

    enum Check: Equatable {
        case fresh
        /// A retry of a stored publish; its ids when still remembered.
        case duplicate([MessageID?]?)
        case gap(expected: Int32)
    }

    static let recentPublishes = 5
    private(set) var producers: [Int64: Producer] = [:]
    /// Dedup key hash → (expiry, id of the message stored with it).
    private(set) var dedup: [UInt64: (expiry: Int64, id: MessageID)] = [:]
    private var expiries: Deque<(expiry: Int64, hash: UInt64)> = []

    func check(_ stamp: ProducerStamp, count: Int) -> Check {
        guard let p = producers[stamp.producerID] else {
            // A producer's first publish must start at 0; after a restart the producer table
            // is restored, so anything else means a lost batch or a foreign id.
            return stamp.sequence == 0 ? .fresh : .gap(expected: 0)
        }
        let expected = p.lastSequence &+ 1
        if stamp.sequence == expected { return .fresh }
        let last = Int64(stamp.sequence) + Int64(count) - 1
        if last <= Int64(p.lastSequence) {
            let ids = p.recent.first { $0.sequence == stamp.sequence && $0.count == count }?.ids
            return .duplicate(ids)
        }
        return .gap(expected: expected)
    }

    mutating func record(_ stamp: ProducerStamp, count: Int, ids: [MessageID?]?, now: Int64) {
        let last = stamp.sequence &+ Int32(truncatingIfNeeded: count - 1)
        var p = producers[stamp.producerID] ?? Producer(lastSequence: -1, recent: [])
        p.lastSeen = max(p.lastSeen, now)
        if Int64(last) > Int64(p.lastSequence) || producers[stamp.producerID] == nil { p.lastSequence = last }
        if let ids {
            p.recent.append((stamp.sequence, count, ids))
            if p.recent.count > Self.recentPublishes { p.recent.removeFirst() }
        }
        producers[stamp.producerID] = p
    }

    /// Undoes `record` of a publish that failed, so its retry is stored.
    mutating func rollBack(_ producer: Int64, to previous: Int32?) {
        guard let previous else {
            producers[producer] = nil
            return
        }
        producers[producer]?.lastSequence = previous
    }

    /// Restores a producer's last sequence (snapshot, log scan): never moves it back.
    mutating func restore(producer: Int64, lastSequence: Int32, seenAt: Int64) {
        producers[producer, default: Producer(lastSequence: lastSequence, recent: [])].lastSeen = max(producers[producer]?.lastSeen ?? 0, seenAt)
        if let p = producers[producer], p.lastSequence >= lastSequence { return }
        producers[producer]!.lastSequence = lastSequence
    }

    /// Forgets producers that have not published since `before`. A forgotten producer's
    /// next publish must start at sequence 0 again (the client then takes a new id).
    mutating func forgetProducers(silentSince before: Int64) -> Int {
        let stale = producers.filter { $0.value.lastSeen < before }.map(\.key)
        for id in stale { producers[id] = nil }
        return stale.count
    }

    func duplicate(of hash: UInt64, now: Int64) -> MessageID? {
        guard let entry = dedup[hash], entry.expiry > now else { return nil }
        return entry.id
    }

    mutating func remember(_ hash: UInt64, expiry: Int64, id: MessageID) {
        if let e = dedup[hash], e.expiry >= expiry { return }
        dedup[hash] = (expiry, id)
        expiries.append((expiry, hash))
    }

    /// Forgets dedup keys whose window has passed.
    mutating func prune(now: Int64) {
        while let first = expiries.first, first.expiry <= now {
            expiries.removeFirst()
            if let e = dedup[first.hash], e.expiry <= now { dedup[first.hash] = nil }
        }
    }

    // MARK: - Snapshot (producers.snapshot, docs/formats.md)

    static let magic: UInt32 = 0x5350_4843  // "CHPS"

    func write(to path: String, readyOffset: Int64, timerPosition: Int64, topicID: UInt32, partition: Int) throws {
        var w = SnapshotWriter(magic: Self.magic, version: 2)
        w.i64(readyOffset)
        w.i64(timerPosition)
        w.u32(UInt32(producers.count))
        for (id, p) in producers.sorted(by: { $0.key < $1.key }) {
            w.i64(id)
            w.i32(p.lastSequence)
            w.i64(p.lastSeen)
        }
        w.u32(UInt32(dedup.count))
        for (hash, e) in dedup.sorted(by: { $0.key < $1.key }) {
            w.u64(hash)
            w.i64(e.expiry)
            w.u8(e.id.kind.rawValue)
            w.i64(e.id.value)
        }
        try w.write(to: path)
    }

    /// The state in the snapshot and the log positions it covers; nil if there is none.
    /// Version 1 (before producers expired) has no last-seen times: those producers count
    /// as seen at `now`.
    static func read(from path: String, topicID: UInt32, partition: Int, now: Int64) -> (state: ProducerState, readyOffset: Int64, timerPosition: Int64)? {
        guard var r = SnapshotReader(path: path, magic: magic), r.version == 1 || r.version == 2,
            let ready = r.i64(), let timer = r.i64(), let producerCount = r.u32()
        else { return nil }
        var state = ProducerState()
        for _ in 0..<producerCount {
            guard let id = r.i64(), let seq = r.i32() else { return nil }
            var seen = now
            if r.version == 2 {
                guard let s = r.i64() else { return nil }
                seen = s
            }
            state.restore(producer: id, lastSequence: seq, seenAt: seen)
        }
        guard let dedupCount = r.u32() else { return nil }
        for _ in 0..<dedupCount {
            guard let hash = r.u64(), let expiry = r.i64(), let k = r.u8(), let kind = MessageID.Kind(rawValue: k), let value = r.i64() else {
                return nil
            }
            state.remember(hash, expiry: expiry, id: MessageID(topicID: topicID, partition: partition, kind: kind, value: value))
        }
        // remember() appended in hash order: expiry order is needed for pruning.
        state.expiries = Deque(state.expiries.sorted { $0.expiry < $1.expiry })
        return (state, ready, timer)
    }
}
