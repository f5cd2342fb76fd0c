import ChimeProtocol

/// What a client call ran into: the broker's refusal (`code` ≥ 100 are engine errors, see
/// docs/formats.md), a lost connection, or a broker that answered something this client
/// cannot make sense of. A lost connection is worth retrying (idempotently); a protocol
/// violation is not — the same request would get the same answer.
public struct ClientError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable {
        /// The broker answered with an error frame (`code` says why).
        case refused
        /// The connection was lost or could not be made.
        case disconnected
        /// The broker's answer broke the protocol (a wrong number of results, an id missing).
        case protocolViolation
    }

    public let kind: Kind
    /// The wire code (0 unless `kind` is `.refused`).
    public let code: UInt16
    public let message: String

    /// A refusal with its wire code; code 0 means a lost connection (as before `kind`).
    public init(code: UInt16, message: String) {
        self.kind = code == 0 ? .disconnected : .refused
        self.code = code
        self.message = message
    }

    private init(kind: Kind, message: String) {
        self.kind = kind
        self.code = 0
        self.message = message
    }

    init(_ reply: ErrorReply) { self.init(code: reply.code, message: reply.message) }

    public static func disconnected(_ why: String) -> ClientError { ClientError(kind: .disconnected, message: why) }

    public static func protocolViolation(_ why: String) -> ClientError { ClientError(kind: .protocolViolation, message: why) }

    /// The code by name, to compare with (`error.wireCode == .unknownMember`).
    public var wireCode: WireErrorCode { WireErrorCode(rawValue: code) }

    public var isDisconnected: Bool { kind == .disconnected }
    public var isProtocolViolation: Bool { kind == .protocolViolation }

    public var description: String {
        switch kind {
        case .refused: "error \(code): \(message)"
        case .disconnected: "disconnected: \(message)"
        case .protocolViolation: "protocol violation: \(message)"
        }
    }
}
