import ChimeStore

/// A delayed record as the wheel keeps it: what the destination will receive when it fires.
public struct ScheduledMessage: Sendable, Equatable {
    public var dueAt: Int64
    public var publishedAt: Int64
    /// Where it goes when it fires (0 = the partition's ready log; other values are
    /// assigned by the broker, e.g. a group's retry log).
    public var destination: UInt32
    public var key: [UInt8]?
    public var headers: [RecordHeader]
    public var body: [UInt8]

    public init(dueAt: Int64, publishedAt: Int64, destination: UInt32 = 0, key: [UInt8]? = nil, headers: [RecordHeader] = [], body: [UInt8]) {
        self.dueAt = dueAt
        self.publishedAt = publishedAt
        self.destination = destination
        self.key = key
        self.headers = headers
        self.body = body
    }
}

/// One entry of the timer log, format version 4 (docs/formats.md). Every kind shares a
/// 48-byte frame; only messages carry more.
///
///     0  i64 position    the entry's own byte position in the timer log (stamped on append)
///     8  u32 length      bytes after this field
///    12  u32 crc         CRC-32C of bytes [16, end)
///    16  u8  magic       4 (still read: version 3, kinds 2-11; version 2, kinds 2-10;
///                        version 1, kinds 2-6 and byte 19 always 0)
///    17  u8  kind        2 message, 3 link, 4 cancel, 5 slot cleared, 6 slot fired,
///                        7 cascade progress, 8 moved message, 9 slot compacted, 10 fire sequence,
///                        11 hand-over, 12 slot moved, 13 slot moved ahead
///    18  u8  level       wheel level of the slot the entry is linked into (markers: the slot's)
///    19  u8  continues   1: more entries of the same append follow (all but its last);
///                        an append cut short by a crash is dropped as a whole on opening
///    20  u16 slot
///    22  u16 reserved    0
///    24  i64 dueAt       ms since the Unix epoch (markers: the slot's start time; a level-0
///                        cancel: its slot's start)
///    32  i64 next        position of the next entry of the same slot list; -1 ends the list;
///                        slot compacted: the lowest position the slot refers to afterwards
///    40  i64 reference   message, moved message: the wheel time (ms) when it was placed;
///                        link: position of the message entry; cancel: the message's id;
///                        slot fired: the fire sequence number; slot cleared: -1; cascade
///                        progress: the first entry of the slot's list not yet cascaded
///                        ahead (-1: all were); slot compacted: the cut (entries below it
///                        were rewritten); fire sequence: the last hand-over's number
///                        (dueAt: the wheel time); slot moved (ahead): the start of the
///                        slot the list moved to, whose level is in `next`
///    message, moved message:
///    48  u32 destination
///    52  u32 reserved    0
///    56  i64 publishedAt
///    moved message only:
///    64  i64 originalID  the message's id: the position of its original `message` entry
///    64 (72 when moved)  varint keyLength + 1 (0 = no key), key, varint headerCount,
///        per header: varint nameLength, name, varint valueLength, value; then the body
public struct TimerEntry: Sendable, Equatable {
    /// Byte offsets of the fields above, the one place they are written down.
    public enum Layout {
        public static let position = 0
        public static let length = 8
        public static let crc = 12
        /// Where the CRC starts covering.
        public static let checked = 16
        public static let magic = 16
        public static let kind = 17
        public static let level = 18
        public static let continues = 19
        public static let slot = 20
        public static let reserved = 22
        public static let dueAt = 24
        public static let next = 32
        public static let reference = 40
        /// Message entries only.
        public static let destination = 48
        public static let messageReserved = 52
        public static let publishedAt = 56
        /// Moved messages only.
        public static let originalID = 64
    }

    public enum Kind: UInt8, Sendable, CaseIterable {
        case message = 2, link = 3, cancel = 4, slotCleared = 5, slotFired = 6, cascadeProgress = 7, movedMessage = 8, slotCompacted = 9,
            fireSequence = 10, handOver = 11, slotMoved = 12, slotMovedAhead = 13

        /// Carries a scheduled record: an original `message` or a compaction's `movedMessage`.
        public var carriesMessage: Bool { self == .message || self == .movedMessage }
        /// Linked into a slot's list (the rest are markers about a slot or the wheel).
        public var isListed: Bool { self == .message || self == .movedMessage || self == .link || self == .cancel }
    }

