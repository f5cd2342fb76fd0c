import ChimeBroker
import ChimeProtocol
import ChimeSchedule
import Foundation
import Hummingbird
import NIOCore
import Synchronization

/// The web dashboard at `/` on the admin port: server-rendered pages over the same engine
/// calls as the admin API (`DashboardPages`), a login form that turns a token into a
/// session cookie (`DashboardLogins`), and form posts for the writes, each checked
/// against its session's CSRF value, the request's origin and the token's scope.
struct Dashboard: Sendable {
    let routes: AdminRoutes
    let sessions: DashboardLogins
    /// Configured tokens (empty: reads are open) and every token a login may use (the
    /// local admin token too, on a server without configured ones).
    let configured: TokenTable
    let everyToken: TokenTable
    let sampler: ActivitySampler
    let overviewCache: OverviewCache

    var broker: Broker { routes.broker }
    var pages: DashboardPages { DashboardPages(dashboard: self) }

    func register(on router: Router<AdminRequestContext>) {
        router.get("/") { request, context in try await html(pages.overview(request, context.caller)) }
        router.get("/topics") { request, context in try await html(pages.topics(request, context.caller)) }
        router.get("/topics/:topic") { request, context in
            try await html(pages.topic(try context.parameters.require("topic"), request, context.caller))
        }
        router.get("/groups") { request, context in try await html(pages.groups(request, context.caller)) }
        router.get("/groups/:group") { request, context in
            try await html(pages.group(try context.parameters.require("group"), request, context.caller))
        }
        router.get("/groups/:group/dead-letters") { request, context in
            try await html(pages.deadLetters(try context.parameters.require("group"), request, context.caller))
        }
        router.get("/schedules") { request, context in try await html(pages.schedules(request, context.caller)) }
        router.get("/jobs") { request, context in try await html(pages.jobs(request, context.caller)) }
        router.get("/locks") { request, context in try await html(pages.locks(request, context.caller)) }
        router.get("/login") { request, context in html(pages.login(request, context.caller, error: nil)) }

        router.post("/login") { request, context in try await login(request, context) }
        router.post("/logout") { request, context in
            _ = try await form(request, context)
            if let s = context.caller.session { sessions.end(s.id) }
            var r = Self.redirect("/")
            r.headers.append(HeaderField(name: .setCookie, value: "\(DashboardLogins.cookieName)=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"))
            return r
        }
        router.post("/groups/:group/dead-letters/redrive") { request, context in
            let name = try context.parameters.require("group")
            let f = try await form(request, context)
            try await routes.requireGroupAdmin(name, context.caller)
            var max = Int.max
            if let given = f["max"] {
                guard let n = Int(given), n >= 1 else { throw AdminError(.badRequest, "invalidArgument", "max must be a whole number of at least 1") }
                max = n
            }
            let moved =
                if let id = f["id"] {
                    try await broker.settleDeadLetters(group: name, [try AdminRoutes.messageID(id)], .redrive)
                } else {
                    try await broker.redrive(group: name, max: max)
                }
            return Self.redirect("/groups/\(HTML.component(name))/dead-letters", flash: "Re-drove \(moved) dead letter\(moved == 1 ? "" : "s") to \(name).")
        }
        router.post("/groups/:group/dead-letters/delete") { request, context in
            let name = try context.parameters.require("group")
            let f = try await form(request, context)
            try await routes.requireGroupAdmin(name, context.caller)
            let id = try AdminRoutes.messageID(f["id"] ?? "")
            let deleted = try await broker.settleDeadLetters(group: name, [id], .delete)
            return Self.redirect("/groups/\(HTML.component(name))/dead-letters", flash: deleted == 1 ? "Deleted dead letter \(id)." : "\(id) was gone already.")
        }
        router.post("/schedules/:name/:action") { request, context in
            let name = try context.parameters.require("name")
            let action = try context.parameters.require("action")
            _ = try await form(request, context)
            try context.caller.require(.admin)
            try context.caller.require(.admin, topic: try await broker.schedule(name, upcoming: 0).schedule.target.topic)
            switch action {
            case "pause": try await broker.controlSchedule(name, .pause)
            case "resume": try await broker.controlSchedule(name, .resume)
            case "trigger": _ = try await broker.triggerSchedule(name)
            default: throw AdminError(.notFound, "notFound", "no schedule action \(action)")
            }
            return Self.redirect("/schedules", flash: "\(name): \(action == "trigger" ? "an occurrence was published" : action + "d").")
        }
        router.post("/locks/:name/release") { request, context in
            let name = try AdminRoutes.decodedName(try context.parameters.require("name"))
            _ = try await form(request, context)
            try context.caller.require(.admin, topic: nil)
            try await broker.releaseLock(name, token: nil)
            return Self.redirect("/locks", flash: "Released \(name); its holder's fenced writes are refused from now on.")
        }
        router.post("/jobs/abort") { request, context in
            let f = try await form(request, context)
            let id = try AdminRoutes.messageID(f["id"] ?? "")
            try context.caller.require(.admin, topic: broker.topicName(id: id.topicID))
            let outcome = try await broker.abort(id, reason: f["reason"].flatMap { $0.isEmpty ? nil : $0 } ?? "aborted from the dashboard")
            return Self.redirect("/jobs?id=\(HTML.component(id.description))", flash: "\(id): \(outcome).")
        }
        router.post("/callbacks/complete") { request, context in
            let f = try await form(request, context)
            let text = f["token"] ?? ""
            guard let token = CallbackToken(text) else {
                throw BrokerError(.callbackClosed, "'\(text.prefix(100))' is not a callback token (<id>.<due ms>.<16 hex digits>)")
            }
            try context.caller.require(.publish, topic: broker.topicName(id: token.id.topicID))
            try await broker.completeCallback(token, payload: Array((f["payload"] ?? "").utf8))
            return Self.redirect("/jobs?id=\(HTML.component(token.id.description))", flash: "Completed the callback of \(token.id).")
        }
    }

