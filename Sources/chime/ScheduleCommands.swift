import ArgumentParser
import ChimeClient
import ChimeSchedule
import Foundation

// `chime schedules …`: recurring messages the broker publishes itself, and the preview
// of a spec's occurrences, computed here exactly as the broker will (ChimeSchedule).

struct SchedulesCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "schedules",
        abstract: "Recurring schedules fired by the broker, exactly once per occurrence.",
        discussion: """
            A schedule publishes a message to a topic at every occurrence of its spec. Each
            occurrence carries the headers chime-schedule (the name) and chime-occurrence (its
            time in ms) and the dedup key schedule/<name>/<ms>. After downtime the misfire
            policy decides: latest (default: the last missed occurrence, once), all (every one
            within the catch-up window), none.

            Examples:
              chime schedules create nightly --cron '0 3 * * *' --tz Europe/Berlin --topic reports 'build the report'
              chime schedules create heartbeat --every 30s --topic pings
              chime schedules
              chime schedules show nightly --upcoming 5
              chime schedules trigger nightly
            """,
        subcommands: [List.self, Create.self, Show.self, Pause.self, Resume.self, Trigger.self, Backfill.self, Delete.self, Preview.self],
        defaultSubcommand: List.self)

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "list", abstract: "Every schedule: its spec, zone, next and last occurrence, and whether it is paused.")
        @OptionGroup var broker: BrokerAddress
        @Flag(name: .long, help: "One JSON object per schedule and line.") var json = false

        func run() async throws {
            let all = try await withBroker(broker, name: "chime-schedules") { try await $0.schedules() }
            if json {
                for info in all { print(scheduleJSON(info)) }
                return
            }
            guard !all.isEmpty else {
                print("no schedules (chime schedules create --help)")
                return
            }
            let rows = all.map { i in
                [i.schedule.name, specText(i.schedule.spec), zoneText(i.schedule.spec).isEmpty ? "-" : zoneText(i.schedule.spec), i.schedule.target.topic,
                    i.nextOccurrence.map(isoTime) ?? "-", i.lastOccurrence.map(isoTime) ?? "-", i.idle ?? "active"]
            }
            let header = ["NAME", "SPEC", "ZONE", "TOPIC", "NEXT", "LAST", "STATE"]
            for line in Format.table(header, rows) { print(line) }
        }
    }

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create a schedule (or with --update/--upsert change one).",
            discussion: """
                Give exactly one spec: --cron (5 fields, or 6 with seconds first; @daily-style
                macros; @every 30s) with --tz, --every, --fixed-rate (with --initial-delay),
                --fixed-delay with --group (the next occurrence comes this long after the group
                acks the previous one), or --at (once). --overlap skip or bufferOne with --group:
                while the previous occurrence is unacked in the group, an occurrence is skipped,
                or one is held and published when the previous one is acked. Creating a schedule that exists with the same definition changes
                nothing; with another definition it is refused unless --update or --upsert. An
                update takes effect from the next occurrence.

                Examples:
                  chime schedules create nightly --cron '0 3 * * *' --tz Europe/Berlin --topic reports 'build the report'
                  chime schedules create sweep --cron '0 */5 * * * *' --tz Asia/Shanghai --topic jobs --key shard-1 --header kind=sweep
                  chime schedules create poll --every 30s --topic jobs --jitter 5s --misfire none
                  chime schedules create launch --at 2027-01-01T00:00:00Z --topic jobs
                  chime schedules create sync --every 1m --topic jobs --overlap skip --group syncers
                  chime schedules create drain --fixed-delay 30s --group drainers --topic jobs
                """)
        @OptionGroup var broker: BrokerAddress
        @Argument(help: "The schedule's name ([A-Za-z0-9._-], unique on the broker).") var name: String
        @Argument(help: "The body of every occurrence's message.") var body: String = ""
        @Option(name: .long, help: "A cron expression, macro, or @every <duration>.") var cron: String?
        @Option(name: .customLong("tz"), help: "IANA time zone of the cron expression (default UTC).") var zone = "UTC"
        @Option(name: .long, help: "Every <duration> (30s, 5m, 1h), on multiples of it since the epoch.") var every: String?
        @Option(name: .customLong("fixed-rate"), help: "Every <duration>, from now plus --initial-delay.") var fixedRate: String?
        @Option(name: .customLong("initial-delay"), help: "With --fixed-rate: the first occurrence's delay.") var initialDelay = "0s"
        @Option(name: .long, help: "Once, at this time (ISO 8601).") var at: String?
        @Option(name: .customLong("fixed-delay"), help: "This long after the previous occurrence is acked by --group (the first: from now).") var fixedDelay: String?
        @Option(name: .long, help: "The group whose acks settle an occurrence (--fixed-delay, --overlap).") var group: String?
        @Option(name: .long, help: "While the previous occurrence is unacked in --group: allow, skip, or bufferOne (hold one).") var overlap = "allow"
        @Option(name: .long, help: "The topic the occurrences are published to.") var topic: String
        @Option(name: .long, help: "The messages' key.") var key: String?
        @Option(name: .long, help: "A header name=value for the messages (repeatable).") var header: [String] = []
        @Option(name: .long, help: "After downtime: latest, all or none.") var misfire = "latest"
        @Option(name: .customLong("catch-up"), help: "With --misfire all: how far back missed occurrences still fire.") var catchUp = "1h"
        @Option(name: .long, help: "Fire each occurrence up to this much later (the same for an occurrence every time).") var jitter = "0s"
        @Option(name: .long, help: "No occurrence before this time (ISO 8601).") var start: String?
        @Option(name: .long, help: "No occurrence after this time (ISO 8601).") var end: String?
        @Flag(name: .long, help: "Create it paused.") var paused = false
        @Flag(name: .long, help: "Change an existing schedule (it must exist).") var update = false
        @Flag(name: .long, help: "Create it, or change it if it exists.") var upsert = false
        @Flag(name: .long, help: "Print the schedule as JSON.") var json = false

        func validate() throws {
            let specs = [cron, every, fixedRate, fixedDelay, at].compactMap { $0 }
            guard specs.count == 1 else { throw ValidationError("give exactly one of --cron, --every, --fixed-rate, --fixed-delay, --at") }
            guard let policy = OverlapPolicy(rawValue: overlap) else { throw ValidationError("--overlap must be allow, skip or bufferOne, not '\(overlap)'") }
            if (policy != .allow || fixedDelay != nil) && group == nil {
                throw ValidationError("--group names the group whose acks settle an occurrence (needed by --fixed-delay and --overlap \(overlap))")
            }
            guard MisfirePolicy(rawValue: misfire) != nil else { throw ValidationError("--misfire must be latest, all or none, not '\(misfire)'") }
            guard !(update && upsert) else { throw ValidationError("--update and --upsert exclude each other") }
            for h in header where !h.contains("=") { throw ValidationError("--header '\(h)' is not name=value") }
        }

        func run() async throws {
            let now = nowMilliseconds()
            func duration(_ text: String, _ option: String) throws -> Int64 {
                guard let ms = parseDuration(text) else { throw ValidationError("\(option) '\(text)' is not a duration (like 250ms, 30s, 5m, 2h, 1d)") }
                return ms
            }
            func time(_ text: String, _ option: String) throws -> Int64 {
                guard let date = parseISOTime(text) else { throw ValidationError("\(option) '\(text)' is not an ISO 8601 time (like 2027-01-01T00:00:00Z)") }
                return Int64((date.timeIntervalSince1970 * 1000).rounded(.down))
            }
            let spec: ScheduleSpec
            if let cron {
                do { spec = try ScheduleSpec.parse(cron, zone: zone) } catch { throw CommandFailure(description: "--cron '\(cron)': \(error)") }
            } else if let every {
                spec = .every(intervalMs: try duration(every, "--every"), anchorMs: 0)
            } else if let fixedDelay {
                spec = .fixedDelay(intervalMs: try duration(fixedDelay, "--fixed-delay"), group: group!)
            } else if let fixedRate {
                spec = .fixedRate(intervalMs: try duration(fixedRate, "--fixed-rate"), initialDelayMs: try duration(initialDelay, "--initial-delay"), anchorMs: now)
            } else {
                spec = .once(atMs: try time(at!, "--at"))
            }
            let headers = header.map { h in
                let parts = h.split(separator: "=", maxSplits: 1)
                return ScheduleHeader(name: String(parts[0]), value: Array((parts.count > 1 ? String(parts[1]) : "").utf8))
            }
            let options = ScheduleOptions(
                misfire: MisfirePolicy(rawValue: misfire)!, catchUpWindowMilliseconds: try duration(catchUp, "--catch-up"),
                startAt: try start.map { try time($0, "--start") }, endAt: try end.map { try time($0, "--end") },
                jitterMilliseconds: try duration(jitter, "--jitter"), paused: paused, overlap: OverlapPolicy(rawValue: overlap)!,
                group: OverlapPolicy(rawValue: overlap)! == .allow ? nil : group)
            let schedule = Schedule(
                name: name, spec: spec, target: ScheduleTarget(topic: topic, key: key.map { Array($0.utf8) }, headers: headers, body: Array(body.utf8)),
                options: options)
            let write: ScheduleWrite = update ? .update : upsert ? .createOrUpdate : .create
            let info = try await withBroker(broker, name: "chime-schedules") { try await $0.schedule(schedule, write) }
            print(json ? scheduleJSON(info) : scheduleLine(info))
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "One schedule and its next occurrences.")
        @OptionGroup var broker: BrokerAddress
        @Argument(help: "The schedule's name.") var name: String
        @Option(name: .long, help: "Occurrences to list after the planned one (0 to 1,000).") var upcoming = 5
        @Flag(name: .long, help: "Print it as JSON.") var json = false

        func validate() throws {
            guard (0...1_000).contains(upcoming) else { throw ValidationError("--upcoming must be 0 to 1000, not \(upcoming)") }
        }

        func run() async throws {
            let info = try await withBroker(broker, name: "chime-schedules") { try await $0.scheduleInfo(name, upcoming: upcoming) }
            if json {
                print(scheduleJSON(info))
                return
            }
            print(scheduleLine(info))
            for at in info.upcoming { print("  then \(isoTime(at))") }
        }
    }

    struct Pause: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Pause a schedule: its planned occurrence is cancelled, nothing fires.")
        @OptionGroup var broker: BrokerAddress
        @Argument(help: "The schedule's name.") var name: String
        func run() async throws {
            try await withBroker(broker, name: "chime-schedules") { try await $0.controlSchedule(name, .pause) }
            print("\(name): paused")
        }
    }

    struct Resume: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Resume a paused schedule from its next occurrence after now (paused ones are not caught up).")
        @OptionGroup var broker: BrokerAddress
        @Argument(help: "The schedule's name.") var name: String
        func run() async throws {
            let info = try await withBroker(broker, name: "chime-schedules") { c in
                try await c.controlSchedule(name, .resume)
                return try await c.scheduleInfo(name, upcoming: 0)
            }
            print(scheduleLine(info))
        }
    }

    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete a schedule; its planned occurrence does not fire.")
        @OptionGroup var broker: BrokerAddress
        @Argument(help: "The schedule's name.") var name: String
        func run() async throws {
            try await withBroker(broker, name: "chime-schedules") { try await $0.controlSchedule(name, .delete) }
            print("\(name): deleted")
        }
    }

    struct Trigger: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Publish one occurrence now, beside the planned ones.")
        @OptionGroup var broker: BrokerAddress
        @Argument(help: "The schedule's name.") var name: String
        func run() async throws {
            let p = try await withBroker(broker, name: "chime-schedules") { try await $0.triggerSchedule(name) }
            print(p.duplicate ? "\(name): already triggered in this millisecond" : "\(name): triggered, message \(p.id ?? "?")")
        }
    }

    struct Backfill: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Publish now the occurrences of a past range (at most 10,000), each once within the topic's dedup window.",
            discussion: """
                Example:
                  chime schedules backfill nightly --from 2026-11-01T00:00:00Z --to 2026-11-30T23:59:59Z
                """)
        @OptionGroup var broker: BrokerAddress
        @Argument(help: "The schedule's name.") var name: String
        @Option(name: .long, help: "The range's start (ISO 8601).") var from: String
        @Option(name: .long, help: "The range's end (ISO 8601, not in the future).") var to: String
        func run() async throws {
            guard let f = parseISOTime(from) else { throw ValidationError("--from '\(from)' is not an ISO 8601 time") }
            guard let t = parseISOTime(to) else { throw ValidationError("--to '\(to)' is not an ISO 8601 time") }
            let published = try await withBroker(broker, name: "chime-schedules") {
                try await $0.backfillSchedule(name, from: Int64(f.timeIntervalSince1970 * 1000), to: Int64(t.timeIntervalSince1970 * 1000))
            }
            for p in published {
                print("\(p.at.map(isoTime) ?? "?")  \(p.duplicate ? "already published" : "published \(p.id ?? "?")")")
            }
            print("\(name): \(published.filter { !$0.duplicate }.count) published, \(published.filter(\.duplicate).count) already there")
        }
    }

    struct Preview: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print the next occurrences of a cron expression or @every interval, in a time zone.",
            discussion: """
                Cron: 5 fields (minute hour day-of-month month day-of-week) or 6 with seconds \
                first; `*`, numbers, ranges `1-5`, lists `1,15`, steps `*/15` and `8-18/2`; \
                month and weekday names (JAN, MON); @yearly @monthly @weekly @daily @hourly; \
                `@every 30s` (also ms, m, h, d: `@every 1h30m`). When both day fields are \
                restricted, a day matching either fires (as in Vixie cron).

                Daylight saving time: a local time that does not exist (clocks set forward) \
                fires at the first instant after the gap, once; a local time that happens twice \
                (clocks set back) fires once, the first time.

                Examples:
                  chime schedules preview '0 */5 * * * *' --tz Asia/Shanghai
                  chime schedules preview '30 2 * * *' --tz America/New_York --from 2026-03-07T00:00:00Z --count 3
                  chime schedules preview '@every 90s' --count 5
                """)
        @Argument(help: "The spec: a cron expression, a macro, or @every <duration>.") var spec: String
        @Option(name: .customLong("tz"), help: "IANA time zone of the cron expression.") var zone = "UTC"
        @Option(name: .long, help: "Occurrences to print (1 to 10,000).") var count = 10
        @Option(name: .long, help: "Start after this time (ISO 8601; default: now).") var from: String?
        @Flag(name: .long, help: "One JSON object per occurrence and line.") var json = false

        func validate() throws {
            guard (1...Timetable.maximumListedOccurrences).contains(count) else {
                throw ValidationError("--count must be 1 to \(Timetable.maximumListedOccurrences), not \(count)")
            }
        }

        func run() throws {
            let start: Int64
            if let from {
                guard let date = parseISOTime(from) else { throw ValidationError("--from '\(from)' is not an ISO 8601 time (like 2026-12-01T10:00:00Z)") }
                start = Int64((date.timeIntervalSince1970 * 1000).rounded(.down))
            } else {
                start = Int64(Date().timeIntervalSince1970 * 1000)
            }
            let occurrences: [Int64]
            do {
                occurrences = try ScheduleSpec.parse(spec, zone: zone).nextOccurrences(after: start, count: count)
            } catch {
                throw CommandFailure(description: "schedule '\(spec)': \(error)")
            }
            if occurrences.isEmpty { print(json ? "" : "no occurrence within the next 8 years") }
            let local = DateFormatter()
            local.locale = Locale(identifier: "en_US_POSIX")
            local.timeZone = TimeZone(identifier: zone) ?? TimeZone(identifier: "UTC")!
            local.dateFormat = "yyyy-MM-dd HH:mm:ss.SSS ZZZZZ (zzz)"
            for ms in occurrences {
                let date = Date(timeIntervalSince1970: Double(ms) / 1000)
                if json {
                    print("{\"at\":\(ms),\"utc\":\"\(isoTime(ms))\",\"local\":\"\(local.string(from: date))\"}")
                } else {
                    print("\(isoTime(ms))  \(local.string(from: date))")
                }
            }
        }
    }
}

