import NIOCore

// Version 7: schedules (opcodes 25–28). Definitions and answers travel as UTF-8 JSON
// documents in a bytes field (docs/formats.md, "Schedules"): the same document the
// broker's schedule table stores, decoded with ChimeSchedule's types on both sides. They
// are operations, not a hot path; a schedule's firing never crosses the wire.

/// `scheduleWrite` (25): create, update, or create-or-update one schedule.
public struct ScheduleWriteRequest: WireMessage {
    /// 0 create, 1 update, 2 create or update.
    public var mode: UInt8
    /// The schedule as JSON (`name`, `spec`, `target`, `options`).
    public var definition: [UInt8]

    public init(mode: UInt8, definition: [UInt8]) {
        self.mode = mode
        self.definition = definition
    }
    public init(from r: inout WireReader) throws {
        mode = try r.u8("mode")
        guard mode <= 2 else { throw ProtocolError(.malformed, "unknown schedule write mode \(mode)") }
        definition = try r.bytes("definition")
    }
    public func encode(into b: inout ByteBuffer) {
        b.writeWire(mode)
        b.writeWire(bytes: definition)
    }
}

/// `scheduleControl` (26): pause, resume, delete or trigger one schedule.
public struct ScheduleControlRequest: WireMessage {
    public static let pause: UInt8 = 0
    public static let resume: UInt8 = 1
    public static let delete: UInt8 = 2
    public static let trigger: UInt8 = 3

    public var name: String
    public var action: UInt8

    public init(name: String, action: UInt8) {
        self.name = name
        self.action = action
    }
    public init(from r: inout WireReader) throws {
        name = try r.string("name")
        action = try r.u8("action")
        guard action <= 3 else { throw ProtocolError(.malformed, "unknown schedule action \(action)") }
    }
    public func encode(into b: inout ByteBuffer) {
        b.writeWire(name)
        b.writeWire(action)
    }
}

/// `scheduleBackfill` (27): publish now the occurrences of a past range.
public struct ScheduleBackfillRequest: WireMessage {
    public var name: String
    public var from: Int64
    public var to: Int64

    public init(name: String, from: Int64, to: Int64) {
        self.name = name
        self.from = from
        self.to = to
    }
    public init(from r: inout WireReader) throws {
        name = try r.string("name")
        from = try r.i64("from")
        to = try r.i64("to")
    }
    public func encode(into b: inout ByteBuffer) {
        b.writeWire(name)
        b.writeWire(from)
        b.writeWire(to)
    }
}

/// `scheduleList` (28): one schedule (a name) or all (empty), each with its next
/// `upcoming` occurrences (0–1,000).
public struct ScheduleListRequest: WireMessage {
    public var name: String
    public var upcoming: UInt32

    public init(name: String = "", upcoming: UInt32 = 0) {
        self.name = name
        self.upcoming = upcoming
    }
    public init(from r: inout WireReader) throws {
        name = try r.string("name")
        upcoming = try r.u32("upcoming")
        guard upcoming <= 1_000 else { throw ProtocolError(.malformed, "upcoming \(upcoming) is over 1000") }
    }
    public func encode(into b: inout ByteBuffer) {
        b.writeWire(name)
        b.writeWire(upcoming)
    }
}

/// The answer to opcodes 25–28: one JSON document (docs/formats.md says which).
public struct ScheduleReply: WireMessage {
    public var document: [UInt8]

    public init(document: [UInt8]) { self.document = document }
    public init(from r: inout WireReader) throws { document = try r.bytes("document") }
    public func encode(into b: inout ByteBuffer) { b.writeWire(bytes: document) }
}
