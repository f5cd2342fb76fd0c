/// How the admin HTTP port listens and whom it answers.
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

    public init(host: String = "127.0.0.1", port: Int = 7421, tokens: [String] = []) {
        self.host = host
        self.port = port
        self.tokens = tokens
    }

    /// Refuses options that would serve everybody: an empty token. `AdminServer.run()`
    /// calls it before it binds.
    public func validate() throws(OptionsError) {
        if tokens.contains(where: { OptionsError.isBlank($0) }) { throw .emptyToken("tokens") }
    }
}
