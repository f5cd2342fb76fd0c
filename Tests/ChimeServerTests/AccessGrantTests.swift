import ChimeServer
import Testing

/// Token settings as the server reads them, and what their grants reach.
@Suite struct AccessGrantTests {
    @Test func aPlainSecretGrantsEverythingAndAScopedOneItsScopeAndPatterns() throws {
        let plain = try TokenGrant(parsing: "s3cret")
        #expect(plain.grant == .everything && plain.secret == Array("s3cret".utf8))
        let scoped = try TokenGrant(parsing: "publish@orders.*+billing:9f0e")
        #expect(scoped.secret == Array("9f0e".utf8))
        #expect(scoped.grant.scope == .publish && scoped.grant.topics.map(\.text) == ["orders.*", "billing"])
        #expect(scoped.grant.description == "publish@orders.*+billing")
        // A secret that does not start with letters and ':' or '@' is plain, colons and all.
        let colons = try TokenGrant(parsing: "9f-secret:with:colons@x")
        #expect(colons.grant == .everything && colons.secret == Array("9f-secret:with:colons@x".utf8))
        #expect(try TokenGrant(parsing: "read:a:b").secret == Array("a:b".utf8))
    }

    @Test func settingsThatCannotBeReadAreRefusedWithWhy() {
        // Typos and a pattern list cut by CHIME_TOKENS's comma are refused, never read as a
        // plain secret granting everything.
        for bad in ["", "read:", "admin@:x", "publish@orders/eu:x", "read@a++b:x", "read:   ", "Read:x", "readonly:x", "read@orders.*", "billing:x"] {
            #expect(throws: TokenGrant.ParseError.self, "\(bad)") { try TokenGrant(parsing: bad) }
        }
        #expect(throws: OptionsError.self) { try ServerOptions(port: 0, tokens: ["read@bad pattern:x"]).validate() }
        #expect(throws: OptionsError.self) { try AdminOptions(port: 0, tokens: ["admin:"]).validate() }
    }

    @Test func patternsMatchWholeNamesWithStarsForAnyRun() throws {
        let cases: [(String, String, Bool)] = [
            ("orders.*", "orders.eu", true), ("orders.*", "orders.eu.late", true), ("orders.*", "orders", false),
            ("orders.*", "billing", false), ("orders", "orders", true), ("orders", "orders2", false),
            ("*.dlq", "billing.dlq", true), ("*.dlq", "billing.dlq2", false), ("a*b*c", "abc", true), ("a*b*c", "aXbYc", true),
            ("a*b*c", "acb", false), ("*", "anything", true), ("a**", "a", true),
        ]
        for (pattern, name, expected) in cases {
            #expect(try #require(TopicPattern(pattern)).matches(name) == expected, "\(pattern) ~ \(name)")
        }
        #expect(TopicPattern("") == nil && TopicPattern("a b") == nil && TopicPattern(String(repeating: "a", count: 201)) == nil)
    }

    @Test func aGrantReachesItsScopeAndBelowOnTopicsItsPatternsMatch() throws {
        let grant = AccessGrant(scope: .publish, topics: [try #require(TopicPattern("orders.*"))])
        #expect(grant.allows(.read, topic: "orders.eu") && grant.allows(.publish, topic: "orders.eu"))
        #expect(!grant.allows(.admin, topic: "orders.eu"), "not above its scope")
        #expect(!grant.allows(.read, topic: "billing"), "not outside its patterns")
        #expect(!grant.allows(.read, topic: nil), "nothing of no topic with patterns")
        #expect(AccessGrant(scope: .read).allows(.read, topic: nil))
        #expect(!AccessGrant(scope: .read).allows(.publish, topic: "orders.eu"))
    }

    @Test func theTableFindsTheGrantOfTheSecretGivenAndNothingForOthers() throws {
        let table = try TokenTable(parsing: ["read:r", "admin@orders.*:o", "plain"])
        #expect(table.grant(for: Array("r".utf8))?.scope == .read)
        #expect(table.grant(for: Array("o".utf8))?.topics.map(\.text) == ["orders.*"])
        #expect(table.grant(for: Array("plain".utf8)) == .everything)
        #expect(table.grant(for: Array("read:r".utf8)) == nil, "the setting is not the secret")
        #expect(table.grant(for: []) == nil && !table.isOpen)
        #expect(try TokenTable(parsing: []).isOpen)
        #expect(throws: TokenGrant.ParseError.self, "a secret twice") { try TokenTable(parsing: ["read:same", "admin:same"]) }
    }
}
