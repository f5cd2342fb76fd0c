import ArgumentParser
import ChimeClient
import ChimeProtocol
import Foundation

// `chime groups …`: list, show, create, configure and delete consumer groups.

struct GroupsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "groups",
        abstract: "Consumer groups: list, show, create, configure, delete.",
        discussion: """
            A group is created by the first member that joins (with the broker's defaults), or
            beforehand with its settings:

              chime groups create mailers --mode shared --key-concurrency 2
              chime groups configure mailers --key-rate 5 --lease 2m
              chime groups show mailers
              chime groups delete mailers

            Modes: partitioned (each partition owned by one member at a time: order within a
            partition, as many busy members as partitions) or shared (every member fetches
            from every partition; the per-message lease alone gives exclusivity: any number
            of workers on one queue).
            """,
        subcommands: [List.self, Show.self, Create.self, Configure.self, Delete.self],
        defaultSubcommand: List.self)

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List groups: members, lag (unacked messages), in flight, retries, dead letters.")
        @OptionGroup var broker: BrokerAddress
        @Flag(name: .long, help: "One JSON object per group and line.") var json = false

        func run() async throws {
            let s = try await withBroker(broker, name: "chime-groups") { try await $0.stats() }
            if json {
                for g in s.groups { print(groupJSON(g)) }
                return
            }
            if s.groups.isEmpty {
                print("no groups")
                return
            }
            print(pad(["GROUP", "MEMBERS", "GENERATION", "LAG", "IN FLIGHT", "RETRIES", "DEAD"]))
            for g in s.groups {
                let retries = g.partitions.reduce(0) { $0 + $1.retriesPending }
                let dead = g.partitions.reduce(0) { $0 + $1.deadLettered }
                print(pad([g.name, "\(g.memberCount)", "\(g.generation)", "\(g.lag)", "\(g.inFlight)", "\(retries)", "\(dead)"]))
            }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "One group: its settings, its members and each partition's position, lag and owner.")
        @OptionGroup var broker: BrokerAddress
        @Argument(help: "Group name.") var name: String
        @Flag(name: .long, help: "One JSON object.") var json = false

        func run() async throws {
            let (s, settings) = try await withBroker(broker, name: "chime-groups") { client in
                (try await client.stats(topics: [], groups: [name], includeMembers: true), try await client.groupSettings(name))
            }
            guard let g = s.groups.first else { throw CommandFailure(description: "no group \(name)") }
            if json {
                print(groupJSON(g, settings: settings))
                return
            }
            print("group \(g.name): generation \(g.generation), \(g.memberCount) member(s), lag \(g.lag), in flight \(g.inFlight)")
            for line in settingsLines(settings) { print("  \(line)") }
            let names = Dictionary(g.members.map { ($0.id, $0.name) }, uniquingKeysWith: { a, _ in a })
            for m in g.members {
                print("  member \(m.name) (id \(m.id)): last seen \(relative(m.lastSeen, now: s.takenAt)), \(m.assignment.count) partition(s)")
            }
            print(pad(["  TOPIC", "PARTITION", "COMMITTED", "LAG", "IN FLIGHT", "RETRIES", "DEAD", "OWNER"]))
            for p in g.partitions {
                let owner = p.owner.map { names[$0] ?? "\($0)" } ?? "-"
                print(pad(["  \(p.topic)", "\(p.partition)", "\(p.committed)", "\(p.lag)", "\(p.inFlight)", "\(p.retriesPending)", "\(p.deadLettered)", owner]))
            }
        }
    }

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create a group with its settings (the broker's defaults for the rest).",
            discussion: """
                Examples:
                  chime groups create mailers --mode shared
                  chime groups create reports --key-ordering --lease 10m --max-attempts 3
                  chime groups create emails --mode shared --if-absent     # no error if it exists
                """)
        @OptionGroup var broker: BrokerAddress
        @Argument(help: "Group name.") var name: String
        @OptionGroup var settings: GroupSettingsOptions
        @Flag(name: .long, help: "A group of that name is no error: its settings are printed unchanged.") var ifAbsent = false
        @Flag(name: .long, help: "Print the settings as one JSON object.") var json = false

        func run() async throws {
            let patch = try settings.patch()
            let result = try await withBroker(broker, name: "chime-groups") { try await $0.createGroup(name, settings: patch, ifAbsent: ifAbsent) }
            printSettings(name, result, json: json, verb: "group \(name)")
        }
    }

    struct Configure: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Change some of a group's settings; the others stay.",
            discussion: """
                Takes effect at once for new deliveries; leases already granted keep their
                deadline. Changing the mode ends every lease: those messages are delivered again.

                Examples:
                  chime groups configure mailers --key-rate 10 --key-rate-burst 20
                  chime groups configure mailers --key-rate none
                  chime groups configure mailers --mode partitioned
                """)
        @OptionGroup var broker: BrokerAddress
        @Argument(help: "Group name.") var name: String
        @OptionGroup var settings: GroupSettingsOptions
        @Flag(name: .long, help: "Print the settings as one JSON object.") var json = false

        func run() async throws {
            let patch = try settings.patch()
            let result = try await withBroker(broker, name: "chime-groups") { try await $0.configureGroup(name, patch) }
            printSettings(name, result, json: json, verb: "group \(name)")
        }
    }

    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Delete a group that has no live member and no position in a topic that still exists.",
            discussion: """
                A group's positions (committed offsets, retries, acks) live in its topics'
                partitions and go when those topics are deleted; until then the group cannot be
                deleted. Stop its members first (or wait for their session timeout).
                """)
        @OptionGroup var broker: BrokerAddress
        @Argument(help: "Group name.") var name: String

        func run() async throws {
            try await withBroker(broker, name: "chime-groups") { try await $0.deleteGroup(name) }
            print("deleted group \(name)")
        }
    }
}

