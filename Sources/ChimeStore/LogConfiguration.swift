/// When an append counts as durable.
public enum DurabilityPolicy: Sendable, Equatable, CustomStringConvertible, LosslessStringConvertible {
    /// `appendDurably` returns once its bytes are fdatasync'ed; concurrent appends share one
    /// sync (group commit). The default.
    case always
    /// A background sync every so many milliseconds; appends return at once.
    case interval(milliseconds: Int)
    /// The operating system decides when to write back; only a clean close syncs.
    case never

    public init?(_ text: String) {
        switch text {
        case "always": self = .always
        case "never": self = .never
        default:
            guard text.hasPrefix("interval="), let ms = Int(text.dropFirst("interval=".count)), ms > 0 else { return nil }
            self = .interval(milliseconds: ms)
        }
    }

    public var description: String {
        switch self {
        case .always: "always"
        case .interval(let ms): "interval=\(ms)"
        case .never: "never"
        }
    }
}

/// Which sealed segments retention deletes: those whose newest record is older than
/// `maxAgeMilliseconds`, and the oldest ones while the log is over `maxBytes`.
public struct RetentionPolicy: Sendable, Equatable {
    public var maxAgeMilliseconds: Int64?
    public var maxBytes: Int64?

    public init(maxAgeMilliseconds: Int64? = nil, maxBytes: Int64? = nil) {
        self.maxAgeMilliseconds = maxAgeMilliseconds
        self.maxBytes = maxBytes
    }
}

public struct LogConfiguration: Sendable, Equatable {
    /// A segment rolls when the next batch would take it past this size.
    public var segmentBytes: Int
    /// One index entry per this many bytes of batches.
    public var indexIntervalBytes: Int
    public var durability: DurabilityPolicy
    public var retention: RetentionPolicy
    public var limits: BatchLimits
    /// Walk every record of an appended batch to check its structure (not only its CRC).
    public var validateRecordsOnAppend: Bool

    /// Offsets one segment may span: index entries hold them relative to the segment's
    /// base in 32 bits. Internal so tests can make it small.
    var maxOffsetsPerSegment = Int64(UInt32.max)

    /// Where the log's files keep their descriptors: the process's shared cache, unless a
    /// test gives a small one of its own.
    var descriptors: DescriptorCache = .shared

    public static let defaultSegmentBytes = 256 << 20
    /// Positions in the index are 32-bit.
    public static let maxSegmentBytes = Int(UInt32.max)

    public init(
        segmentBytes: Int = defaultSegmentBytes,
        indexIntervalBytes: Int = 4096,
        durability: DurabilityPolicy = .always,
        retention: RetentionPolicy = RetentionPolicy(),
        limits: BatchLimits = BatchLimits(),
        validateRecordsOnAppend: Bool = true
    ) {
        self.segmentBytes = segmentBytes
        self.indexIntervalBytes = indexIntervalBytes
        self.durability = durability
        self.retention = retention
        self.limits = limits
        self.validateRecordsOnAppend = validateRecordsOnAppend
    }

    func validate() throws {
        guard segmentBytes >= RecordBatchHeader.size, segmentBytes <= Self.maxSegmentBytes else {
            throw StoreError(.invalidArgument, "segment size \(segmentBytes) must be between \(RecordBatchHeader.size) and \(Self.maxSegmentBytes) bytes")
        }
        guard indexIntervalBytes > 0 else { throw StoreError(.invalidArgument, "index interval must be positive") }
        guard limits.maxBatchBytes >= RecordBatchHeader.size, limits.maxBatchBytes <= Self.maxSegmentBytes else {
            throw StoreError(.invalidArgument, "max batch size \(limits.maxBatchBytes) is out of range")
        }
        if case .interval(let ms) = durability, ms <= 0 {
            throw StoreError(.invalidArgument, "sync interval must be positive")
        }
    }
}
