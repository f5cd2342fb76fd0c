#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Every failure ChimeStore reports. A struct around a private code enum so cases can be
/// added without breaking callers; match on `code` with the static members.
public struct StoreError: Error, Sendable, Equatable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        fileprivate enum Base: String, Sendable {
            case io, noSpace, corruptBatch, malformedBatch, batchTooLarge, compression
            case offsetOutOfRange, logFailed, closed, invalidArgument, locked
        }
        fileprivate let base: Base
        public var description: String { base.rawValue }

        /// An I/O call failed (EIO and anything else not listed below).
        public static let io = Code(base: .io)
        /// The device is full (ENOSPC / EDQUOT).
        public static let noSpace = Code(base: .noSpace)
        /// A stored batch failed its CRC or structure check.
        public static let corruptBatch = Code(base: .corruptBatch)
        /// A batch handed to `append` is not well formed.
        public static let malformedBatch = Code(base: .malformedBatch)
        /// A batch, or its declared uncompressed size, is over the configured limit.
        public static let batchTooLarge = Code(base: .batchTooLarge)
        /// LZ4 could not compress or decompress.
        public static let compression = Code(base: .compression)
        /// The offset is below the log start (deleted by retention) or damaged.
        public static let offsetOutOfRange = Code(base: .offsetOutOfRange)
        /// An earlier fsync or write failed; the log refuses appends until it is reopened.
        public static let logFailed = Code(base: .logFailed)
        /// The log was closed.
        public static let closed = Code(base: .closed)
        /// A configuration value or argument is not valid.
        public static let invalidArgument = Code(base: .invalidArgument)
        /// Another process holds the data directory.
        public static let locked = Code(base: .locked)
    }

    public let code: Code
    public let message: String
    /// The file concerned, when there is one.
    public let file: String?
    /// The byte position inside `file`, when known.
    public let position: Int64?
    /// The system errno, for I/O failures.
    public let errno: Int32?
    /// For corruption found while reading: the first offset after the damaged range that can
    /// be read again (nil when unknown).
    public let resumeOffset: Int64?

    public init(
        _ code: Code, _ message: String, file: String? = nil, position: Int64? = nil,
        errno: Int32? = nil, resumeOffset: Int64? = nil
    ) {
        self.code = code
        self.message = message
        self.file = file
        self.position = position
        self.errno = errno
        self.resumeOffset = resumeOffset
    }

    /// Maps a failed system call to an error: ENOSPC/EDQUOT become `.noSpace`, the rest `.io`.
    package static func system(_ operation: String, errno err: Int32, file: String?, position: Int64? = nil) -> StoreError {
        let text = String(cString: strerror(err))
        let code: Code = (err == ENOSPC || err == EDQUOT) ? .noSpace : .io
        return StoreError(code, "\(operation) failed: \(text)", file: file, position: position, errno: err)
    }

    /// The process (EMFILE) or the system (ENFILE) has no file descriptor left.
    public var isOutOfDescriptors: Bool { errno == EMFILE || errno == ENFILE }

    public var description: String {
        var s = "\(code): \(message)"
        if let file { s += " [file \(file)" + (position.map { " at byte \($0)" } ?? "") + "]" }
        if let resumeOffset { s += " (readable again from offset \(resumeOffset))" }
        return s
    }
}
