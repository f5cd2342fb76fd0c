/// How the server listens and what it allows. Limits are checked before anything is
/// allocated for what they limit.
public struct ServerOptions: Sendable {
    /// Address to bind: 127.0.0.1 unless told otherwise (binding elsewhere without tokens
    /// logs a loud warning).
    public var host: String
    /// Broker protocol port (0: any free port, see `ChimeServer.port`).
    public var port: Int
    /// Accepted tokens; empty means no authentication. No token may be empty: a hello
    /// without a token carries an empty one (`validate()`).
    public var tokens: [String]
    public var maxFrameBytes: Int
    public var maxConnections: Int
    /// Requests one connection may have in progress; past it the server stops reading
    /// from that connection until responses have gone out.
    public var maxInFlightPerConnection: Int
    /// Bytes of request frames one connection may have in progress; past it the server
    /// stops reading from that connection until responses have gone out (at least one
    /// request is always taken, whatever its size up to `maxFrameBytes`).
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
        host: String = "127.0.0.1", port: Int = 7420, tokens: [String] = [], maxFrameBytes: Int = 16 << 20, maxConnections: Int = 1_024,
        maxInFlightPerConnection: Int = 256, maxBufferedBytesPerConnection: Int = 64 << 20, idleTimeoutSeconds: Int64 = 300,
        serverName: String = "chime", tls: TLS? = nil
    ) {
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
        if maxConnections < 1 { throw .belowMinimum("maxConnections", 1) }
        if maxFrameBytes < 1_024 { throw .belowMinimum("maxFrameBytes", 1_024) }
        if idleTimeoutSeconds < 1 { throw .belowMinimum("idleTimeoutSeconds", 1) }
    }
}
