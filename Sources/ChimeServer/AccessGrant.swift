/// What a token lets its bearer do, on both ports: a scope, and optionally the topics it
/// is limited to.
///
/// Scopes are ordered, each including the ones below it:
/// - `read`: stats, listings, peeks, job status; the admin API's reads and the dashboard.
/// - `publish`: also publish, cancel and reschedule, consume (join a group, fetch, ack,
///   nack, extend, park a job, spawn a flow), take and renew locks, write schedules,
///   complete callbacks.
/// - `admin`: every write: create and delete topics and groups, abort, re-drive, release
///   locks by force, pause, resume, trigger and delete schedules.
///
/// A grant limited to topic patterns (`orders.*`) reaches only topics that match one of
/// them; what belongs to no topic (locks, the server's own metrics) needs a grant without
/// patterns. Listings show a limited grant only what it may see.
public struct AccessGrant: Sendable, Equatable, CustomStringConvertible {
    public enum Scope: Int, Sendable, Comparable, CaseIterable, CustomStringConvertible {
        case read = 1, publish = 2, admin = 3

        public static func < (a: Scope, b: Scope) -> Bool { a.rawValue < b.rawValue }
        public var description: String {
            switch self {
            case .read: "read"
            case .publish: "publish"
            case .admin: "admin"
            }
        }
        init?(name: Substring) {
            guard let s = Self.allCases.first(where: { $0.description == name }) else { return nil }
            self = s
        }
    }

    public var scope: Scope
    /// Empty: every topic, and what belongs to none.
    public var topics: [TopicPattern]

    public init(scope: Scope, topics: [TopicPattern] = []) {
        self.scope = scope
        self.topics = topics
    }

    /// What a server without tokens gives everyone, and what a plain token (one without a
    /// scope) gives its bearer: everything.
    public static let everything = AccessGrant(scope: .admin)

    /// Whether this grant reaches `scope` on `topic` (nil: something of no topic, or of all
    /// of them).
    public func allows(_ scope: Scope, topic: String?) -> Bool {
        guard scope <= self.scope else { return false }
        guard !topics.isEmpty else { return true }
        guard let topic else { return false }
        return topics.contains { $0.matches(topic) }
    }

    /// Whether this grant can see `topic` at all (listings filter on it).
    public func sees(_ topic: String) -> Bool { allows(.read, topic: topic) }

    /// `admin`, `read@orders.*`, `publish@orders.*+billing`.
    public var description: String {
        topics.isEmpty ? scope.description : "\(scope)@" + topics.map(\.text).joined(separator: "+")
    }
}

/// A topic name pattern: `*` stands for any run of characters (dots included), anything
/// else for itself. `orders.*` matches `orders.eu` and `orders.eu.late`, not `orders`.
public struct TopicPattern: Sendable, Equatable {
    public let text: String
    private let parts: [Substring]

    /// Nil unless the pattern is 1–200 characters of topic-name characters and `*`.
    public init?(_ text: String) {
        guard (1...200).contains(text.utf8.count),
            text.utf8.allSatisfy({ c in
                (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || c == 0x2E || c == 0x5F || c == 0x2D || c == 0x2A
            })
        else { return nil }
        self.text = text
        parts = text.split(separator: "*", omittingEmptySubsequences: false)
    }

    public static func == (a: TopicPattern, b: TopicPattern) -> Bool { a.text == b.text }

    public func matches(_ name: String) -> Bool {
        guard parts.count > 1 else { return name == text }
        var rest = Substring(name)
        guard rest.hasPrefix(parts[0]) else { return false }
        rest = rest.dropFirst(parts[0].count)
        for middle in parts.dropFirst().dropLast() where !middle.isEmpty {
            guard let r = rest.range(of: middle) else { return false }
            rest = rest[r.upperBound...]
        }
        return rest.hasSuffix(parts[parts.count - 1])
    }
}

/// A configured token: its secret and what it grants. Written `SECRET` (everything, as
/// before scopes existed) or `SCOPE[@PATTERN[+PATTERN…]]:SECRET`, e.g.
/// `read:d1c5…`, `publish@orders.*+billing:9f0e…`.
public struct TokenGrant: Sendable, Equatable {
    public let secret: [UInt8]
    public let grant: AccessGrant

    public init(secret: String, grant: AccessGrant) {
        self.secret = Array(secret.utf8)
        self.grant = grant
    }

