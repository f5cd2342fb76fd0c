import ChimeProtocol
import Logging
import Synchronization

/// Logs each distinct refusal that is the server's trouble — storage failures, internal
/// errors — once, with its cause: a client that got "internal error (199)" left nothing in
/// the log, and a full disk refusing every publish must not write a line per request
/// either. Remembers at most `limit` distinct causes (then starts over), so a stream of
/// ever-different messages stays bounded.
final class TroubleLog: Sendable {
    static let limit = 1_000
    private let logger: Logger
    private let seen = Mutex<Set<String>>([])

    init(logger: Logger) { self.logger = logger }

    func record(_ reply: ErrorReply, request: String) {
        guard ErrorCodes.isServerTrouble(reply) else { return }
        let first = seen.withLock { seen in
            if seen.count >= Self.limit { seen.removeAll() }
            return seen.insert(reply.message).inserted
        }
        guard first else { return }
        logger.error("request refused", metadata: ["request": "\(request)", "code": "\(reply.code)", "cause": "\(reply.message)"])
    }
}
