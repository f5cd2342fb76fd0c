import HummingbirdCore
import Logging
import NIOCore
import Synchronization

/// The admin port's open connections, and a place for one more only while they are under
/// the limit. Shared by every event loop that accepts for the port.
final class AdminConnectionCount: Sendable {
    let limit: Int
    private let open = Atomic<Int>(0)

    init(limit: Int) {
        precondition(limit >= 1, "a limit below one serves nobody")
        self.limit = limit
    }

    var current: Int { open.load(ordering: .relaxed) }

    /// Takes a place if one is free; the count never passes `limit`, not even for a moment.
    func admit() -> Bool {
        var seen = open.load(ordering: .relaxed)
        while seen < limit {
            let (exchanged, original) = open.compareExchange(expected: seen, desired: seen + 1, ordering: .relaxed)
            if exchanged { return true }
            seen = original
        }
        return false
    }

    /// Gives back the place of a connection `admit()` let in, once it has closed.
    func release() {
        let after = open.subtract(1, ordering: .relaxed).newValue
        assert(after >= 0, "a connection released twice")
    }
}

/// The admin port's child channel: Hummingbird's HTTP/1 channel behind a connection limit.
/// A connection past the limit is closed as soon as it is accepted, unread.
///
/// Hummingbird's own `MaximumAvailableConnections` stops accepting at the limit instead:
/// the connections past it then wait in the kernel's backlog, where a client cannot tell a
/// full server from a slow one and a health probe hangs until its own timeout. Closing
/// answers at once, and keeps the backlog free for the moment a place opens.
struct AdminChildChannel: ServerChildChannel {
    struct Value: ServerChildChannelValue {
        let channel: any Channel
        /// The HTTP channel of an admitted connection; nil for one refused at the limit.
        let http: HTTP1Channel.Value?
    }

    let http: HTTP1Channel
    let connections: AdminConnectionCount

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        guard connections.admit() else {
            logger.debug("admin connection refused: at the connection limit", metadata: ["limit": "\(connections.limit)"])
            return channel.eventLoop.makeSucceededFuture(Value(channel: channel, http: nil))
        }
        let connections = self.connections
        channel.closeFuture.whenComplete { _ in connections.release() }
        return http.setup(channel: channel, logger: logger).map { Value(channel: channel, http: $0) }
    }

    func handle(value: Value, logger: Logger) async {
        guard let admitted = value.http else {
            try? await value.channel.close()
            return
        }
        await http.handle(value: admitted, logger: logger)
    }
}
