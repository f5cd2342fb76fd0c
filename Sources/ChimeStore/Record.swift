/// One message as producers write it and consumers read it.
public struct Record: Sendable, Equatable {
    public var timestamp: Int64
    public var key: [UInt8]?
    public var headers: [RecordHeader]
    public var body: [UInt8]

    public init(timestamp: Int64, key: [UInt8]? = nil, headers: [RecordHeader] = [], body: [UInt8]) {
        self.timestamp = timestamp
        self.key = key
        self.headers = headers
        self.body = body
    }
}

public struct RecordHeader: Sendable, Equatable {
    public var name: String
    public var value: [UInt8]

    public init(name: String, value: [UInt8]) {
        self.name = name
        self.value = value
    }
}

/// A record as stored: the record plus the offset the log gave it.
public struct StoredRecord: Sendable, Equatable {
    public var offset: Int64
    public var record: Record
}

/// How a batch's record section is compressed (attribute bits 0–2).
public enum Compression: UInt16, Sendable, CaseIterable, CustomStringConvertible {
    case none = 0
    case lz4 = 1

    public var description: String { self == .none ? "none" : "lz4" }
}