/// `nightly: cron '0 3 * * *' Europe/Berlin → reports, next 2027-01-16T02:00:00.000Z`.
func scheduleLine(_ info: ScheduleInfo) -> String {
    let s = info.schedule
    var zone = zoneText(s.spec)
    if !zone.isEmpty { zone = " " + zone }
    let state = info.idle.map { ", \($0)" } ?? ""
    let next = info.nextOccurrence.map { o in
        ", next \(isoTime(o))" + (info.nextFireAt.map { $0 != o ? " (fires \(isoTime($0)))" : "" } ?? "")
    } ?? ""
    return "\(s.name): \(specText(s.spec))\(zone) → \(s.target.topic)\(next)\(state), misfire \(s.options.misfire.rawValue)"
}

func specText(_ spec: ScheduleSpec) -> String {
    switch spec {
    case .cron(let expression, _): "cron '\(expression)'"
    case .every(let interval, _): "every \(durationText(interval))"
    case .fixedRate(let interval, _, _): "fixed rate \(durationText(interval))"
    case .fixedDelay(let interval, let group): "fixed delay \(durationText(interval)) after acks in \(group)"
    case .once(let at): "once at \(isoTime(at))"
    }
}

func zoneText(_ spec: ScheduleSpec) -> String {
    if case .cron(_, let zone) = spec { return zone }
    return ""
}

private func durationText(_ ms: Int64) -> String {
    for (unit, factor) in [("d", Int64(86_400_000)), ("h", 3_600_000), ("m", 60_000), ("s", 1_000)] where ms % factor == 0 && ms >= factor {
        return "\(ms / factor)\(unit)"
    }
    return "\(ms)ms"
}

func scheduleJSON(_ info: ScheduleInfo) -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    return String(decoding: (try? encoder.encode(info)) ?? Data(), as: UTF8.self)
}

/// An ISO 8601 time with or without fractional seconds.
private func parseISOTime(_ text: String) -> Date? {
    let f = ISO8601DateFormatter()
    if let d = f.date(from: text) { return d }
    f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
    return f.date(from: text)
}