    /// The format version written: 4 added kinds 12 and 13 (slot moved, slot moved ahead),
    /// 3 kind 11 (hand-over). Version 3 (kinds 2–11), version 2 (kinds 2–10) and version 1
    /// (kinds 2–6, byte 19 always 0) are still read.
    public static let magic: UInt8 = 4
    public static let frameSize = 48
    static let messageFixedSize = 64
    static let noPosition: Int64 = -1
    /// Levels above this cannot exist (8 bits of level, and no wheel needs more).
    static let maxLevel = 15

    public let bytes: [UInt8]
    public let kind: Kind

    public var position: Int64 { field(Int64.self, Layout.position) }
    public var level: Int { Int(bytes[Layout.level]) }
    public var slot: Int { Int(field(UInt16.self, Layout.slot)) }
    public var dueAt: Int64 { field(Int64.self, Layout.dueAt) }
    public var next: Int64 { field(Int64.self, Layout.next) }
    public var reference: Int64 { field(Int64.self, Layout.reference) }
    /// The entry holding the message: a message (original or moved) is its own; a link
    /// refers to one. (A cancel's `reference` is a message id, not a position to read.)
    public var target: Int64 { kind.carriesMessage ? position : reference }
    /// A moved message's id: the position of the original `message` entry.
    public var originalID: Int64? { kind == .movedMessage ? field(Int64.self, Layout.originalID) : nil }
    /// The id of the message an entry is about, when the entry alone tells it.
    public var messageID: Int64? {
        switch kind {
        case .message: position
        case .movedMessage: originalID
        case .cancel: reference
        default: nil
        }
    }
    /// For a message: the wheel time when it was placed.
    public var placedAt: Int64 { reference }
    /// More entries of the same append follow this one.
    public var continues: Bool { bytes[Layout.continues] == 1 }

    @inline(__always)
    private func field<T: FixedWidthInteger>(_ type: T.Type, _ at: Int) -> T {
        bytes.withUnsafeBytes { T(littleEndian: $0.loadUnaligned(fromByteOffset: at, as: T.self)) }
    }

    init(checked bytes: [UInt8]) {
        self.bytes = bytes
        kind = Kind(rawValue: bytes[Layout.kind])!
    }

    /// The scheduled message of a `message` entry.
    public func message() throws -> ScheduledMessage {
        guard kind.carriesMessage else { throw StoreError(.invalidArgument, "a \(kind) entry holds no message") }
        return try bytes.withUnsafeBytes { raw in
            guard let parsed = Self.parseMessage(raw) else {
                throw StoreError(.malformedBatch, "message entry at \(position) is malformed")
            }
            return parsed
        }
    }

    // MARK: - Encoding

    /// Appends one frame-only entry (link, cancel or marker) to `out`; position 0 until the
    /// log stamps it.
    public static func append(
        _ kind: Kind, level: Int, slot: Int, dueAt: Int64, next: Int64, reference: Int64, continues: Bool = false, to out: inout [UInt8]
    ) {
        precondition(kind != .message, "messages carry a payload: use appendMessage")
        let start = out.count
        appendFrame(
            kind, length: frameSize, level: level, slot: slot, dueAt: dueAt, next: next, reference: reference, continues: continues, to: &out)
        seal(&out, from: start)
    }

    /// Appends a message entry to `out`.
    /// `placedAt` is the wheel time when the message was placed: replay restores the wheel
    /// time from it, and an overdue message's slot starts there.
    /// With `originalID` the entry is a `movedMessage`: a compaction's copy of the message
    /// whose id (original position) that is.
    public static func appendMessage(
        _ m: ScheduledMessage, level: Int, slot: Int, next: Int64, placedAt: Int64, originalID: Int64? = nil, continues: Bool = false,
        to out: inout [UInt8]
    ) {
        let start = out.count
        var payload: [UInt8] = []
        if let key = m.key {
            VarInt.append(UInt64(key.count) + 1, to: &payload)
            payload.append(contentsOf: key)
        } else {
            VarInt.append(0, to: &payload)
        }
        VarInt.append(UInt64(m.headers.count), to: &payload)
        for h in m.headers {
            let name = Array(h.name.utf8)
            VarInt.append(UInt64(name.count), to: &payload)
            payload.append(contentsOf: name)
            VarInt.append(UInt64(h.value.count), to: &payload)
            payload.append(contentsOf: h.value)
        }
        let kind: Kind = originalID == nil ? .message : .movedMessage
        appendFrame(
            kind, length: recordStart(kind) + payload.count + m.body.count, level: level, slot: slot, dueAt: m.dueAt, next: next,
            reference: placedAt, continues: continues, to: &out)
        LittleEndian.append(m.destination, to: &out)
        LittleEndian.append(UInt32(0), to: &out)
        LittleEndian.append(m.publishedAt, to: &out)
        if let originalID { LittleEndian.append(originalID, to: &out) }
        out.append(contentsOf: payload)
        out.append(contentsOf: m.body)
        seal(&out, from: start)
    }

