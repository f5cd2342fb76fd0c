import ChimeTestSupport
import Foundation
import Testing

/// `chime schedules …` against a real `chime serve`: create (idempotent, conflicting),
/// list, show, pause, resume, trigger, backfill and delete, and errors as one line.
@Suite struct ScheduleLifecycleCommandTests {
    private static let chime = builtProduct("chime")

    private static func chime(_ arguments: [String], _ server: ServeProcess, withErrors: Bool = false) throws -> (status: Int32, output: String) {
        try run(chime, arguments + ["--port", "\(server.port)"], withErrors: withErrors)
    }

    private static func json(_ output: String) -> [String: Any] {
        (try? JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: Any]) ?? [:]
    }

    @Test func aScheduleIsCreatedListedFiredPausedTriggeredBackfilledAndDeleted() async throws {
        let dir = TemporaryDirectory("chime-schedules-cli")
        let server = try ServeProcess(data: dir.path, port: 0)
        defer { server.stop() }
        #expect(try Self.chime(["schedules"], server).output.hasPrefix("no schedules"))

        let nightly = ["schedules", "create", "nightly", "--cron", "0 3 * * *", "--tz", "Europe/Berlin", "--topic", "reports", "build the report"]
        let created = try Self.chime(nightly, server)
        #expect(created.status == 0)
        #expect(created.output.hasPrefix("nightly: cron '0 3 * * *' Europe/Berlin → reports, next "), "\(created.output)")
        #expect(try Self.chime(nightly, server).status == 0, "the same definition again changes nothing")
        let other = try Self.chime(["schedules", "create", "nightly", "--cron", "0 4 * * *", "--topic", "reports"], server, withErrors: true)
        #expect(other.status == 1 && other.output.contains("exists"), "\(other.output)")
        let updated = try Self.chime(["schedules", "create", "nightly", "--cron", "0 4 * * *", "--tz", "Europe/Berlin", "--topic", "reports", "--upsert"], server)
        #expect(updated.status == 0 && updated.output.contains("'0 4 * * *'"), "\(updated.output)")

        #expect(try Self.chime(["schedules", "create", "tick", "--every", "1s", "--topic", "ticks", "--misfire", "all"], server).status == 0)
        try await Task.sleep(for: .milliseconds(2_500))
        let tick = Self.json(try Self.chime(["schedules", "show", "tick", "--json"], server).output)
        #expect(tick["lastOccurrence"] is Int, "tick fired: \(tick)")
        let list = try Self.chime(["schedules"], server).output
        #expect(list.hasPrefix("NAME") && list.contains("nightly") && list.contains("tick") && list.contains("every 1s"), "\(list)")

        #expect(try Self.chime(["schedules", "pause", "tick"], server).output == "tick: paused\n")
        #expect(try Self.chime(["schedules", "show", "tick"], server).output.contains(", paused"))
        #expect(try Self.chime(["schedules", "resume", "tick"], server).output.contains(", next "))

        let triggered = try Self.chime(["schedules", "trigger", "nightly"], server)
        #expect(triggered.status == 0 && triggered.output.hasPrefix("nightly: triggered, message "), "\(triggered.output)")
        let range = ["schedules", "backfill", "nightly", "--from", "2026-11-01T00:00:00Z", "--to", "2026-11-03T23:59:59Z"]
        let backfilled = try Self.chime(range, server).output
        #expect(backfilled.hasSuffix("nightly: 3 published, 0 already there\n"), "\(backfilled)")
        #expect(backfilled.hasPrefix("2026-11-01T03:00:00.000Z"), "04:00 in Berlin is 03:00Z in November: \(backfilled)")
        #expect(try Self.chime(range, server).output.hasSuffix("nightly: 0 published, 3 already there\n"), "within the topic's dedup window")

        #expect(try Self.chime(["schedules", "delete", "tick"], server).output == "tick: deleted\n")
        let gone = try Self.chime(["schedules", "show", "tick"], server, withErrors: true)
        #expect(gone.status == 1 && gone.output.contains("no schedule is named tick"), "\(gone.output)")
    }

    @Test func badSpecsAndMissingOptionsAreOneLineErrors() throws {
        let dir = TemporaryDirectory("chime-schedules-cli-errors")
        let server = try ServeProcess(data: dir.path, port: 0)
        defer { server.stop() }
        let bad = try Self.chime(["schedules", "create", "x", "--cron", "0 61 * * *", "--topic", "t"], server, withErrors: true)
        #expect(bad.status == 1 && bad.output.contains("at position 2: hour 61 is out of range"), "\(bad.output)")
        let zone = try Self.chime(["schedules", "create", "x", "--cron", "@daily", "--tz", "Mars/Olympus", "--topic", "t"], server, withErrors: true)
        #expect(zone.status == 1 && zone.output.contains("Mars/Olympus"), "\(zone.output)")
        #expect(try Self.chime(["schedules", "create", "x", "--topic", "t"], server, withErrors: true).status == 64, "no spec")
        #expect(try Self.chime(["schedules", "create", "x", "--every", "1s", "--cron", "@daily", "--topic", "t"], server, withErrors: true).status == 64)
        #expect(try Self.chime(["schedules", "create", "x", "--every", "soon", "--topic", "t"], server, withErrors: true).status == 64)
        #expect(try Self.chime(["schedules", "create", "x", "--every", "1s", "--topic", "t", "--misfire", "sometimes"], server, withErrors: true).status == 64)
        #expect(try Self.chime(["schedules", "create", "x", "--every", "1s", "--topic", "t", "--overlap", "skip"], server, withErrors: true).status == 64, "no group")
        #expect(try Self.chime(["schedules", "create", "x", "--fixed-delay", "10s", "--topic", "t"], server, withErrors: true).status == 64, "no group")
        #expect(try Self.chime(["schedules"], server).output.hasPrefix("no schedules"), "nothing was made")
        let watched = try Self.chime(["schedules", "create", "drain", "--fixed-delay", "10s", "--group", "drainers", "--topic", "t"], server)
        #expect(watched.status == 0 && watched.output.hasPrefix("drain: fixed delay 10s after acks in drainers → t, next "), "\(watched.output)")
    }
}
