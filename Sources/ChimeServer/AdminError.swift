import ChimeBroker
import Hummingbird

/// What the admin API answers when a request fails: an HTTP status, and
/// `{"error": {"code": …, "message": …}}`.
struct AdminError: Error {
    let status: HTTPResponse.Status
    let code: String
    let message: String
    var headers: HTTPFields = [:]

    init(_ status: HTTPResponse.Status, _ code: String, _ message: String) {
        self.status = status
        self.code = code
        self.message = message
    }

    /// The engine's refusals: unknown names are 404, a malformed name 400, a closing broker 503.
    init(_ error: BrokerError) {
        let status: HTTPResponse.Status =
            switch error.code {
            case .unknownTopic, .unknownGroup, .unknownMessage, .unknownSchedule: .notFound
            case .invalidName, .invalidArgument, .badSchedule, .unknownTimeZone, .badPartition, .malformedBatch, .corruptBatch: .badRequest
            case .lockHeld, .lockLost, .staleToken, .callbackClosed: .conflict
            case .topicExists, .groupExists, .scheduleExists, .groupInUse, .sequenceGap: .conflict
            case .unknownMember, .fenced, .unknownDelivery, .alreadyAcked, .leaseExpired: .conflict
            case .messageTooLarge: .contentTooLarge
            case .limitReached: .tooManyRequests
            case .closed: .serviceUnavailable
            default: .internalServerError
            }
        self.init(status, "\(error.code)", error.message)
    }

    var response: Response {
        var r = AdminRoutes.json(.object([("error", .object([("code", .string(code)), ("message", .string(message))]))]), status: status)
        for field in headers { r.headers.append(field) }
        return r
    }
}
