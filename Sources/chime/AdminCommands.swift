import ArgumentParser
import ChimeClient
import ChimeProtocol
import Foundation

// `chime topics …`, `chime groups …`, `chime stats`, `chime cancel`: the broker's state over
// the protocol, human-readable by default, one JSON object per line with --json.

/// Runs `body` with a client, closing it after; broker errors become one clear line.
func withBroker<R: Sendable>(_ address: BrokerAddress, name: String, _ body: (ChimeClient) async throws -> R) async throws -> R {
    let client = try address.client(name: name)
    do {
        let r = try await body(client)
        await client.close()
        return r
    } catch {
        await client.close()
        throw clientFailure(error)
    }
}

func isoTime(_ ms: Int64) -> String {
    let f = ISO8601DateFormatter()
    f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
    return f.string(from: Date(timeIntervalSince1970: Double(ms) / 1000))
}

/// "3.2 s ago" / "in 5 m": how far `ms` is from now, for humans.
func relative(_ ms: Int64, now: Int64) -> String {
    let d = Double(ms - now) / 1000
    let a = abs(d)
    let text = a < 1 ? String(format: "%.0f ms", a * 1000) : a < 120 ? String(format: "%.1f s", a) : a < 7200 ? String(format: "%.0f m", a / 60) : a < 172_800 ? String(format: "%.1f h", a / 3600) : String(format: "%.1f d", a / 86400)
    return d >= 0 ? "in \(text)" : "\(text) ago"
}

struct TopicsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "topics",
        abstract: "Create, list and delete topics.",
        subcommands: [List.self, Create.self, Delete.self],
        defaultSubcommand: List.self)

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List topics with their settings and counts.",
            discussion: """
                Columns: partitions, messages kept in the ready logs, scheduled messages \
                waiting in the wheel, the next due time, bytes on disk.
                """)
        @OptionGroup var broker: BrokerAddress
        @Flag(name: .long, help: "One JSON object per topic and line.") var json = false

        func run() async throws {
            let s = try await withBroker(broker, name: "chime-topics") { try await $0.stats() }
            if json {
                for t in s.topics { print(topicJSON(t)) }
                return
            }
            if s.topics.isEmpty {
                print("no topics")
                return
            }
            print(pad(["TOPIC", "PARTITIONS", "READY", "SCHEDULED", "NEXT DUE", "ON DISK", "RETENTION"]))
            for t in s.topics {
                let ready = t.partitions.reduce(0) { $0 + $1.logEnd - $1.readyStart }
                let scheduled = t.partitions.reduce(0) { $0 + $1.scheduled }
                let next = t.partitions.compactMap(\.nextDue).min().map { relative($0, now: s.takenAt) } ?? "-"
                let bytes = t.partitions.reduce(0) { $0 + $1.readyBytes + $1.timerBytes }
                let retention = t.topic.settings.retentionMilliseconds.map { "\(Double($0) / 3_600_000) h" } ?? "forever"
                print(pad([t.topic.name, "\(t.partitions.count)", "\(ready)", "\(scheduled)", next, Format.bytes(bytes), retention]))
            }
        }
    }

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create a topic.",
            discussion: """
                With no settings given, the topic gets the broker's defaults for new topics \
                (what `chime serve --partitions` and `--retention-*` set); with any given, the \
                others take the defaults shown here.

                Examples:
                  chime topics create orders --partitions 8
                  chime topics create coupons --retention 30d --max-attempts 10
                """)
        @OptionGroup var broker: BrokerAddress
        @Argument(help: "Topic name: letters, digits, '.', '_' and '-'.") var name: String
        @Option(name: .long, help: "Partitions: the unit of parallelism and of ordering by key (default 4).") var partitions: UInt32?
        @Option(name: .long, help: "Keep messages this long (e.g. 7d, 12h) or 'forever' (default 7d).") var retention: String?
        @Option(name: .customLong("retention-mib"), help: "Keep at most this many MiB per partition (default: no limit).") var retentionMiB: Int64?
        @Option(name: .customLong("max-message-bytes"), help: "Largest message accepted (default 1 MiB).") var maxMessageBytes: UInt32?
        @Option(name: .customLong("max-attempts"), help: "Deliveries before a message goes to the group's dead-letter topic (default 5).") var maxAttempts: UInt16?
        @Option(name: .customLong("dedup-window"), help: "How long dedup keys are remembered (default 10m).") var dedupWindow: String?

        func run() async throws {
            let retentionMs: Int64?
            if (retention ?? "7d") == "forever" {
                retentionMs = nil
            } else {
                guard let ms = parseDuration(retention ?? "7d"), ms > 0 else { throw ValidationError("--retention must look like 7d or 12h, or be 'forever'") }
                retentionMs = ms
            }
            guard let dedup = parseDuration(dedupWindow ?? "10m") else { throw ValidationError("--dedup-window must look like 10m") }
            if let mib = retentionMiB, mib <= 0 { throw ValidationError("--retention-mib must be positive") }
            let anySet = partitions != nil || retention != nil || retentionMiB != nil || maxMessageBytes != nil || maxAttempts != nil || dedupWindow != nil
            // None given: no settings on the wire, so the broker applies its own defaults.
            let settings =
                anySet
                ? WireTopicSettings(
                    partitions: partitions ?? 4, retentionMilliseconds: retentionMs, retentionBytes: retentionMiB.map { $0 << 20 },
                    maxMessageBytes: maxMessageBytes ?? 1 << 20, maxAttempts: maxAttempts ?? 5, dedupWindowMilliseconds: dedup) : nil
            let t = try await withBroker(broker, name: "chime-topics") { try await $0.createTopic(name, settings: settings) }
            print("created topic \(t.name) (id \(t.id)) with \(t.settings.partitions) partition(s)")
        }
    }

    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Delete a topic and every message in it (scheduled ones too). Cannot be undone.")
        @OptionGroup var broker: BrokerAddress
        @Argument(help: "Topic name.") var name: String
        @Flag(name: .long, help: "Do not ask for confirmation.") var yes = false

        func run() async throws {
            if !yes {
                guard isatty(0) != 0 else { throw ValidationError("deleting a topic needs --yes when standard input is not a terminal") }
                print("delete topic \(name) and all its messages? type the topic name to confirm: ", terminator: "")
                fflush(nil)
                guard readLine() == name else { throw CommandFailure(description: "not confirmed; nothing deleted") }
            }
            try await withBroker(broker, name: "chime-topics") { try await $0.deleteTopic(name) }
            print("deleted topic \(name)")
        }
    }
}

