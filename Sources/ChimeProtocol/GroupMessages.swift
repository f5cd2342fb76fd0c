import NIOCore

// Groups as objects of their own (version 5): create, configure, read, delete.

/// A group's settings, all of them or some (a patch). On the wire a u32 mask of the fields
/// present, then each present field in bit order (docs/formats.md, "Group settings"). A
/// reply carries them all. Numbers that may be "none" are -1 for none; rates and bursts are
/// in thousandths (a rate of 2.5 per second is 2500).
public struct WireGroupSettings: WireMessage {
    public enum Mode: UInt8, Sendable, CaseIterable {
        case partitioned = 0
        case shared = 1
    }

    public var mode: Mode?
    public var maxInFlight: UInt32?
    public var leaseMilliseconds: Int64?
    public var sessionTimeoutMilliseconds: Int64?
    /// -1: the topic's.
    public var maxAttempts: Int64?
    public var keyOrdering: Bool?
    /// -1: no limit.
    public var keyConcurrency: Int64?
    /// Deliveries per second × 1000 for the whole group; -1: no limit.
    public var rateLimitMillis: Int64?
    /// × 1000; -1: one second's worth.
    public var rateBurstMillis: Int64?
    /// Deliveries per second of one key × 1000; -1: no limit.
    public var keyRateLimitMillis: Int64?
    /// × 1000; -1: one second's worth (at least one).
    public var keyRateBurstMillis: Int64?
    public var maxWindow: UInt32?

    public init(
        mode: Mode? = nil, maxInFlight: UInt32? = nil, leaseMilliseconds: Int64? = nil, sessionTimeoutMilliseconds: Int64? = nil,
        maxAttempts: Int64? = nil, keyOrdering: Bool? = nil, keyConcurrency: Int64? = nil, rateLimitMillis: Int64? = nil,
        rateBurstMillis: Int64? = nil, keyRateLimitMillis: Int64? = nil, keyRateBurstMillis: Int64? = nil, maxWindow: UInt32? = nil
    ) {
        self.mode = mode
        self.maxInFlight = maxInFlight
        self.leaseMilliseconds = leaseMilliseconds
        self.sessionTimeoutMilliseconds = sessionTimeoutMilliseconds
        self.maxAttempts = maxAttempts
        self.keyOrdering = keyOrdering
        self.keyConcurrency = keyConcurrency
        self.rateLimitMillis = rateLimitMillis
        self.rateBurstMillis = rateBurstMillis
        self.keyRateLimitMillis = keyRateLimitMillis
        self.keyRateBurstMillis = keyRateBurstMillis
        self.maxWindow = maxWindow
    }

    /// Bits of the mask, in the order the fields follow it.
    static let fieldCount = 12

    public init(from r: inout WireReader) throws {
        let mask = try r.u32("settings mask")
        guard mask >> Self.fieldCount == 0 else { throw ProtocolError(.malformed, "settings mask \(mask) names fields this version does not have") }
        func has(_ bit: Int) -> Bool { mask & (1 << bit) != 0 }
        if has(0) {
            let raw = try r.u8("mode")
            guard let m = Mode(rawValue: raw) else { throw ProtocolError(.malformed, "group mode is 0 or 1, not \(raw)") }
            mode = m
        }
        if has(1) { maxInFlight = try r.u32("max in flight") }
        if has(2) { leaseMilliseconds = try r.i64("lease ms") }
        if has(3) { sessionTimeoutMilliseconds = try r.i64("session timeout ms") }
        if has(4) { maxAttempts = try r.i64("max attempts") }
        if has(5) {
            let flag = try r.u8("key ordering")
            guard flag <= 1 else { throw ProtocolError(.malformed, "key ordering is 0 or 1, not \(flag)") }
            keyOrdering = flag == 1
        }
        if has(6) { keyConcurrency = try r.i64("key concurrency") }
        if has(7) { rateLimitMillis = try r.i64("rate limit") }
        if has(8) { rateBurstMillis = try r.i64("rate burst") }
        if has(9) { keyRateLimitMillis = try r.i64("key rate limit") }
        if has(10) { keyRateBurstMillis = try r.i64("key rate burst") }
        if has(11) { maxWindow = try r.u32("max window") }
    }

