import ChimeProtocol

/// How the server listens and what it allows. Limits are checked before anything is
/// allocated for what they limit.
public struct ServerOptions: Sendable {
    /// Address to bind: 127.0.0.1 unless told otherwise (binding elsewhere without tokens
    /// logs a loud warning).
    public var host: String
    /// Broker protocol port (0: any free port, see `ChimeServer.port`).
    public var port: Int
    /// Accepted tokens; empty means no authentication. Each is a secret, which grants
    /// everything, or `SCOPE[@PATTERN…]:SECRET` (`AccessGrant`, `TokenGrant`). No token may
    /// be empty: a hello without a token carries an empty one (`validate()`).
    public var tokens: [String]

    /// The tokens as read (`validate()` refuses settings that cannot be read).
    var tokenTable: TokenTable { TokenTable.of(tokens) }
    /// Largest frame once the hello is accepted.
    public var maxFrameBytes: Int
    /// Largest frame before it: the hello (a token and a client name fit in far less). A
    /// larger length is refused (frame too large) from its 4 bytes, before anything else
    /// of it is read.
    public var maxHelloBytes: Int
    /// Authenticated connections (a hello accepted) at once. A hello accepted past it is
    /// answered by closing the connection.
    public var maxConnections: Int
    /// Connections still awaiting their hello at once; past it new ones are closed as they
    /// are accepted. Counted apart from `maxConnections`, so clients that never say hello
    /// cannot take the slots of those that did.
    public var maxUnauthenticatedConnections: Int
    /// A connection whose hello has not been accepted this long after it opened gets an
    /// error (unauthenticated) and is closed, however it trickles bytes.
    public var helloTimeoutMilliseconds: Int64
    /// Requests one connection may have in progress, counted from when the request is
    /// read until its reply is written to the socket; past it the server stops reading
    /// from that connection.
    public var maxInFlightPerConnection: Int
    /// Bytes one connection may hold in the server: its requests in progress plus their
    /// replies not yet written to the socket. Past it the server starts nothing more and
    /// reads nothing more from that connection until replies have been written (at least
    /// one request is always taken, whatever its size up to `maxFrameBytes`). Reading also
    /// stops whenever the socket takes no more (a client that does not read its replies).
    public var maxBufferedBytesPerConnection: Int
    /// A connection that sends nothing for this long is closed.
    public var idleTimeoutSeconds: Int64
    public var serverName: String
    /// TLS for every connection (nil: plain TCP). The files are read and checked when the
    /// server starts, so a bad path stops `ChimeServer.start` before it binds.
    public var tls: TLS?

    /// A certificate chain and its private key, both PEM files.
    public struct TLS: Sendable, Equatable {
        /// The server's certificate first, then any intermediates.
        public var certificateChainFile: String
        /// The private key of the first certificate (unencrypted).
        public var privateKeyFile: String

        public init(certificateChainFile: String, privateKeyFile: String) {
            self.certificateChainFile = certificateChainFile
            self.privateKeyFile = privateKeyFile
        }
    }

    public init(
        host: String = "127.0.0.1", port: Int = 7420, tokens: [String] = [], maxFrameBytes: Int = 16 << 20, maxHelloBytes: Int = 4_096,
        maxConnections: Int = 1_024, maxUnauthenticatedConnections: Int = 64, helloTimeoutMilliseconds: Int64 = 10_000,
        maxInFlightPerConnection: Int = 256, maxBufferedBytesPerConnection: Int = 64 << 20, idleTimeoutSeconds: Int64 = 300,
        serverName: String = "chime \(ChimeVersion.current)", tls: TLS? = nil
    ) {
        self.maxHelloBytes = maxHelloBytes
        self.maxUnauthenticatedConnections = maxUnauthenticatedConnections
        self.helloTimeoutMilliseconds = helloTimeoutMilliseconds
        self.maxBufferedBytesPerConnection = maxBufferedBytesPerConnection
        self.host = host
        self.port = port
        self.tokens = tokens
        self.maxFrameBytes = maxFrameBytes
        self.maxConnections = maxConnections
        self.maxInFlightPerConnection = maxInFlightPerConnection
        self.idleTimeoutSeconds = idleTimeoutSeconds
        self.serverName = serverName
        self.tls = tls
    }

    /// Refuses options that would serve nobody, or everybody: an empty token, a limit
    /// below what one request needs. Call it before `ChimeServer.start` (`chime serve` does).
    public func validate() throws(OptionsError) {
        if tokens.contains(where: { OptionsError.isBlank($0) }) { throw .emptyToken("tokens") }
        try OptionsError.checkTokens(tokens)
        if maxConnections < 1 { throw .belowMinimum("maxConnections", 1) }
        if maxFrameBytes < 1_024 { throw .belowMinimum("maxFrameBytes", 1_024) }
        if idleTimeoutSeconds < 1 { throw .belowMinimum("idleTimeoutSeconds", 1) }
        if maxInFlightPerConnection < 1 { throw .belowMinimum("maxInFlightPerConnection", 1) }
        if maxBufferedBytesPerConnection < 1 { throw .belowMinimum("maxBufferedBytesPerConnection", 1) }
    }
}
