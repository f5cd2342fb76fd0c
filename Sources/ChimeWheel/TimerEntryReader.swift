import ChimeStore

/// The fixed fields of a timer entry, read without copying its bytes. `next` and
/// `reference` hold different things by kind: read them through the accessor named for
/// what the kind keeps there.
struct TimerEntryFields: Equatable {
    var kind: TimerEntry.Kind
    var position: Int64
    var level: Int
    var slot: Int
    var dueAt: Int64
    var next: Int64
    var reference: Int64
    /// The entry's size in bytes.
    var size: Int
    /// A moved message's id (its original position); -1 for other kinds.
    var originalID: Int64

    init(
        kind: TimerEntry.Kind, position: Int64, level: Int, slot: Int, dueAt: Int64, next: Int64, reference: Int64, size: Int,
        originalID: Int64 = -1
    ) {
        self.kind = kind
        self.position = position
        self.level = level
        self.slot = slot
        self.dueAt = dueAt
        self.next = next
        self.reference = reference
        self.size = size
        self.originalID = originalID
    }

    /// The fields of the checked entry `raw`, which lies at `address`.
    init(_ raw: UnsafeRawBufferPointer, at address: Int64) {
        let kind = TimerEntry.Kind(rawValue: raw[L.kind])!
        self.init(
            kind: kind, position: address, level: Int(raw[L.level]), slot: Int(LittleEndian.load(UInt16.self, raw, L.slot)),
            dueAt: LittleEndian.load(Int64.self, raw, L.dueAt), next: LittleEndian.load(Int64.self, raw, L.next),
            reference: LittleEndian.load(Int64.self, raw, L.reference), size: raw.count,
            originalID: kind == .movedMessage ? LittleEndian.load(Int64.self, raw, L.originalID) : -1)
    }

    /// The fields of a decoded entry.
    init(_ e: TimerEntry) {
        self.init(
            kind: e.kind, position: e.position, level: e.level, slot: e.slot, dueAt: e.dueAt, next: e.next, reference: e.reference,
            size: e.bytes.count, originalID: e.originalID ?? -1)
    }

    /// The entry holding the message (see `TimerEntry.target`).
    var target: Int64 { kind.carriesMessage ? position : reference }
    /// The message id when the entry alone tells it (not for links).
    var messageID: Int64? {
        switch kind {
        case .message: position
        case .movedMessage: originalID
        case .cancel: reference
        default: nil
        }
    }
    /// Message, moved message: the wheel time when it was placed.
    var placedAt: Int64 {
        assert(kind.carriesMessage)
        return reference
    }
    /// Cancel: the id of the message it cancels.
    var cancelledID: Int64 {
        assert(kind == .cancel)
        return reference
    }
    /// Link: the position of the message entry it reads.
    var linkedMessage: Int64 {
        assert(kind == .link)
        return reference
    }
    /// Markers: the start of the slot they are about.
    var slotStart: Int64 {
        assert(!kind.isListed)
        return dueAt
    }
    /// Slot fired, hand-over, fire sequence: the number of the hand-over.
    var fireSequence: UInt64 {
        assert(kind == .slotFired || kind == .handOver || kind == .fireSequence)
        return UInt64(bitPattern: reference)
    }
    /// Cascade progress: the first entry of the slot's list not yet cascaded (-1: none left).
    var cascadeCursor: Int64 {
        assert(kind == .cascadeProgress)
        return reference
    }
    /// Slot compacted: the new cut (entries below it were rewritten).
    var compactedCut: Int64 {
        assert(kind == .slotCompacted)
        return reference
    }
    /// Slot compacted: the lowest position the slot refers to afterwards.
    var compactedOldest: Int64 {
        assert(kind == .slotCompacted)
        return next
    }
    /// Slot moved (ahead): the slot the list moved to.
    var moveTarget: SlotAddress {
        assert(kind == .slotMoved || kind == .slotMovedAhead)
        return SlotAddress(level: Int(truncatingIfNeeded: next), start: reference)
    }
}

private typealias L = TimerEntry.Layout

