import ChimeBroker
import ChimeClient
import ChimeProtocol
import ChimeTestSupport
import Foundation
import Logging
import Testing

/// Groups as objects (protocol version 5): create, configure, describe and delete through a
/// real `chime serve` process and the Swift client over a real socket.
@Suite struct GroupAdminTests {
    private static let logger: Logger = {
        var l = Logger(label: "group-admin-test")
        l.logLevel = .critical
        return l
    }()

    /// `chime serve` on `data`, any free port (started off the cooperative pool: it waits
    /// for the server's banner).
    private static func serve(_ data: String) async throws -> ServeProcess {
        try await Task.detached { try ServeProcess(data: data, port: 0) }.value
    }

    private static func stop(_ server: ServeProcess) async -> Int32 {
        await Task.detached { server.stop() }.value.status
    }

    private static func client(_ server: ServeProcess) -> ChimeClient {
        ChimeClient(ClientOptions(port: server.port, name: "group-admin"), logger: logger)
    }

    /// The wire code a call was refused with; nil when it went through. Anything but a
    /// refusal (a lost connection) is recorded as an issue.
    private static func refusal(_ body: () async throws -> Void, sourceLocation: SourceLocation = #_sourceLocation) async -> UInt16? {
        do {
            try await body()
            return nil
        } catch let e as ClientError where e.kind == .refused {
            return e.code
        } catch {
            Issue.record("not a refusal: \(error)", sourceLocation: sourceLocation)
            return nil
        }
    }