struct StatsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stats",
        abstract: "The broker at a glance: every topic's partitions and every group's lag.",
        discussion: """
            Examples:
              chime stats
              chime stats --topic orders --json
              chime stats --watch 2s
            """)
    @OptionGroup var broker: BrokerAddress
    @Option(name: .long, help: "Only this topic (repeat for several).") var topic: [String] = []
    @Option(name: .long, help: "Only this group (repeat for several).") var group: [String] = []
    @Option(name: .long, help: "Print again every interval (e.g. 2s) until interrupted.") var watch: String?
    @Flag(name: .long, help: "One JSON object per topic and group, a line each.") var json = false

    func run() async throws {
        let interval = try watch.map { w -> Int64 in
            guard let ms = parseDuration(w), ms >= 100 else { throw ValidationError("--watch must be at least 100ms, e.g. 2s") }
            return ms
        }
        let client = try broker.client(name: "chime-stats")
        repeat {
            let s: StatsReply
            do {
                s = try await client.stats(topics: topic, groups: group)
            } catch {
                await client.close()
                throw clientFailure(error)
            }
            if json {
                for t in s.topics { print(topicJSON(t)) }
                for g in s.groups { print(groupJSON(g)) }
            } else {
                print("at \(isoTime(s.takenAt)): \(s.topics.count) topic(s), \(s.groups.count) group(s)")
                for t in s.topics {
                    print("topic \(t.topic.name) (id \(t.topic.id))")
                    print(pad(["  PARTITION", "START", "END", "SCHEDULED", "NEXT DUE", "READY LOG", "TIMER LOG"]))
                    for p in t.partitions {
                        print(
                            pad([
                                "  \(p.partition)", "\(p.readyStart)", "\(p.logEnd)", "\(p.scheduled)", p.nextDue.map { relative($0, now: s.takenAt) } ?? "-",
                                Format.bytes(p.readyBytes), Format.bytes(p.timerBytes),
                            ]))
                    }
                }
                for g in s.groups {
                    print("group \(g.name): \(g.memberCount) member(s), lag \(g.lag), in flight \(g.inFlight)")
                }
            }
            fflush(nil)
            if let interval { try await Task.sleep(for: .milliseconds(interval)) }
        } while interval != nil
        await client.close()
    }
}