    private static func appendFrame(
        _ kind: Kind, length total: Int, level: Int, slot: Int, dueAt: Int64, next: Int64, reference: Int64, continues: Bool = false,
        to out: inout [UInt8]
    ) {
        precondition((0...maxLevel).contains(level) && (0...Int(UInt16.max)).contains(slot))
        out.reserveCapacity(out.count + total)
        LittleEndian.append(Int64(0), to: &out)
        LittleEndian.append(UInt32(total - 12), to: &out)
        LittleEndian.append(UInt32(0), to: &out)  // CRC, filled by seal
        out.append(magic)
        out.append(kind.rawValue)
        out.append(UInt8(level))
        out.append(continues ? 1 : 0)
        LittleEndian.append(UInt16(slot), to: &out)
        LittleEndian.append(UInt16(0), to: &out)
        LittleEndian.append(dueAt, to: &out)
        LittleEndian.append(next, to: &out)
        LittleEndian.append(reference, to: &out)
    }

    /// Sets or clears an encoded entry's `continues` flag (and seals it again).
    static func setContinues(_ continues: Bool, _ entry: inout [UInt8]) {
        entry[Layout.continues] = continues ? 1 : 0
        seal(&entry, from: 0)
    }

    private static func seal(_ out: inout [UInt8], from start: Int) {
        out.withUnsafeMutableBytes { b in
            let crc = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: b[(start + Layout.checked)...]))
            LittleEndian.store(crc, b, start + Layout.crc)
        }
    }

    // MARK: - Decoding

    /// Where the record part of a message entry starts: a moved message has its original
    /// id first.
    static func recordStart(_ kind: Kind) -> Int { kind == .movedMessage ? messageFixedSize + 8 : messageFixedSize }

    static func parseMessage(_ raw: UnsafeRawBufferPointer) -> ScheduledMessage? {
        guard raw.count > Layout.kind, let kind = Kind(rawValue: raw[Layout.kind]), kind.carriesMessage, raw.count >= recordStart(kind),
            let parts = decodePayload(UnsafeRawBufferPointer(rebasing: raw[recordStart(kind)...]))
        else { return nil }
        return ScheduledMessage(
            dueAt: LittleEndian.load(Int64.self, raw, Layout.dueAt),
            publishedAt: LittleEndian.load(Int64.self, raw, Layout.publishedAt),
            destination: LittleEndian.load(UInt32.self, raw, Layout.destination),
            key: parts.key, headers: parts.headers, body: parts.body)
    }

    /// Whether a record part is well formed, walked without allocating.
    static func payloadIsWellFormed(_ raw: UnsafeRawBufferPointer) -> Bool {
        let end = raw.count
        var i = 0
        guard let keyField = VarInt.read(raw, &i, end: end) else { return false }
        if keyField > 0 {
            guard keyField - 1 <= UInt64(end - i) else { return false }
            i += Int(keyField - 1)
        }
        guard let count = VarInt.read(raw, &i, end: end), count <= UInt64(end - i) / 2 else { return false }
        for _ in 0..<Int(count) {
            guard let n = VarInt.read(raw, &i, end: end), n <= UInt64(end - i) else { return false }
            i += Int(n)
            guard let v = VarInt.read(raw, &i, end: end), v <= UInt64(end - i) else { return false }
            i += Int(v)
        }
        return true
    }

    /// Decodes a record part: key, headers, body.
    static func decodePayload(_ raw: UnsafeRawBufferPointer) -> (key: [UInt8]?, headers: [RecordHeader], body: [UInt8])? {
        let end = raw.count
        var i = 0
        guard let keyField = VarInt.read(raw, &i, end: end) else { return nil }
        var key: [UInt8]? = nil
        if keyField > 0 {
            guard keyField - 1 <= UInt64(end - i) else { return nil }
            key = Array(raw[i..<(i + Int(keyField - 1))])
            i += Int(keyField - 1)
        }
        guard let count = VarInt.read(raw, &i, end: end), count <= UInt64(end - i) / 2 else { return nil }
        var headers: [RecordHeader] = []
        for _ in 0..<Int(count) {
            guard let n = VarInt.read(raw, &i, end: end), n <= UInt64(end - i) else { return nil }
            let name = String(decoding: UnsafeRawBufferPointer(rebasing: raw[i..<(i + Int(n))]), as: UTF8.self)
            i += Int(n)
            guard let v = VarInt.read(raw, &i, end: end), v <= UInt64(end - i) else { return nil }
            headers.append(RecordHeader(name: name, value: Array(raw[i..<(i + Int(v))])))
            i += Int(v)
        }
        return (key, headers, Array(raw[i..<end]))
    }
}

