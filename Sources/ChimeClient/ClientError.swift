import ChimeProtocol

/// What a client call ran into: the broker's answer (`code` ≥ 100 are engine errors, see
/// docs/formats.md), a protocol error, or a lost connection.
public struct ClientError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The wire code (0: the connection was lost or could not be made).
    public let code: UInt16
    public let message: String

    public init(code: UInt16, message: String) {
        self.code = code
        self.message = message
    }

    init(_ reply: ErrorReply) { self.init(code: reply.code, message: reply.message) }

    public static func disconnected(_ why: String) -> ClientError { ClientError(code: 0, message: why) }

    /// The code by name, to compare with (`error.wireCode == .unknownMember`).
    public var wireCode: WireErrorCode { WireErrorCode(rawValue: code) }

    public var isDisconnected: Bool { code == 0 }
    public var description: String { code == 0 ? "disconnected: \(message)" : "error \(code): \(message)" }
}