/// The settings `chime groups create` and `configure` take; each one left out keeps its
/// value (the broker's default on create).
struct GroupSettingsOptions: ParsableArguments {
    @Option(name: .long, help: "partitioned or shared (see chime groups --help).") var mode: String?
    @Option(name: .long, help: "Messages in flight at once per partition (per member per partition when partitioned).") var maxInFlight: UInt32?
    @Option(name: .long, help: "Visibility timeout of a delivery, e.g. 30s or 5m.") var lease: String?
    @Option(name: .long, help: "A member silent this long leaves the group and its leases are released, e.g. 10s.") var sessionTimeout: String?
    @Option(name: .long, help: "Deliveries before a message is dead-lettered, or 'topic' for the topic's setting.") var maxAttempts: String?
    @Flag(name: .long, inversion: .prefixedNo, help: "Never two messages of one key in flight, in order.") var keyOrdering: Bool?
    @Option(name: .long, help: "At most N messages of one key in flight at once, or 'none'.") var keyConcurrency: String?
    @Option(name: .long, help: "Deliveries per second for the whole group, or 'none'.") var rate: String?
    @Option(name: .long, help: "Deliveries the group's bucket holds, or 'default' (a second's worth).") var rateBurst: String?
    @Option(name: .long, help: "Deliveries per second of one key, across all members, or 'none'.") var keyRate: String?
    @Option(name: .long, help: "Deliveries one key's bucket holds, or 'default' (a second's worth).") var keyRateBurst: String?
    @Option(name: .long, help: "Most offsets a partition's window may span (bounds what a stuck message pins).") var maxWindow: UInt32?

    func patch() throws -> WireGroupSettings {
        var p = WireGroupSettings()
        if let mode {
            switch mode {
            case "partitioned": p.mode = .partitioned
            case "shared": p.mode = .shared
            default: throw ValidationError("--mode is partitioned or shared, not '\(mode)'")
            }
        }
        p.maxInFlight = maxInFlight
        p.leaseMilliseconds = try lease.map { try duration($0, "--lease") }
        p.sessionTimeoutMilliseconds = try sessionTimeout.map { try duration($0, "--session-timeout") }
        p.maxAttempts = try maxAttempts.map { try count($0, "--max-attempts", none: "topic") }
        p.keyOrdering = keyOrdering
        p.keyConcurrency = try keyConcurrency.map { try count($0, "--key-concurrency", none: "none") }
        p.rateLimitMillis = try rate.map { try millis($0, "--rate", none: "none") }
        p.rateBurstMillis = try rateBurst.map { try millis($0, "--rate-burst", none: "default") }
        p.keyRateLimitMillis = try keyRate.map { try millis($0, "--key-rate", none: "none") }
        p.keyRateBurstMillis = try keyRateBurst.map { try millis($0, "--key-rate-burst", none: "default") }
        p.maxWindow = maxWindow
        return p
    }

