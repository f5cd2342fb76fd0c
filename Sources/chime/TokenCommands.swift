import ArgumentParser
import ChimeServer
import Foundation

// `chime tokens create`: a new random secret with a scope and topic patterns, written the
// way `chime serve --token` (and `tokens` in a config file, `CHIME_TOKENS`) reads it.

struct TokensCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tokens",
        abstract: "Make tokens with scopes for `chime serve --token`.",
        subcommands: [Create.self],
        defaultSubcommand: Create.self)

    struct Create: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print a new token: SCOPE[@PATTERN+PATTERN…]:SECRET, 256 random bits.",
            discussion: """
                A token grants one scope, each including the ones before it:
                  read     stats, listings, peeks, job status; the admin API's reads
                  publish  also publish and consume (join, fetch, ack, park, locks of one's own)
                  admin    every write: topics, groups, cancel, abort, re-drive, schedules,
                           callbacks, releasing locks by force
                With --topics it reaches only topics matching one of the patterns (`*` is any
                run of characters): `orders.*` matches orders.eu, not billing. What belongs to
                no topic (locks, /metrics) needs a token without patterns.

                Give the whole line to the server (`chime serve --token 'publish@orders.*:…'`,
                `tokens = ["…"]` in its file, or CHIME_TOKENS) and only the secret after the
                first colon to clients (`--token`, `Authorization: Bearer <secret>`). A plain
                secret without a scope grants everything, as before scopes existed.

                Examples:
                  chime tokens create --scope read
                  chime tokens create --scope publish --topics 'orders.*' --topics billing
                """)

        @Option(help: "read, publish or admin (default admin).") var scope: String = "admin"
        @Option(help: "A topic pattern the token is limited to; repeat for several (default: every topic).") var topics: [String] = []

        func validate() throws {
            guard ["read", "publish", "admin"].contains(scope) else { throw ValidationError("the scope must be read, publish or admin, not '\(scope)'") }
            for t in topics where TopicPattern(t) == nil {
                throw ValidationError("'\(t)' is not a topic pattern (1-200 characters of A-Z a-z 0-9 . _ - and *)")
            }
        }

        func run() throws {
            var generator = SystemRandomNumberGenerator()
            let secret = (0..<4).map { _ in
                let hex = String(generator.next() as UInt64, radix: 16)
                return String(repeating: "0", count: 16 - hex.count) + hex
            }.joined()
            let head = topics.isEmpty ? scope : "\(scope)@" + topics.joined(separator: "+")
            // Checked the way the server reads it, so what is printed is what it accepts.
            let line = "\(head):\(secret)"
            _ = try TokenGrant(parsing: line)
            print(line)
        }
    }
}