struct CancelCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cancel",
        abstract: "Cancel scheduled messages by the ids `chime publish` printed.",
        discussion: """
            A message that has already fired (or was never scheduled) cannot be cancelled: \
            that is reported, and the exit status is 1.

            Example:
              chime cancel 3-1-s4096
            """)
    @OptionGroup var broker: BrokerAddress
    @Argument(help: "Message ids, as printed by `chime publish`.") var ids: [String]

    func run() async throws {
        let parsed = try ids.map { text -> WireMessageID in
            guard let id = WireMessageID(text: text) else { throw ValidationError("'\(text)' is not a message id (they look like 3-1-s4096)") }
            return id
        }
        var failed = 0
        try await withBroker(broker, name: "chime-cancel") { client in
            for (text, id) in zip(ids, parsed) {
                do {
                    try await client.cancel(id)
                    print("cancelled \(text)")
                } catch let e as ClientError where !e.isDisconnected {
                    FileHandle.standardError.write("chime: \(text): \(e.message)\n".data(using: .utf8)!)
                    failed += 1
                }
            }
        }
        if failed > 0 { throw ExitCode(1) }
    }
}

extension WireMessageID {
    /// Parses `text` ("topic-partition-s123" / "…-r123").
    init?(text: String) {
        let parts = text.split(separator: "-")
        guard parts.count == 3, let topic = UInt32(parts[0]), let partition = UInt32(parts[1]), let kindChar = parts[2].first,
            kindChar == "s" || kindChar == "r", let value = Int64(parts[2].dropFirst()), value >= 0
        else { return nil }
        self.init(topicID: topic, partition: partition, kind: kindChar == "s" ? 1 : 0, value: value)
    }
}

/// Columns padded to a fixed width, for terminal tables.
func pad(_ cells: [String]) -> String {
    let widths = [22, 11, 12, 11, 12, 11, 11, 12]
    var line = ""
    for (i, c) in cells.enumerated() {
        let w = i < widths.count ? widths[i] : 12
        line += i == cells.count - 1 ? c : c.padding(toLength: max(w, c.count + 1), withPad: " ", startingAt: 0)
    }
    return line
}

func topicJSON(_ t: WireTopicStats) -> String {
    let parts = t.partitions.map { p in
        "{\"partition\":\(p.partition),\"readyStart\":\(p.readyStart),\"logEnd\":\(p.logEnd),\"readyBytes\":\(p.readyBytes),"
            + "\"scheduled\":\(p.scheduled),\"nextDueAt\":\(p.nextDue.map(String.init) ?? "null"),\"timerBytes\":\(p.timerBytes)}"
    }
    let s = t.topic.settings
    return "{\"topic\":\(Format.json(t.topic.name)),\"id\":\(t.topic.id),\"settings\":{\"partitions\":\(s.partitions),"
        + "\"retentionMilliseconds\":\(s.retentionMilliseconds.map(String.init) ?? "null"),\"retentionBytes\":\(s.retentionBytes.map(String.init) ?? "null"),"
        + "\"maxMessageBytes\":\(s.maxMessageBytes),\"maxAttempts\":\(s.maxAttempts),\"dedupWindowMilliseconds\":\(s.dedupWindowMilliseconds)},"
        + "\"partitions\":[\(parts.joined(separator: ","))]}"
}

func groupJSON(_ g: WireGroupStats, settings: WireGroupSettings? = nil) -> String {
    let parts = g.partitions.map { p in
        "{\"topic\":\(Format.json(p.topic)),\"partition\":\(p.partition),\"committed\":\(p.committed),\"lag\":\(p.lag),\"inFlight\":\(p.inFlight),"
            + "\"retriesPending\":\(p.retriesPending),\"deadLettered\":\(p.deadLettered),\"owner\":\(p.owner.map(String.init) ?? "null")}"
    }
    let members = g.members.map { m in
        "{\"id\":\(m.id),\"name\":\(Format.json(m.name)),\"lastSeen\":\(m.lastSeen),\"assignment\":["
            + m.assignment.map { "{\"topic\":\(Format.json($0.topic)),\"partition\":\($0.partition)}" }.joined(separator: ",") + "]}"
    }
    return "{\"group\":\(Format.json(g.name)),\"generation\":\(g.generation),\"members\":\(g.memberCount),\"lag\":\(g.lag),\"inFlight\":\(g.inFlight),"
        + "\"partitions\":[\(parts.joined(separator: ","))],\"memberList\":[\(members.joined(separator: ","))]"
        + (settings.map { ",\"settings\":\(settingsJSON($0))" } ?? "") + "}"
}