    /// Why a token setting cannot be read.
    public struct ParseError: Error, Equatable, CustomStringConvertible {
        public let description: String
    }

    /// Reads a token setting. A setting that looks meant to have a scope — letters, then
    /// `:` or `@` — must name one exactly, so that a typo (`Read:…`, `readonly:…`) or a
    /// pattern list cut by a comma (`read@a,b:…` in CHIME_TOKENS) is refused rather than
    /// read as a plain secret granting everything. A plain secret may contain `:` and `@`
    /// after anything but a run of letters (generated secrets are hex digits).
    public init(parsing text: String) throws(ParseError) {
        guard !text.isEmpty else { throw ParseError(description: "a token must not be empty") }
        let lead = text.prefix { $0.isASCII && $0.isLetter }
        let next = text.dropFirst(lead.count).first
        guard !lead.isEmpty, next == ":" || next == "@" else {
            self.init(secret: text, grant: .everything)
            return
        }
        guard let scope = AccessGrant.Scope(name: lead) else {
            throw ParseError(description: "'\(lead)' is not a scope (read, publish or admin); a plain secret must not start with letters and ':' or '@'")
        }
        guard let colon = text.firstIndex(of: ":") else {
            throw ParseError(description: "the token \(text.prefix(60)) has a scope but no ':SECRET' (a comma inside a pattern list?)")
        }
        let head = text[..<colon]
        let secret = String(text[text.index(after: colon)...])
        var patterns: [TopicPattern] = []
        if let at = head.firstIndex(of: "@") {
            for p in head[head.index(after: at)...].split(separator: "+", omittingEmptySubsequences: false) {
                guard let pattern = TopicPattern(String(p)) else {
                    throw ParseError(description: "'\(p)' is not a topic pattern (1-200 characters of A-Z a-z 0-9 . _ - and *)")
                }
                patterns.append(pattern)
            }
        }
        guard !secret.isEmpty, secret.contains(where: { !$0.isWhitespace }) else {
            throw ParseError(description: "the token \(head): has an empty secret")
        }
        self.init(secret: secret, grant: AccessGrant(scope: scope, topics: patterns))
    }
}

/// The configured tokens, matched in constant time: how long a lookup takes does not tell
/// which token, or how much of one, matched.
public struct TokenTable: Sendable, Equatable {
    public let tokens: [TokenGrant]
    /// Set for settings that could not be read: nobody is let in (the options' `validate()`
    /// refuses them before a server starts; this only keeps a mistake from opening a port).
    private let refusesAll: Bool

    public init(_ tokens: [TokenGrant]) {
        self.tokens = tokens
        refusesAll = false
    }

    private init(refusingAll: ()) {
        tokens = []
        refusesAll = true
    }

    /// The table of settings as `validate()` reads them; one that lets nobody in when they
    /// cannot be read.
    static func of(_ settings: [String]) -> TokenTable {
        (try? TokenTable(parsing: settings)) ?? TokenTable(refusingAll: ())
    }

    /// Reads every setting; the first that cannot be read is the error, and so is a secret
    /// given twice (which grant would it have?).
    public init(parsing settings: [String]) throws(TokenGrant.ParseError) {
        var out: [TokenGrant] = []
        for s in settings {
            let t = try TokenGrant(parsing: s)
            if out.contains(where: { $0.secret == t.secret }) {
                throw TokenGrant.ParseError(description: "a secret is given twice (\(out.first { $0.secret == t.secret }!.grant) and \(t.grant)): each token needs its own")
            }
            out.append(t)
        }
        self.init(out)
    }

    /// No tokens: nothing is asked of anyone (reads; see `AdminOptions` for writes).
    public var isOpen: Bool { tokens.isEmpty && !refusesAll }

    /// The grant of the token `given`, nil when none matches. Every token is compared.
    public func grant(for given: [UInt8]) -> AccessGrant? {
        var found: AccessGrant?
        for t in tokens {
            let equal = Self.constantTimeEqual(t.secret, given)
            if equal && found == nil { found = t.grant }
        }
        return found
    }

    /// Compares in time that depends on the lengths only, not on where the bytes differ.
    static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        var diff = UInt8(a.count == b.count ? 0 : 1)
        for i in 0..<max(a.count, b.count) {
            diff |= (i < a.count ? a[i] : 0) ^ (i < b.count ? b[i] : 0)
        }
        return diff == 0
    }
}