    // MARK: - Login

    private func login(_ request: Request, _ context: AdminRequestContext) async throws -> Response {
        try Self.checkOrigin(request)
        var request = request
        let fields = Self.parseForm(try await request.collectBody(upTo: 64 << 10))
        guard let grant = everyToken.grant(for: Array((fields["token"] ?? "").utf8)) else {
            context.logger.warning("dashboard login refused: wrong token")
            var r = html(pages.login(request, context.caller, error: "That token is not one of this server's."))
            r.status = .unauthorized
            return r
        }
        let (id, _) = sessions.create(grant)
        var r = Self.redirect("/")
        r.headers.append(HeaderField(name: .setCookie, value: "\(DashboardLogins.cookieName)=\(id); Path=/; HttpOnly; SameSite=Strict; Max-Age=43200"))
        return r
    }

    // MARK: - Forms

    /// A dashboard form's fields, after the checks every write needs: from this site (its
    /// `Origin` or `Sec-Fetch-Site`), by a logged-in session, with that session's CSRF value.
    private func form(_ request: Request, _ context: AdminRequestContext) async throws -> [String: String] {
        try Self.checkOrigin(request)
        guard let session = context.caller.session else {
            throw AdminError.unauthorized("log in (/login) to make changes")
        }
        var request = request
        let fields = Self.parseForm(try await request.collectBody(upTo: 64 << 10))
        guard let csrf = fields["csrf"], TokenTable.constantTimeEqual(Array(csrf.utf8), Array(session.csrf.utf8)) else {
            throw AdminError(.forbidden, "forbidden", "the form's CSRF value is missing or wrong: reload the page and try again")
        }
        return fields
    }

    /// Refuses a write a browser sent from another site.
    static func checkOrigin(_ request: Request) throws {
        if let site = request.headers[HeaderField.Name("Sec-Fetch-Site")!], site != "same-origin" && site != "none" {
            throw AdminError(.forbidden, "forbidden", "a dashboard form must come from the dashboard (Sec-Fetch-Site: \(site))")
        }
        if let origin = request.headers[.origin], let host = request.head.authority {
            let bare = origin.split(separator: "/").last.map(String.init) ?? origin
            guard bare == host else { throw AdminError(.forbidden, "forbidden", "a dashboard form must come from the dashboard (Origin: \(origin))") }
        }
    }

    /// `application/x-www-form-urlencoded` fields (the last of a repeated name).
    static func parseForm(_ buffer: ByteBuffer) -> [String: String] {
        var out: [String: String] = [:]
        for pair in String(buffer: buffer).split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            func decode(_ s: Substring) -> String { s.replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? String(s) }
            out[decode(parts[0])] = parts.count > 1 ? decode(parts[1]) : ""
        }
        return out
    }

    // MARK: - Answers

    func html(_ text: String) -> Response {
        Response(status: .ok, headers: Self.pageHeaders, body: ResponseBody(byteBuffer: ByteBuffer(string: text)))
    }

    /// Every dashboard page's headers, error pages' too: nothing loaded or sent elsewhere,
    /// not framed, not sniffed, not cached.
    static let pageHeaders: HTTPFields = [
        .contentType: "text/html; charset=utf-8", .cacheControl: "no-store",
        HeaderField.Name("Content-Security-Policy")!:
            "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        HeaderField.Name("X-Content-Type-Options")!: "nosniff", HeaderField.Name("Referrer-Policy")!: "same-origin",
    ]

    static func redirect(_ path: String, flash: String? = nil) -> Response {
        let target = flash.map { path + (path.contains("?") ? "&" : "?") + "done=" + HTML.component($0) } ?? path
        return Response(status: .seeOther, headers: [.location: target])
    }
}

/// One header field (HTTPTypes' `HTTPField`, which Hummingbird does not re-export by name).
typealias HeaderField = HTTPFields.Element

/// Sums over every topic and group for the overview, computed at most every few seconds.
struct OverviewTotals: Sendable {
    var topics = 0
    var partitions = 0
    var ready: Int64 = 0
    var scheduled: Int64 = 0
    var diskBytes: Int64 = 0
    var groups = 0
    var lag: Int64 = 0
    var inFlight = 0
    var retries = 0
    var deadLetters = 0
}

/// Every topic's partition counts and every group's stats, as the overview last read them.
struct OverviewSnapshot: Sendable {
    var topics: [(name: String, partitions: [PartitionStats])] = []
    var groups: [GroupStats] = []
}

/// The overview's snapshot of the last few seconds.
final class OverviewCache: Sendable {
    let value = Mutex<(at: ContinuousClock.Instant, snapshot: OverviewSnapshot)?>(nil)
}