/// Timer entries in segment files `<20-digit base position>.timer`, addressed by byte
/// position so a slot's list can be walked with one direct read per entry.
public enum TimerEntryFormat: SegmentEntryFormat {
    public typealias Entry = TimerEntry

    public static let fileExtension = "timer"
    public static let addressing = LogAddressing.bytes
    public static let headerSize = TimerEntry.frameSize

    @inline(__always)
    public static func peek(_ raw: UnsafeRawBufferPointer, at: Int, limits: BatchLimits) -> EntryFrame? {
        typealias L = TimerEntry.Layout
        let length = Int(LittleEndian.load(UInt32.self, raw, at + L.length))
        let total = length + L.crc
        let version = raw[at + L.magic]
        let kindByte = raw[at + L.kind]
        guard version == TimerEntry.magic || (version == 3 && kindByte <= 11) || (version == 2 && kindByte <= 10)
            || (version == 1 && kindByte <= 6 && raw[at + L.continues] == 0),
            let kind = TimerEntry.Kind(rawValue: kindByte),
            Int(raw[at + L.level]) <= TimerEntry.maxLevel, raw[at + L.continues] <= 1, LittleEndian.load(UInt16.self, raw, at + L.reserved) == 0,
            total <= limits.maxBatchBytes,
            kind.carriesMessage ? total >= TimerEntry.recordStart(kind) + 2 : total == TimerEntry.frameSize
        else { return nil }
        let position = LittleEndian.load(Int64.self, raw, at + L.position)
        return EntryFrame(address: position, totalSize: total, span: Int64(total), maxTimestamp: .min)
    }

    public static func check(_ raw: UnsafeRawBufferPointer, limits: BatchLimits) throws -> EntryFrame {
        guard raw.count >= headerSize else {
            throw StoreError(.malformedBatch, "\(raw.count) bytes is shorter than the \(headerSize)-byte timer entry frame")
        }
        guard let frame = peek(raw, at: 0, limits: limits) else {
            throw StoreError(.malformedBatch, "not a timer entry header (version \(raw[TimerEntry.Layout.magic]), kind \(raw[TimerEntry.Layout.kind]))")
        }
        guard frame.address >= 0 else { throw StoreError(.malformedBatch, "negative position \(frame.address)") }
        guard raw.count >= frame.totalSize else {
            throw StoreError(.malformedBatch, "timer entry declares \(frame.totalSize) bytes, only \(raw.count) present")
        }
        if TimerEntry.Kind(rawValue: raw[TimerEntry.Layout.kind])!.carriesMessage && LittleEndian.load(UInt32.self, raw, TimerEntry.Layout.messageReserved) != 0 {
            throw StoreError(.malformedBatch, "reserved bytes of a message entry are not zero")
        }
        let stored = LittleEndian.load(UInt32.self, raw, TimerEntry.Layout.crc)
        let crc = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: raw[TimerEntry.Layout.checked..<frame.totalSize]))
        guard crc == stored else {
            throw StoreError(.corruptBatch, "CRC mismatch: stored 0x\(String(stored, radix: 16)), computed 0x\(String(crc, radix: 16))")
        }
        return frame
    }

    public static func validateForAppend(_ bytes: [UInt8], frame: EntryFrame, configuration: LogConfiguration) throws {
        let kind = TimerEntry.Kind(rawValue: bytes[TimerEntry.Layout.kind])!
        guard kind.carriesMessage else { return }
        // Walked in place: nothing is decoded into arrays.
        let ok = bytes.withUnsafeBytes { raw in
            raw.count >= TimerEntry.recordStart(kind) + 2
                && TimerEntry.payloadIsWellFormed(UnsafeRawBufferPointer(rebasing: raw[TimerEntry.recordStart(kind)...]))
        }
        if !ok { throw StoreError(.malformedBatch, "message entry payload is malformed") }
    }

    public static func nextAddress(after entry: TimerEntry) -> Int64 { entry.position + Int64(entry.bytes.count) }

    public static func entry(checked bytes: [UInt8], frame: EntryFrame) -> TimerEntry {
        TimerEntry(checked: bytes)
    }
}

/// The timer log of a partition.
public typealias TimerLog = SegmentLog<TimerEntryFormat>
