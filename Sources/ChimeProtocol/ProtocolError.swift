/// What is wrong with bytes received: a struct wrapping a private code, so cases can be
/// added. The server answers with an error frame carrying `code.wire` and the message, then
/// (for framing errors) closes the connection.
public struct ProtocolError: Error, Sendable, Equatable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        fileprivate enum Base {
            case frameTooLarge, frameTooShort, unknownOpcode, badFlags, malformed
            case unsupportedVersion, unauthenticated, tooManyRecords
        }
        fileprivate let base: Base
        public var description: String { "\(base)" }
        /// The code sent in error frames (docs/formats.md).
        public var wireCode: WireErrorCode {
            switch base {
            case .frameTooLarge: .frameTooLarge
            case .frameTooShort: .frameTooShort
            case .unknownOpcode: .unknownOpcode
            case .badFlags: .badFlags
            case .malformed: .malformed
            case .unsupportedVersion: .unsupportedVersion
            case .unauthenticated: .unauthenticated
            case .tooManyRecords: .tooManyRecords
            }
        }
        /// The number sent in error frames.
        public var wire: UInt16 { wireCode.rawValue }

        /// The length field is over the configured maximum (checked before reading on).
        public static let frameTooLarge = Code(base: .frameTooLarge)
        /// The length field is below the 8 bytes every frame has after it.
        public static let frameTooShort = Code(base: .frameTooShort)
        public static let unknownOpcode = Code(base: .unknownOpcode)
        public static let badFlags = Code(base: .badFlags)
        /// A payload that does not parse: a field runs past the end, bytes are left over, a
        /// string is not UTF-8, a count is impossible.
        public static let malformed = Code(base: .malformed)
        public static let unsupportedVersion = Code(base: .unsupportedVersion)
        /// Anything but a hello before the handshake succeeded, or a wrong token.
        public static let unauthenticated = Code(base: .unauthenticated)
        /// A batch with more records than allowed.
        public static let tooManyRecords = Code(base: .tooManyRecords)
    }

    public let code: Code
    public let message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code): \(message)" }
}