    /// The broker's defaults for groups (`chime serve` sets none of its own) with the
    /// fields of `patch` over them, every field present: what a create with that patch
    /// answers. The defaults without a value (the topic's attempts, no limits) are -1.
    private static func defaults(with patch: WireGroupSettings = WireGroupSettings()) throws -> WireGroupSettings {
        let d = GroupSettings()
        try #require(
            d.maxAttempts == nil && d.keyConcurrency == nil && d.rateLimit == nil && d.rateBurst == nil && d.keyRateLimit == nil
                && d.keyRateBurst == nil, "the defaults this test assumes have no limits")
        return WireGroupSettings(
            mode: patch.mode ?? (d.mode == .shared ? .shared : .partitioned),
            maxInFlight: patch.maxInFlight ?? UInt32(d.maxInFlight),
            leaseMilliseconds: patch.leaseMilliseconds ?? d.leaseMilliseconds,
            sessionTimeoutMilliseconds: patch.sessionTimeoutMilliseconds ?? d.sessionTimeoutMilliseconds,
            maxAttempts: patch.maxAttempts ?? -1,
            keyOrdering: patch.keyOrdering ?? d.keyOrdering,
            keyConcurrency: patch.keyConcurrency ?? -1,
            rateLimitMillis: patch.rateLimitMillis ?? -1,
            rateBurstMillis: patch.rateBurstMillis ?? -1,
            keyRateLimitMillis: patch.keyRateLimitMillis ?? -1,
            keyRateBurstMillis: patch.keyRateBurstMillis ?? -1,
            maxWindow: patch.maxWindow ?? UInt32(d.maxWindow))
    }

    @Test func createPutsThePatchOverTheBrokersDefaultsAndAnswersWithEveryField() async throws {
        let dir = TemporaryDirectory("chime-group-admin")
        let server = try await Self.serve(dir.path)
        let client = Self.client(server)
        let patch = WireGroupSettings(mode: .shared, sessionTimeoutMilliseconds: 20_000, keyConcurrency: 2, keyRateLimitMillis: 2_500)
        let expected = try Self.defaults(with: patch)
        let created = try await client.createGroup("mailers", settings: patch)
        #expect(created == expected)
        #expect(
            created.mode != nil && created.maxInFlight != nil && created.leaseMilliseconds != nil && created.sessionTimeoutMilliseconds != nil
                && created.maxAttempts != nil && created.keyOrdering != nil && created.keyConcurrency != nil && created.rateLimitMillis != nil
                && created.rateBurstMillis != nil && created.keyRateLimitMillis != nil && created.keyRateBurstMillis != nil
                && created.maxWindow != nil, "every field in the answer")
        #expect(try await client.groupSettings("mailers") == created)
        // No patch at all: the defaults as they are.
        let plain = try Self.defaults()
        #expect(try await client.createGroup("plain") == plain)
        await client.close()
        #expect(await Self.stop(server) == 0)
    }

    @Test func creatingAGroupThatExistsIsGroupExistsUnlessIfAbsentWhichKeepsItsSettings() async throws {
        let dir = TemporaryDirectory("chime-group-admin")
        let server = try await Self.serve(dir.path)
        let client = Self.client(server)
        let original = try await client.createGroup("g", settings: WireGroupSettings(mode: .shared, maxInFlight: 50))
        let other = WireGroupSettings(mode: .partitioned, maxInFlight: 5, keyOrdering: true)

        #expect(WireErrorCode.groupExists.rawValue == 119)
        #expect(await Self.refusal { try await client.createGroup("g", settings: other) } == WireErrorCode.groupExists.rawValue)
        #expect(try await client.groupSettings("g") == original, "a refused create changes nothing")

        let answered = try await client.createGroup("g", settings: other, ifAbsent: true)
        #expect(answered == original, "ifAbsent answers the settings the group has")
        #expect(try await client.groupSettings("g") == original)

        // ifAbsent on a group that is not there creates it.
        let fresh = try Self.defaults(with: other)
        #expect(try await client.createGroup("h", settings: other, ifAbsent: true) == fresh)
        await client.close()
        #expect(await Self.stop(server) == 0)
    }

    @Test func configureChangesOnlyTheFieldsPresent() async throws {
        let dir = TemporaryDirectory("chime-group-admin")
        let server = try await Self.serve(dir.path)
        let client = Self.client(server)
        let before = try await client.createGroup("g", settings: WireGroupSettings(maxAttempts: 3, rateLimitMillis: 100_000, keyRateLimitMillis: 2_500))

        let changed = try await client.configureGroup("g", WireGroupSettings(maxInFlight: 7, keyConcurrency: 4))
        var expected = before
        expected.maxInFlight = 7
        expected.keyConcurrency = 4
        #expect(changed == expected)
        #expect(try await client.groupSettings("g") == expected)

        // -1 takes a limit away; the others stay.
        let cleared = try await client.configureGroup("g", WireGroupSettings(keyRateLimitMillis: -1, maxWindow: 500))
        expected.keyRateLimitMillis = -1
        expected.maxWindow = 500
        #expect(cleared == expected)
        #expect(cleared.maxAttempts == 3 && cleared.rateLimitMillis == 100_000 && cleared.keyConcurrency == 4)

        // An empty patch changes nothing and answers the settings.
        #expect(try await client.configureGroup("g", WireGroupSettings()) == expected)
        #expect(try await client.groupSettings("g") == expected)
        await client.close()
        #expect(await Self.stop(server) == 0)
    }

    @Test func valuesNoSettingCanTakeAreInvalidArgumentAndChangeNothing() async throws {
        let dir = TemporaryDirectory("chime-group-admin")
        let server = try await Self.serve(dir.path)
        let client = Self.client(server)
        let before = try await client.createGroup("g", settings: WireGroupSettings(keyConcurrency: 2, rateLimitMillis: 5_000))
        let bad: [(String, WireGroupSettings)] = [
            ("key concurrency 0", WireGroupSettings(keyConcurrency: 0)),
            ("max attempts -5", WireGroupSettings(maxAttempts: -5)),
            ("key ordering with key concurrency 3", WireGroupSettings(keyOrdering: true, keyConcurrency: 3)),
            ("rate 0", WireGroupSettings(rateLimitMillis: 0)),
        ]
        for (what, patch) in bad {
            // With a field that is fine beside it: that one is not applied either.
            var withGood = patch
            withGood.maxInFlight = 9
            #expect(await Self.refusal { try await client.configureGroup("g", withGood) } == WireErrorCode.invalidArgument.rawValue, "configure: \(what)")
            #expect(try await client.groupSettings("g") == before, "configure: \(what) changed nothing")
            #expect(await Self.refusal { try await client.createGroup("new", settings: patch) } == WireErrorCode.invalidArgument.rawValue, "create: \(what)")
            #expect(await Self.refusal { _ = try await client.groupSettings("new") } == WireErrorCode.unknownGroup.rawValue, "create: \(what) made no group")
        }
        await client.close()
        #expect(await Self.stop(server) == 0)
    }

    @Test func anUnknownGroupIsUnknownGroupToDescribeConfigureAndDelete() async throws {
        let dir = TemporaryDirectory("chime-group-admin")
        let server = try await Self.serve(dir.path)
        let client = Self.client(server)
        let unknown = WireErrorCode.unknownGroup.rawValue
        #expect(await Self.refusal { _ = try await client.groupSettings("nobody") } == unknown)
        #expect(await Self.refusal { try await client.configureGroup("nobody", WireGroupSettings(maxInFlight: 3)) } == unknown)
        #expect(await Self.refusal { try await client.deleteGroup("nobody") } == unknown)
        #expect(await Self.refusal { _ = try await client.groupSettings("nobody") } == unknown, "a configure does not create it")
        await client.close()
        #expect(await Self.stop(server) == 0)
    }

    /// A group cannot be deleted while a member is live, nor while it has positions in a
    /// topic that still exists (after a fetch, even with no member left); once that topic is
    /// deleted it can, and its name then makes a new group from the defaults.
    @Test func deleteIsRefusedWhileAMemberIsLiveOrItsPositionsTopicExistsThenFreesTheName() async throws {
        let dir = TemporaryDirectory("chime-group-admin")
        let server = try await Self.serve(dir.path)
        let client = Self.client(server)
        let inUse = WireErrorCode.groupInUse.rawValue
        #expect(inUse == 120)

        // A group nobody joined is deleted at once.
        try await client.createGroup("idle")
        try await client.deleteGroup("idle")
        #expect(await Self.refusal { _ = try await client.groupSettings("idle") } == WireErrorCode.unknownGroup.rawValue)

        _ = try await client.createTopic(
            "jobs",
            settings: WireTopicSettings(
                partitions: 1, retentionMilliseconds: nil, retentionBytes: nil, maxMessageBytes: 1 << 20, maxAttempts: 5, dedupWindowMilliseconds: 1_000))
        // A session far longer than the test: the member is live until it leaves.
        let settings = try await client.createGroup("workers", settings: WireGroupSettings(maxInFlight: 3, sessionTimeoutMilliseconds: 3_600_000))
        let member = try await RawClient.authenticated(port: server.port)
        let joined = try await member.call(.join, Join(group: "workers", member: "w1", topics: ["jobs"], createTopics: false), as: WireMembership.self)
        #expect(joined.assignment.count == 1)

        // A live member that has not fetched yet: in use.
        #expect(await Self.refusal { try await client.deleteGroup("workers") } == inUse, "a live member")
        #expect(try await client.groupSettings("workers") == settings, "a refused delete leaves the group as it was")

        _ = try await client.publish(Array("one".utf8), to: "jobs")
        let fetched = try await member.call(.fetch, Fetch(group: "workers", memberID: joined.memberID, max: 10, waitMilliseconds: 30_000), as: Deliveries.self)
        #expect(fetched.deliveries.map { String(decoding: $0.body, as: UTF8.self) } == ["one"])
        #expect(await Self.refusal { try await client.deleteGroup("workers") } == inUse, "a live member with a lease")
        _ = try await member.call(.leave, MemberRef(group: "workers", memberID: joined.memberID), as: Empty.self)
        await member.close()

        // No member, but a position in a topic that exists.
        do {
            try await client.deleteGroup("workers")
            Issue.record("deleted a group with positions in a live topic")
        } catch let e as ClientError {
            #expect(e.code == inUse)
            #expect(e.message.contains("jobs"), "names the topic: \(e.message)")
        }
        #expect(try await client.groupSettings("workers") == settings)
        // Still a working group after the refusal: a member joins and gets the message again.
        let again = try await RawClient.authenticated(port: server.port)
        let rejoined = try await again.call(.join, Join(group: "workers", member: "w2", topics: ["jobs"], createTopics: false), as: WireMembership.self)
        let redelivered = try await again.call(.fetch, Fetch(group: "workers", memberID: rejoined.memberID, max: 10, waitMilliseconds: 30_000), as: Deliveries.self)
        #expect(redelivered.deliveries.map { String(decoding: $0.body, as: UTF8.self) } == ["one"], "the lease ended with the leave: delivered again")
        _ = try await again.call(.leave, MemberRef(group: "workers", memberID: rejoined.memberID), as: Empty.self)
        await again.close()

        // The topic goes, and the group's positions with it: now it can be deleted.
        try await client.deleteTopic("jobs")
        try await client.deleteGroup("workers")
        #expect(await Self.refusal { _ = try await client.groupSettings("workers") } == WireErrorCode.unknownGroup.rawValue)
        #expect(await Self.refusal { try await client.deleteGroup("workers") } == WireErrorCode.unknownGroup.rawValue, "deleted once")

        // The name is free: a new group of the defaults, not the old settings.
        let defaults = try Self.defaults()
        #expect(try await client.createGroup("workers") == defaults)
        try await client.deleteGroup("workers")
        await client.close()
        #expect(await Self.stop(server) == 0)
    }

    @Test func settingsSurviveARestartOfTheServer() async throws {
        let dir = TemporaryDirectory("chime-group-admin")
        let data = dir.path
        let server = try await Self.serve(data)
        let client = Self.client(server)
        try await client.createGroup(
            "kept", settings: WireGroupSettings(mode: .shared, leaseMilliseconds: 90_000, maxAttempts: 4, keyOrdering: true, rateLimitMillis: 12_345))
        let configured = try await client.configureGroup("kept", WireGroupSettings(keyRateLimitMillis: 2_500, keyRateBurstMillis: 7_000, maxWindow: 20_000))
        #expect(configured.keyRateLimitMillis == 2_500 && configured.mode == .shared)
        try await client.createGroup("gone")
        try await client.deleteGroup("gone")
        await client.close()
        #expect(await Self.stop(server) == 0)

        let restarted = try await Self.serve(data)
        let again = Self.client(restarted)
        #expect(try await again.groupSettings("kept") == configured)
        #expect(await Self.refusal { _ = try await again.groupSettings("gone") } == WireErrorCode.unknownGroup.rawValue, "a deletion survives too")
        #expect(await Self.refusal { try await again.createGroup("kept") } == WireErrorCode.groupExists.rawValue)
        await again.close()
        #expect(await Self.stop(restarted) == 0)
    }

    /// Opcodes 19–22 are version 5's: a connection that chose version 4 does not know them
    /// (unknownOpcode, and the server closes it), and nothing happens to the group.
    @Test func aConnectionOfVersion4DoesNotKnowTheGroupOpcodes() async throws {
        let dir = TemporaryDirectory("chime-group-admin")
        let server = try await Self.serve(dir.path)
        let client = Self.client(server)
        let kept = try await client.createGroup("kept", settings: WireGroupSettings(maxInFlight: 8))

        let requests: [(Opcode, @Sendable (RawClient) async throws -> Void)] = [
            (.createGroup, { _ = try await $0.call(.createGroup, CreateGroup(name: "fresh"), as: WireGroupSettings.self) }),
            (.configureGroup, { _ = try await $0.call(.configureGroup, ConfigureGroup(name: "kept", settings: WireGroupSettings(maxInFlight: 2)), as: WireGroupSettings.self) }),
            (.describeGroup, { _ = try await $0.call(.describeGroup, GroupRef(name: "kept"), as: WireGroupSettings.self) }),
            (.deleteGroup, { _ = try await $0.call(.deleteGroup, GroupRef(name: "kept"), as: Empty.self) }),
        ]
        for (opcode, request) in requests {
            let old = try await RawClient(port: server.port)
            let hello = try await old.call(.hello, Hello(minVersion: 1, maxVersion: 4, client: "v4"), as: HelloReply.self)
            #expect(hello.version == 4)
            // Version 4's requests are served on it.
            #expect(try await old.call(.listTopics, Empty(), as: TopicList.self).topics.isEmpty)
            do {
                try await request(old)
                Issue.record("a version-4 connection was served opcode \(opcode.rawValue)")
            } catch let e as ErrorReply {
                #expect(e.code == WireErrorCode.unknownOpcode.rawValue, "opcode \(opcode.rawValue): \(e.code) \(e.message)")
            }
            #expect(await old.isClosedByServer(), "opcode \(opcode.rawValue)")
        }
        #expect(requests.map(\.0.rawValue) == [19, 20, 21, 22])
        #expect(await Self.refusal { _ = try await client.groupSettings("fresh") } == WireErrorCode.unknownGroup.rawValue, "not created")
        #expect(try await client.groupSettings("kept") == kept, "neither configured nor deleted")
        await client.close()
        #expect(await Self.stop(server) == 0)
    }
}
