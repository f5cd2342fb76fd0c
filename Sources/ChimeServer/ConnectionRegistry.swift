import NIOCore
import Synchronization

/// The server's open connections, in two classes with their own limits: those awaiting
/// their hello (`maxUnauthenticatedConnections`) and those whose hello was accepted
/// (`maxConnections`), so connections that never authenticate cannot take the slots of
/// those that did. Also the server-wide gauges the connection handlers keep.
final class ConnectionRegistry: Sendable {
    private struct Entry {
        let channel: any Channel
        var authenticated: Bool
    }

    private struct Open {
        var entries: [ObjectIdentifier: Entry] = [:]
        var authenticated = 0
        var unauthenticated: Int { entries.count - authenticated }
    }

    private let open = Mutex(Open())
    let maxConnections: Int
    let maxUnauthenticated: Int
    /// Bytes of replies handed to channels and not yet written to their sockets.
    let unwrittenReplyBytes = Atomic<Int>(0)
    /// Requests whose work (in the engine) has not finished.
    let requestsRunning = Atomic<Int>(0)

    init(maxConnections: Int, maxUnauthenticated: Int) {
        precondition(maxConnections > 0 && maxUnauthenticated > 0, "a connection limit admits someone")
        self.maxConnections = maxConnections
        self.maxUnauthenticated = maxUnauthenticated
    }

    /// A new connection, awaiting its hello: false when that class is full.
    func admit(_ channel: any Channel) -> Bool {
        open.withLock { open in
            guard open.unauthenticated < maxUnauthenticated else { return false }
            let previous = open.entries.updateValue(Entry(channel: channel, authenticated: false), forKey: ObjectIdentifier(channel))
            precondition(previous == nil, "a channel admitted twice")
            return true
        }
    }

    /// Its hello was accepted: it moves to the authenticated class, if that has room.
    func authenticate(_ channel: any Channel) -> Bool {
        open.withLock { open in
            let key = ObjectIdentifier(channel)
            guard let entry = open.entries[key], !entry.authenticated else { preconditionFailure("only an admitted connection authenticates, once") }
            guard open.authenticated < maxConnections else { return false }
            open.entries[key]!.authenticated = true
            open.authenticated += 1
            return true
        }
    }

    func remove(_ channel: any Channel) {
        open.withLock { open in
            guard let entry = open.entries.removeValue(forKey: ObjectIdentifier(channel)) else { return }
            if entry.authenticated { open.authenticated -= 1 }
            assert(open.authenticated >= 0 && open.unauthenticated >= 0, "counts match the entries")
        }
    }

    var count: Int { open.withLock { $0.entries.count } }
    var unauthenticatedCount: Int { open.withLock { $0.unauthenticated } }
    var channels: [any Channel] { open.withLock { $0.entries.values.map(\.channel) } }
}