/// Reads timer entries in place through the timer log's mapping, checking each entry's
/// CRC and position. Walking a list costs no system call and no allocation per entry;
/// only a fired message's key, headers and body are copied out.
struct TimerEntryReader {
    let log: TimerLog
    private let limits: BatchLimits

    init(log: TimerLog) {
        self.log = log
        limits = log.configuration.limits
    }

    /// Runs `body` over the checked bytes of the entry at `address`. `verified`: the caller
    /// checked this entry's CRC a moment ago (the log is append-only and the entry's
    /// segment stays mapped), so only the frame is checked again.
    private func withEntry<R>(at address: Int64, verified: Bool = false, _ body: (UnsafeRawBufferPointer) throws -> R) throws -> R {
        try log.withMappedBytes(at: address) { rest in
            let frame: EntryFrame
            do {
                if verified, rest.count >= TimerEntryFormat.headerSize, let peeked = TimerEntryFormat.peek(rest, at: 0, limits: limits),
                    peeked.totalSize <= rest.count
                {
                    frame = peeked
                } else {
                    frame = try TimerEntryFormat.check(rest, limits: limits)
                }
            } catch let error as StoreError {
                throw StoreError(.corruptBatch, "timer entry at \(address): \(error.message)", position: address)
            }
            guard frame.address == address else {
                throw StoreError(.corruptBatch, "timer entry at \(address) says it is at \(frame.address)", position: address)
            }
            return try body(UnsafeRawBufferPointer(rebasing: rest[..<frame.totalSize]))
        }
    }

    func fields(at address: Int64) throws -> TimerEntryFields {
        try withEntry(at: address) { raw in
            TimerEntryFields(raw, at: address)
        }
    }

    /// The size an entry at `address` declares, without checking it (for accounting the
    /// bytes of an entry that fails its checks: it is gone, its space is not); nil when
    /// even that cannot be read or is out of bounds.
    func declaredSize(at address: Int64) -> Int? {
        try? log.withMappedBytes(at: address) { rest -> Int? in
            guard rest.count >= L.crc else { return nil }
            let total = Int(LittleEndian.load(UInt32.self, rest, L.length)) + L.crc
            return total >= TimerEntry.frameSize && total <= rest.count && total <= limits.maxBatchBytes ? total : nil
        }
    }

    /// The message held at `address` as the wheel hands it over: fixed fields and the
    /// record part copied as it is (one allocation), with the entry's size.
    func fired(at address: Int64, verified: Bool = false) throws -> (message: FiredMessage, size: Int) {
        try withEntry(at: address, verified: verified) { raw in
            guard let kind = TimerEntry.Kind(rawValue: raw[L.kind]), kind.carriesMessage, raw.count >= TimerEntry.recordStart(kind) else {
                throw StoreError(.invalidArgument, "entry at \(address) is not a message")
            }
            let payload = UnsafeRawBufferPointer(rebasing: raw[TimerEntry.recordStart(kind)...])
            guard TimerEntry.payloadIsWellFormed(payload) else {
                throw StoreError(.malformedBatch, "message entry at \(address) is malformed")
            }
            let fired = FiredMessage(
                id: kind == .movedMessage ? LittleEndian.load(Int64.self, raw, L.originalID) : address,
                dueAt: LittleEndian.load(Int64.self, raw, L.dueAt), publishedAt: LittleEndian.load(Int64.self, raw, L.publishedAt),
                destination: LittleEndian.load(UInt32.self, raw, L.destination), payload: Array(payload))
            return (fired, raw.count)
        }
    }

    /// The message held at `address` (an original or a moved one), with its id and the
    /// entry's size.
    func message(at address: Int64, verified: Bool = false) throws -> (message: ScheduledMessage, id: Int64, size: Int) {
        try withEntry(at: address, verified: verified) { raw in
            guard let kind = TimerEntry.Kind(rawValue: raw[L.kind]), kind.carriesMessage else {
                throw StoreError(.invalidArgument, "entry at \(address) is not a message")
            }
            guard let m = TimerEntry.parseMessage(raw) else {
                throw StoreError(.malformedBatch, "message entry at \(address) is malformed")
            }
            return (m, kind == .movedMessage ? LittleEndian.load(Int64.self, raw, L.originalID) : address, raw.count)
        }
    }
}