    private func duration(_ text: String, _ option: String) throws -> Int64 {
        guard let ms = parseDuration(text), ms >= 1 else { throw ValidationError("\(option) is a duration such as 500ms, 30s or 5m, not '\(text)'") }
        return ms
    }

    private func count(_ text: String, _ option: String, none: String) throws -> Int64 {
        if text == none { return -1 }
        guard let n = Int64(text), n >= 1, n <= Int64(Int32.max) else { throw ValidationError("\(option) is a whole number from 1, or '\(none)', not '\(text)'") }
        return n
    }

    private func millis(_ text: String, _ option: String, none: String) throws -> Int64 {
        if text == none { return -1 }
        guard let v = Double(text), v > 0, v <= 1e9 else { throw ValidationError("\(option) is a positive number (per second), or '\(none)', not '\(text)'") }
        return max(1, Int64((v * 1000).rounded()))
    }
}

/// A group's settings, a line each.
func settingsLines(_ s: WireGroupSettings) -> [String] {
    func none(_ v: Int64?, _ word: String, _ show: (Int64) -> String = { "\($0)" }) -> String { v.map { $0 == -1 ? word : show($0) } ?? "?" }
    func rate(_ v: Int64) -> String { Format.number(Double(v) / 1000) }
    func perSecond(_ limit: Int64?, burst: Int64?) -> String {
        guard let limit, limit != -1 else { return "no limit" }
        return "\(rate(limit))/s, burst \(none(burst, "a second's worth", rate))"
    }
    return [
        "mode: \(s.mode.map { $0 == .shared ? "shared" : "partitioned" } ?? "?")",
        "max in flight: \(s.maxInFlight.map(String.init) ?? "?") per partition",
        "lease: \(s.leaseMilliseconds.map { "\($0) ms" } ?? "?"), session timeout: \(s.sessionTimeoutMilliseconds.map { "\($0) ms" } ?? "?")",
        "max attempts: \(none(s.maxAttempts, "the topic's"))",
        "key ordering: \(s.keyOrdering.map { $0 ? "on" : "off" } ?? "?"), key concurrency: \(none(s.keyConcurrency, "no limit"))",
        "rate: \(perSecond(s.rateLimitMillis, burst: s.rateBurstMillis))",
        "key rate: \(perSecond(s.keyRateLimitMillis, burst: s.keyRateBurstMillis))",
        "max window: \(s.maxWindow.map(String.init) ?? "?")",
    ]
}

/// A group's settings as a JSON object: numbers, `null` where there is no limit.
func settingsJSON(_ s: WireGroupSettings) -> String {
    func int(_ v: Int64?) -> String { v.map { $0 == -1 ? "null" : "\($0)" } ?? "null" }
    func rate(_ v: Int64?) -> String { v.map { $0 == -1 ? "null" : Format.number(Double($0) / 1000) } ?? "null" }
    return "{\"mode\":\(Format.json(s.mode == .shared ? "shared" : "partitioned")),\"maxInFlight\":\(s.maxInFlight.map(String.init) ?? "null"),"
        + "\"leaseMilliseconds\":\(int(s.leaseMilliseconds)),\"sessionTimeoutMilliseconds\":\(int(s.sessionTimeoutMilliseconds)),"
        + "\"maxAttempts\":\(int(s.maxAttempts)),\"keyOrdering\":\(s.keyOrdering ?? false),\"keyConcurrency\":\(int(s.keyConcurrency)),"
        + "\"rateLimit\":\(rate(s.rateLimitMillis)),\"rateBurst\":\(rate(s.rateBurstMillis)),\"keyRateLimit\":\(rate(s.keyRateLimitMillis)),"
        + "\"keyRateBurst\":\(rate(s.keyRateBurstMillis)),\"maxWindow\":\(s.maxWindow.map(String.init) ?? "null")}"
}

private func printSettings(_ name: String, _ s: WireGroupSettings, json: Bool, verb: String) {
    if json {
        print(settingsJSON(s))
        return
    }
    print(verb)
    for line in settingsLines(s) { print("  \(line)") }
}
