import Synchronization

/// The dashboard's logins: a token given once in its login form becomes a session, named
/// by a random id in an `HttpOnly; SameSite=Strict` cookie, so the token is never in a URL
/// and never kept by the browser. Each session has its own random CSRF value that every
/// dashboard form sends back; a form posted from another site has neither the cookie
/// (SameSite) nor the value. Sessions live in memory: a restart logs everyone out.
final class DashboardLogins: Sendable {
    struct Session: Sendable {
        let grant: AccessGrant
        let csrf: String
        let expiresAt: ContinuousClock.Instant
    }

    static let cookieName = "chime_session"
    /// A session ends this long after its login, used or not (a page's live refresh must
    /// not keep a session, or a stolen id, alive for ever).
    static let lifetime = Duration.seconds(12 * 3_600)
    /// Most sessions at once: a login past it ends the one that expires first.
    static let limit = 1_000

    private let sessions = Mutex<[String: Session]>([:])

    /// A new session for `grant`: its id (for the cookie) and CSRF value.
    func create(_ grant: AccessGrant) -> (id: String, csrf: String) {
        let id = Self.randomHex()
        let csrf = Self.randomHex()
        let now = ContinuousClock.now
        sessions.withLock { all in
            all = all.filter { $0.value.expiresAt > now }
            if all.count >= Self.limit, let oldest = all.min(by: { $0.value.expiresAt < $1.value.expiresAt })?.key {
                all[oldest] = nil
            }
            all[id] = Session(grant: grant, csrf: csrf, expiresAt: now + Self.lifetime)
        }
        return (id, csrf)
    }

    /// The live session of this id.
    func session(_ id: String) -> Session? {
        let now = ContinuousClock.now
        return sessions.withLock { all in
            guard let s = all[id] else { return nil }
            guard s.expiresAt > now else {
                all[id] = nil
                return nil
            }
            return s
        }
    }

    func end(_ id: String) {
        _ = sessions.withLock { $0.removeValue(forKey: id) }
    }

    static func randomHex() -> String {
        var generator = SystemRandomNumberGenerator()
        return (0..<4).map { _ in
            let hex = String(generator.next() as UInt64, radix: 16)
            return String(repeating: "0", count: 16 - hex.count) + hex
        }.joined()
    }
}
