/// What the broker-protocol connections hold at one moment, as `/metrics` shows it: how
/// many are open, how many have not said hello, the reply bytes they hold unwritten (what
/// clients that pipeline and never read cost the server) and the requests still running.
public struct ConnectionGauges: Sendable, Equatable {
    public var open: Int
    public var unauthenticated: Int
    public var unwrittenReplyBytes: Int
    public var requestsRunning: Int

    public init(open: Int, unauthenticated: Int, unwrittenReplyBytes: Int, requestsRunning: Int) {
        self.open = open
        self.unauthenticated = unauthenticated
        self.unwrittenReplyBytes = unwrittenReplyBytes
        self.requestsRunning = requestsRunning
    }
}
