import Foundation
import ChimeBroker
import Hummingbird
import HummingbirdCore

/// A request on the admin port, with who is asking (`AdminGate` sets it before any route).
struct AdminRequestContext: RequestContext {
    var coreContext: CoreRequestContextStorage
    var caller = AdminCaller.nobody

    init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
    }
}

/// Who asks on the admin port: what their token grants, or — on a server without configured
/// tokens, to a request that shows none — reads of everything. A write always needs a
/// token: on a server without configured tokens, the one `chime serve` made at start
/// (`AdminOptions.localAdminToken`).
struct AdminCaller: Sendable {
    let grant: AccessGrant?
    let hasToken: Bool
    /// A dashboard login's session: its id and the CSRF value its forms must send back.
    var session: (id: String, csrf: String)? = nil

    static let nobody = AdminCaller(grant: nil, hasToken: false)
    static let openReader = AdminCaller(grant: AccessGrant(scope: .read), hasToken: false)

    /// Refuses with 401 (no token where one is needed) or 403 (a token that does not grant
    /// `scope` on `topic`; nil: on what belongs to no topic).
    func require(_ scope: AccessGrant.Scope, topic: String?) throws {
        guard let grant, scope == .read || hasToken else {
            throw AdminError.unauthorized(scope == .read ? "a bearer token is required" : "a write needs a bearer token")
        }
        guard grant.allows(scope, topic: topic) else {
            throw AdminError(.forbidden, "forbidden", "the token (\(grant)) does not grant \(scope) on \(topic.map { "topic \($0)" } ?? "resources of no topic")")
        }
    }

    /// `scope` on something of its own: a listing (which then shows only what the caller
    /// sees), or what a membership does.
    func require(_ scope: AccessGrant.Scope) throws {
        guard let grant, scope == .read || hasToken else {
            throw AdminError.unauthorized(scope == .read ? "a bearer token is required" : "a write needs a bearer token")
        }
        guard scope <= grant.scope else {
            throw AdminError(.forbidden, "forbidden", "the token (\(grant)) does not grant \(scope)")
        }
    }

    /// Whether a listing shows this topic (and what belongs to it) to the caller.
    func sees(_ topic: String) -> Bool { grant?.sees(topic) ?? false }
}

/// In front of every route: who asks (`AdminCaller`), and errors as JSON.
struct AdminGate: RouterMiddleware {
    typealias Context = AdminRequestContext
    let configured: TokenTable
    let everyToken: TokenTable
    let sessions: DashboardLogins

    init(options: AdminOptions, sessions: DashboardLogins) {
        self.sessions = sessions
        configured = TokenTable.of(options.tokens)
        everyToken = options.tokens.isEmpty ? TokenTable.of(options.localAdminToken.map { [$0] } ?? []) : configured
    }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        var context = context
        do {
            if let given = Self.bearer(request) {
                guard let grant = everyToken.grant(for: given) else {
                    context.logger.warning("admin request refused: wrong token", metadata: ["path": "\(request.uri.path)"])
                    throw AdminError.unauthorized("the bearer token is not one of this server's")
                }
                context.caller = AdminCaller(grant: grant, hasToken: true)
            } else if Self.isDashboard(request.uri.path), let id = Self.cookie(DashboardLogins.cookieName, request), let s = sessions.session(id) {
                // A login's cookie counts on the dashboard's pages and forms only: the API
                // takes bearer tokens, which no other site can make a browser send.
                context.caller = AdminCaller(grant: s.grant, hasToken: true, session: (id, s.csrf))
            } else if configured.isOpen {
                context.caller = .openReader
            } else if Self.isDashboard(request.uri.path) && !Self.isPublic(request.uri.path) {
                return Response(status: .seeOther, headers: [.location: "/login"])
            } else if !Self.isPublic(request.uri.path) {
                context.logger.warning("admin request refused: no token", metadata: ["path": "\(request.uri.path)"])
                throw AdminError.unauthorized("a bearer token is required")
            }
            return try await next(request, context)
        } catch {
            let failure: AdminError
            switch error {
            case let e as AdminError: failure = e
            case let e as BrokerError: failure = AdminError(e)
            case let e as HTTPError where e.status == .notFound:
                failure = AdminError(.notFound, "notFound", "no endpoint \(request.method) \(request.uri.path)")
            case let e as HTTPError where (400..<500).contains(e.status.code):
                failure = AdminError(e.status, "badRequest", e.body ?? e.status.reasonPhrase)
            default:
                // The cause goes to the log, not to whoever asked (it may name files).
                context.logger.error("admin request failed", metadata: ["path": "\(request.uri.path)", "error": "\(error)"])
                failure = AdminError(.internalServerError, "internal", "the request failed inside the server (its log says why)")
            }
            // The dashboard's pages answer a person: an HTML page; the APIs JSON.
            return Self.isDashboard(request.uri.path) ? failure.page(context.caller) : failure.response
        }
    }

    /// What anyone may ask without a token: `/health` (probes of load balancers and
    /// orchestrators cannot always send a header, and it tells nothing but that the server
    /// answers).
    static func isPublic(_ path: String) -> Bool { path == "/health" || path == "/login" }

    /// The dashboard's pages and forms, by their first path segment — empty segments
    /// skipped, as the router skips them, so `//v2/…` or `/metrics/` is never taken for a
    /// dashboard path (where a login cookie counts).
    static func isDashboard(_ path: String) -> Bool {
        let first = path.split(separator: "/", omittingEmptySubsequences: true).first.map(String.init) ?? ""
        return dashboardSegments.contains(first)
    }

    static let dashboardSegments: Set<String> = ["", "topics", "groups", "schedules", "jobs", "locks", "login", "logout", "callbacks"]

    /// A cookie's value from the `Cookie` header, nil without it.
    static func cookie(_ name: String, _ request: Request) -> String? {
        for header in request.headers[values: .cookie] {
            for part in header.split(separator: ";") {
                let pair = part.split(separator: "=", maxSplits: 1)
                if pair.count == 2 && pair[0].trimmingCharacters(in: .whitespaces) == name { return String(pair[1]).trimmingCharacters(in: .whitespaces) }
            }
        }
        return nil
    }

    /// The token of `Authorization: Bearer <token>`, nil without one.
    private static func bearer(_ request: Request) -> [UInt8]? {
        guard let header = request.headers[.authorization] else { return nil }
        let scheme = "bearer "
        guard header.count > scheme.count, header.prefix(scheme.count).lowercased() == scheme else { return [] }
        return Array(header.dropFirst(scheme.count).utf8)
    }
}

extension AdminError {
    static func unauthorized(_ message: String) -> AdminError {
        var e = AdminError(.unauthorized, "unauthorized", message + " (Authorization: Bearer <token>)")
        e.headers = [.wwwAuthenticate: "Bearer realm=\"chime\""]
        return e
    }
}
