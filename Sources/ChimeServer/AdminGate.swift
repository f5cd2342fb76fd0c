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

    init(options: AdminOptions) {
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
            } else if configured.isOpen {
                context.caller = .openReader
            } else if !Self.isPublic(request.uri.path) {
                context.logger.warning("admin request refused: no token", metadata: ["path": "\(request.uri.path)"])
                throw AdminError.unauthorized("a bearer token is required")
            }
            return try await next(request, context)
        } catch let error as AdminError {
            return error.response
        } catch let error as BrokerError {
            return AdminError(error).response
        } catch let error as HTTPError where error.status == .notFound {
            return AdminError(.notFound, "notFound", "no endpoint \(request.method) \(request.uri.path)").response
        } catch let error as HTTPError where error.status == .methodNotAllowed {
            return AdminError(.methodNotAllowed, "methodNotAllowed", "\(request.uri.path) does not take \(request.method)").response
        } catch {
            context.logger.error("admin request failed", metadata: ["path": "\(request.uri.path)", "error": "\(error)"])
            return AdminError(.internalServerError, "internal", "\(error)").response
        }
    }

    /// What anyone may ask without a token: `/health` (probes of load balancers and
    /// orchestrators cannot always send a header, and it tells nothing but that the server
    /// answers).
    static func isPublic(_ path: String) -> Bool { path == "/health" }

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
