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
            case .limitReached: .conflict
            case .closed: .serviceUnavailable
            default: .internalServerError
            }
        self.init(status, "\(error.code)", error.message)
    }

    /// The error as a dashboard page (same status), with a way back.
    func page(_ caller: AdminCaller) -> Response {
        let body = "<p class=\"flash error\" role=\"alert\">\(HTML.escape(message))</p><p class=\"muted\">\(status.code) · \(HTML.escape(code))</p>"
            + (status == .unauthorized ? "<p>\(HTML.link("Log in", "/login"))</p>" : "<p>\(HTML.link("Back to the overview", "/"))</p>")
        var r = Response(
            status: status, headers: Dashboard.pageHeaders,
            body: ResponseBody(byteBuffer: ByteBuffer(string: HTML.page(title: "Something went wrong", current: "", body: body, caller: caller, live: false))))
        for field in headers where field.name != .wwwAuthenticate { r.headers.append(field) }
        return r
    }

    var response: Response {
        var r = AdminRoutes.json(.object([("error", .object([("code", .string(code)), ("message", .string(message))]))]), status: status)
        for field in headers { r.headers.append(field) }
        return r
    }
}
