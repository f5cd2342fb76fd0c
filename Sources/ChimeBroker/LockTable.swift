/// The locks of one lock partition as a pure state machine: who holds which name, under
/// which fencing token, until when. No I/O and no clock of its own: every change is a
/// `LockRecord` the caller journals before acting on it, and replaying the journal's
/// records rebuilds the same table (`apply`).
///
/// Tokens are strictly increasing per partition (so per name, a name always hashing to one
/// partition): a grant takes `lastToken + 1`, and `lastToken` is journaled with every grant
/// and kept by compaction. A lock whose expiry has passed is free: the next grant replaces
/// it with a higher token, and a renew or release under its token is refused.
struct LockTable {
    struct Lock: Equatable, Sendable {
        var holder: String
        var token: Int64
        var expiresAt: Int64
    }

    private(set) var locks: [String: Lock] = [:]
    /// The highest token ever granted in this partition (0: none).
    private(set) var lastToken: Int64 = 0

    /// What the journal holds (docs/formats.md, "Locks").
    enum LockRecord: Equatable {
        case grant(name: String, holder: String, token: Int64, expiresAt: Int64)
        case renew(name: String, token: Int64, expiresAt: Int64)
        case release(name: String, token: Int64)
        /// Written by compaction: no token at or below this is granted again.
        case floor(token: Int64)
    }

    /// Why a change is refused: a grant, because the lock is held (`held`); a renew or a
    /// release, because nobody holds it (released, or expired) or another grant does
    /// (`current`).
    enum Refusal: Error, Equatable {
        case held(Lock)
        case notHeld(current: Lock?)
    }

    func holder(of name: String, now: Int64) -> Lock? {
        guard let lock = locks[name], lock.expiresAt > now else { return nil }
        return lock
    }

    /// The grant to make, or the live lock in the way.
    func grant(_ name: String, holder: String, ttl: Int64, now: Int64) -> Result<LockRecord, Refusal> {
        if let held = self.holder(of: name, now: now) { return .failure(.held(held)) }
        return .success(.grant(name: name, holder: holder, token: lastToken + 1, expiresAt: now + ttl))
    }

    /// The renewal to make: only the live holder's token renews.
    func renew(_ name: String, token: Int64, ttl: Int64, now: Int64) -> Result<LockRecord, Refusal> {
        guard let held = holder(of: name, now: now), held.token == token else { return .failure(.notHeld(current: holder(of: name, now: now))) }
        return .success(.renew(name: name, token: token, expiresAt: now + ttl))
    }

    /// The release to make: the live holder's token, or any token with `force`.
    func release(_ name: String, token: Int64?, now: Int64) -> Result<LockRecord, Refusal> {
        guard let held = holder(of: name, now: now) else { return .failure(.notHeld(current: nil)) }
        if let token, token != held.token { return .failure(.notHeld(current: held)) }
        return .success(.release(name: name, token: held.token))
    }

    /// Whether a write fenced by `token` may go ahead: it is the live grant's token. One
    /// whose lock expired or was released is refused too — its holder no longer holds it,
    /// and a newer grant may come at any moment.
    func isCurrent(_ name: String, token: Int64, now: Int64) -> Bool {
        holder(of: name, now: now)?.token == token
    }

    /// Applies a journaled record (when it was written, and again at every replay).
    mutating func apply(_ record: LockRecord) {
        switch record {
        case .grant(let name, let holder, let token, let expiresAt):
            locks[name] = Lock(holder: holder, token: token, expiresAt: expiresAt)
            lastToken = max(lastToken, token)
        case .renew(let name, let token, let expiresAt):
            if locks[name]?.token == token { locks[name]!.expiresAt = expiresAt }
        case .release(let name, let token):
            if locks[name]?.token == token { locks[name] = nil }
        case .floor(let token):
            lastToken = max(lastToken, token)
        }
    }

    /// Drops the locks whose expiry passed; returns their names.
    mutating func expire(now: Int64) -> [String] {
        let gone = locks.filter { $0.value.expiresAt <= now }.map(\.key)
        for name in gone { locks[name] = nil }
        return gone
    }

    /// The records that rebuild this table: the floor, then one grant per lock.
    var snapshot: [LockRecord] {
        [.floor(token: lastToken)]
            + locks.sorted { $0.key < $1.key }.map { .grant(name: $0.key, holder: $0.value.holder, token: $0.value.token, expiresAt: $0.value.expiresAt) }
    }
}
