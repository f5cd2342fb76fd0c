import ChimeTestSupport
import Foundation
import Testing

/// `chime schedules preview`: the real binary prints the occurrences the broker will fire,
/// through daylight-saving changes, and refuses a bad spec with its position.
@Suite struct ScheduleCommandTests {
    private static let chime = builtProduct("chime")

    private static func utcTimes(_ output: String) -> [String] {
        output.split(separator: "\n").map { String($0.split(separator: " ")[0]) }
    }

    @Test func aTimeInTheSpringGapFiresAtTheGapsEndOnce() throws {
        let r = try run(Self.chime, ["schedules", "preview", "30 2 * * *", "--tz", "America/New_York", "--from", "2026-03-07T00:00:00Z", "--count", "3"])
        #expect(r.status == 0)
        // 02:30 EST, then 02:30 does not exist on 8 March (02:00 → 03:00 EDT): 03:00 EDT; then 02:30 EDT.
        #expect(Self.utcTimes(r.output) == ["2026-03-07T07:30:00.000Z", "2026-03-08T07:00:00.000Z", "2026-03-09T06:30:00.000Z"])
    }

    @Test func theRepeatedHourOfTheAutumnChangeFiresOnce() throws {
        let r = try run(Self.chime, ["schedules", "preview", "*/15 2 * * *", "--tz", "Europe/Berlin", "--from", "2026-10-24T23:59:00Z", "--count", "5", "--json"])
        #expect(r.status == 0)
        let times = r.output.split(separator: "\n").compactMap { line in
            (try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])?["utc"] as? String
        }
        // 25 October 2026, 03:00 CEST → 02:00 CET: 02:00–02:45 happen twice and fire once, in
        // CEST (UTC+2), not again in CET; then the next day's 02:00 CET (UTC+1).
        #expect(times == ["2026-10-25T00:00:00.000Z", "2026-10-25T00:15:00.000Z", "2026-10-25T00:30:00.000Z", "2026-10-25T00:45:00.000Z", "2026-10-26T01:00:00.000Z"])
    }

    @Test func aBadSpecOrZoneIsAOneLineErrorWithItsPlace() throws {
        let bad = try run(Self.chime, ["schedules", "preview", "0 61 * * *"], withErrors: true)
        #expect(bad.status == 1)
        #expect(bad.output == "chime: schedule '0 61 * * *': at position 2: hour 61 is out of range 0–23\n", "\(bad.output)")
        let zone = try run(Self.chime, ["schedules", "preview", "@daily", "--tz", "Mars/Olympus"], withErrors: true)
        #expect(zone.status == 1)
        #expect(zone.output.hasPrefix("chime: schedule '@daily': ") && zone.output.contains("Mars/Olympus"), "\(zone.output)")
        #expect(try run(Self.chime, ["schedules", "preview", "@hourly", "--count", "0"], withErrors: true).status == 64)
    }
}
