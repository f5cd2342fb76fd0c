/// How the admin HTTP port listens, whom it answers, and how much any one client may hold
/// of it. The limits keep a client that connects and sends nothing (or never finishes a
/// request) from holding file descriptors the broker needs: without them, a few thousand
/// silent connections used every descriptor and stalled publishes and checkpoints.
public struct AdminOptions: Sendable {
    /// Address to bind: 127.0.0.1 unless told otherwise (binding elsewhere without tokens
    /// logs a loud warning, as for the broker protocol).
    public var host: String
    /// Admin HTTP port, 7421 by default (0: any free port, see `AdminServer.port()`).
    public var port: Int
    /// Accepted bearer tokens (`Authorization: Bearer <token>`); empty means no
    /// authentication. The broker protocol's tokens, so one secret opens both ports.
    /// `/health` never needs one: load balancers and orchestrators' probes cannot always
    /// send a header, and it tells nothing but that the server answers. No token may be
    /// empty (`validate()`).
    public var tokens: [String]
    /// A token for writes on a server without configured tokens (`chime serve` makes one at
    /// start and keeps it in `<data>/admin-token`, readable by its owner only): the admin port
    /// never answers a write without a token, even while its reads are open. It grants
    /// everything. Ignored beside configured tokens.
    public var localAdminToken: String?
    /// Most admin connections open at once; one more is closed as soon as it is accepted.
    public var maxConnections: Int
    /// A connection is closed when it has been this long without sending a whole request:
    /// silent since it opened or since its last response, or part way through a request's
    /// head or body.
    public var idleTimeout: Duration
    /// Most bytes of one request's head (request line and headers); a longer one is
    /// answered 400 and the connection closed.
    public var maxRequestHeaderBytes: Int
    /// Most bytes of one request's body (a publish's JSON: a message of up to about three
    /// quarters of it, base64 counted); past it the connection is closed.
    public var maxRequestBodyBytes: Int

    public init(
        host: String = "127.0.0.1", port: Int = 7421, tokens: [String] = [], maxConnections: Int = 128, idleTimeout: Duration = .seconds(30),
        maxRequestHeaderBytes: Int = 16 << 10, maxRequestBodyBytes: Int = 2 << 20, localAdminToken: String? = nil
    ) {
        self.localAdminToken = localAdminToken
        self.host = host
        self.port = port
        self.tokens = tokens
        self.maxConnections = maxConnections
        self.idleTimeout = idleTimeout
        self.maxRequestHeaderBytes = maxRequestHeaderBytes
        self.maxRequestBodyBytes = maxRequestBodyBytes
    }

    /// Refuses options that would serve nobody, or everybody: an empty token, a limit
    /// below one. `AdminServer.run()` calls it before it binds.
    public func validate() throws(OptionsError) {
        if tokens.contains(where: { OptionsError.isBlank($0) }) { throw .emptyToken("tokens") }
        try OptionsError.checkTokens(tokens)
        if maxConnections < 1 { throw .belowMinimum("maxConnections", 1) }
        if idleTimeout < .milliseconds(1) { throw .belowMinimum("idleTimeout in milliseconds", 1) }
        if maxRequestHeaderBytes < 1_024 { throw .belowMinimum("maxRequestHeaderBytes", 1_024) }
        if maxRequestBodyBytes < 0 { throw .belowMinimum("maxRequestBodyBytes", 0) }
    }
}