    public func encode(into b: inout ByteBuffer) {
        let present: [Bool] = [
            mode != nil, maxInFlight != nil, leaseMilliseconds != nil, sessionTimeoutMilliseconds != nil, maxAttempts != nil,
            keyOrdering != nil, keyConcurrency != nil, rateLimitMillis != nil, rateBurstMillis != nil, keyRateLimitMillis != nil,
            keyRateBurstMillis != nil, maxWindow != nil,
        ]
        assert(present.count == Self.fieldCount)
        b.writeWire(present.enumerated().reduce(UInt32(0)) { $1.element ? $0 | (1 << $1.offset) : $0 })
        if let mode { b.writeWire(mode.rawValue) }
        if let maxInFlight { b.writeWire(maxInFlight) }
        if let leaseMilliseconds { b.writeWire(leaseMilliseconds) }
        if let sessionTimeoutMilliseconds { b.writeWire(sessionTimeoutMilliseconds) }
        if let maxAttempts { b.writeWire(maxAttempts) }
        if let keyOrdering { b.writeWire(UInt8(keyOrdering ? 1 : 0)) }
        if let keyConcurrency { b.writeWire(keyConcurrency) }
        if let rateLimitMillis { b.writeWire(rateLimitMillis) }
        if let rateBurstMillis { b.writeWire(rateBurstMillis) }
        if let keyRateLimitMillis { b.writeWire(keyRateLimitMillis) }
        if let keyRateBurstMillis { b.writeWire(keyRateBurstMillis) }
        if let maxWindow { b.writeWire(maxWindow) }
    }
}

/// Create a group: the broker's defaults for groups with `settings` over them. A group of
/// that name is `groupExists` (119) unless `ifAbsent`; then its settings come back as they
/// are. Reply: the group's settings, all of them.
public struct CreateGroup: WireMessage {
    public var name: String
    public var ifAbsent: Bool
    public var settings: WireGroupSettings
    public init(name: String, ifAbsent: Bool = false, settings: WireGroupSettings = WireGroupSettings()) {
        self.name = name
        self.ifAbsent = ifAbsent
        self.settings = settings
    }
    public init(from r: inout WireReader) throws {
        name = try r.string("group")
        let flag = try r.u8("if absent")
        guard flag <= 1 else { throw ProtocolError(.malformed, "if absent is 0 or 1, not \(flag)") }
        ifAbsent = flag == 1
        settings = try WireGroupSettings(from: &r)
    }
    public func encode(into b: inout ByteBuffer) {
        b.writeWire(name)
        b.writeWire(UInt8(ifAbsent ? 1 : 0))
        settings.encode(into: &b)
    }
}

/// Change some of a group's settings (those present); the others stay. Reply: the group's
/// settings, all of them.
public struct ConfigureGroup: WireMessage {
    public var name: String
    public var settings: WireGroupSettings
    public init(name: String, settings: WireGroupSettings) {
        self.name = name
        self.settings = settings
    }
    public init(from r: inout WireReader) throws {
        name = try r.string("group")
        settings = try WireGroupSettings(from: &r)
    }
    public func encode(into b: inout ByteBuffer) {
        b.writeWire(name)
        settings.encode(into: &b)
    }
}

/// A group by name: read its settings (`describeGroup`), delete it (`deleteGroup`).
public struct GroupRef: WireMessage {
    public var name: String
    public init(name: String) { self.name = name }
    public init(from r: inout WireReader) throws { name = try r.string("group") }
    public func encode(into b: inout ByteBuffer) { b.writeWire(name) }
}
