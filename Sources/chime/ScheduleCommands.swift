import ArgumentParser
import ChimeSchedule
import Foundation

// `chime schedules …`: so far the preview of a spec's occurrences, computed here exactly as
// the broker will (ChimeSchedule); the broker-side schedules follow (issue 17).

struct SchedulesCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "schedules",
        abstract: "Recurring schedules: preview when a spec fires.",
        subcommands: [Preview.self])

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

/// An ISO 8601 time with or without fractional seconds.
private func parseISOTime(_ text: String) -> Date? {
    let f = ISO8601DateFormatter()
    if let d = f.date(from: text) { return d }
    f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
    return f.date(from: text)
}
