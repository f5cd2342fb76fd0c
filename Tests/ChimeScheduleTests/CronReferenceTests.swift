import Foundation
import Testing

@testable import ChimeSchedule

/// `CronSchedule.next(after:)` against the brute-force `ReferenceTimeline`, for seeded random
/// expressions: around every DST transition of 2024–2030 in zones that shift by an hour and by
/// half an hour, over stretches of zones without DST, and over a whole year for a few.
@Suite struct CronReferenceTests {
    static let dstZones = ["America/New_York", "Europe/Berlin", "Australia/Lord_Howe"]
    static let fixedZones = ["Asia/Kolkata", "UTC"]
    static let windowSeconds: Int64 = 2 * 86_400

    @Test(arguments: dstZones)
    func agreesWithTheReferenceAroundEveryTransitionFrom2024To2030(zone: String) throws {
        let seed = testSeed(default: 0x00C0_FFEE) ^ UInt64(zone.utf8.count)
        var rng = SeededGenerator(seed: seed)
        let transitions = Self.transitions(of: zone, from: utcMs("2024-01-01T00:00:00Z") / 1_000, to: utcMs("2031-01-01T00:00:00Z") / 1_000)
        #expect(transitions.count == 14, "two a year")
        let rules = try TimeZoneRules(identifier: zone)
        for transition in transitions {
            let timeline = ReferenceTimeline(zone: zone, from: transition - Self.windowSeconds, to: transition + Self.windowSeconds)
            for _ in 0..<10 {
                let expression = RandomCronExpression.make(using: &rng)
                try Self.check(expression, in: rules, against: timeline, around: transition * 1_000, rng: &rng, seed: seed)
            }
        }
    }

    @Test(arguments: fixedZones)
    func agreesWithTheReferenceInZonesWithoutTransitions(zone: String) throws {
        let seed = testSeed(default: 0x0000_5EED) ^ UInt64(zone.utf8.count)
        var rng = SeededGenerator(seed: seed)
        let rules = try TimeZoneRules(identifier: zone)
        let first = utcMs("2024-01-01T00:00:00Z") / 1_000
        for _ in 0..<8 {
            let start = first + Int64.random(in: 0..<(7 * 365), using: &rng) * 86_400
            let timeline = ReferenceTimeline(zone: zone, from: start, to: start + 2 * Self.windowSeconds)
            for _ in 0..<10 {
                let expression = RandomCronExpression.make(using: &rng)
                try Self.check(expression, in: rules, against: timeline, around: (start + Self.windowSeconds) * 1_000, rng: &rng, seed: seed)
            }
        }
    }

    @Test(arguments: dstZones + fixedZones)
    func agreesWithTheReferenceOverTheWholeOf2026(zone: String) throws {
        let seed = testSeed(default: 0x2026) ^ UInt64(zone.utf8.count)
        var rng = SeededGenerator(seed: seed)
        let rules = try TimeZoneRules(identifier: zone)
        let timeline = ReferenceTimeline(zone: zone, from: utcMs("2026-01-01T00:00:00Z") / 1_000, to: utcMs("2027-01-01T00:00:00Z") / 1_000)
        // The known ones are chained through the whole year; dense random ones for their first
        // `longestChain` occurrences, then probed all year.
        let known = ["30 2 * * *", "*/20 1-3 * * SUN", "0 0 1,15 * FRI"].map(Self.knownExpression)
        for expression in known + (0..<2).map({ _ in RandomCronExpression.make(using: &rng, allowSeconds: false) }) {
            try Self.check(expression, in: rules, against: timeline, around: 0, rng: &rng, seed: seed)
        }
    }

    // MARK: Helpers

    /// A chain of `next(after:)` compared with the reference: the whole timeline, or for dense
    /// expressions (every second for four days is 345,600 occurrences) this many around `center`.
    static let longestChain = 1_500

    /// Compares the chain of `next(after:)` with the reference's firings, then probes
    /// `next(after:)` from random instants (mid-second, in repeated and skipped stretches) and
    /// from around each transition.
    static func check(
        _ expression: RandomCronExpression, in zone: TimeZoneRules, against timeline: ReferenceTimeline,
        around center: Int64, rng: inout SeededGenerator, seed: UInt64
    ) throws {
        let parsed = try CronExpression(parsing: expression.text)
        let schedule = CronSchedule(expression: parsed, zone: zone)
        let expected = timeline.firings(of: expression)
        let start = timeline.minutes.first!.instant * 1_000
        let end = (timeline.minutes.last!.instant + 60) * 1_000
        let context = "seed \(seed), zone \(timeline.zoneIdentifier), expression '\(expression.text)'"

        let middle = expected.partitionPoint { $0 >= center }
        let first = expected.count <= longestChain ? 0 : max(0, middle - longestChain / 2)
        let last = min(expected.count, first + longestChain)  // exclusive
        var cursor = first > 0 ? expected[first - 1] : start - 1
        let stop = last < expected.count ? expected[last] : end
        var actual: [Int64] = []
        while let next = schedule.next(after: cursor), next < stop, actual.count <= last - first {
            actual.append(next)
            cursor = next
        }
        if actual[...] != expected[first..<last] {
            let index = zip(actual, expected[first..<last]).prefix { $0 == $1 }.count
            let want = first + index < last ? iso(expected[first + index]) : "nothing more"
            let got = index < actual.count ? iso(actual[index]) : "nothing more"
            Issue.record("\(context): occurrence \(first + index) after \(iso(start - 1)): expected \(want), got \(got)")
            return
        }

        var probes = (0..<40).map { _ in Int64.random(in: (start - 1)..<end, using: &rng) }
        for boundary in timeline.boundaries {
            probes += [-1_001, -1, 0, 1, 999, 1_000].map { boundary * 1_000 + $0 }
        }
        for probe in probes {
            let wantIndex = expected.partitionPoint { $0 > probe }
            guard wantIndex < expected.count else { continue }
            let want = expected[wantIndex]
            let got = schedule.next(after: probe)
            #expect(got == want, "\(context): after \(iso(probe)) expected \(iso(want)), got \(iso(got))")
        }
    }

    /// A fixed expression with the sets it stands for, for the whole-year walks.
    static func knownExpression(_ text: String) -> RandomCronExpression {
        switch text {
        case "30 2 * * *":
            return RandomCronExpression(
                text: text, hasSeconds: false, seconds: [0], minutes: [30], hours: [2], daysOfMonth: Set(1...31),
                months: Set(1...12), daysOfWeek: Set(0...6), dayOfMonthStartsWithStar: true, dayOfWeekStartsWithStar: true)
        case "*/20 1-3 * * SUN":
            return RandomCronExpression(
                text: text, hasSeconds: false, seconds: [0], minutes: [0, 20, 40], hours: [1, 2, 3], daysOfMonth: Set(1...31),
                months: Set(1...12), daysOfWeek: [0], dayOfMonthStartsWithStar: true, dayOfWeekStartsWithStar: false)
        case "0 0 1,15 * FRI":
            return RandomCronExpression(
                text: text, hasSeconds: false, seconds: [0], minutes: [0], hours: [0], daysOfMonth: [1, 15],
                months: Set(1...12), daysOfWeek: [5], dayOfMonthStartsWithStar: false, dayOfWeekStartsWithStar: false)
        default:
            preconditionFailure("no sets written for \(text)")
        }
    }

    /// The zone's offset changes in `start..<end` (UTC seconds), found by bisecting hourly
    /// samples of Foundation's offsets.
    static func transitions(of identifier: String, from start: Int64, to end: Int64) -> [Int64] {
        let zone = TimeZone(identifier: identifier)!
        func offset(_ instant: Int64) -> Int { zone.secondsFromGMT(for: Date(timeIntervalSince1970: TimeInterval(instant))) }
        var result: [Int64] = []
        for hour in stride(from: start, to: end, by: 3_600) where offset(hour) != offset(hour + 3_600) {
            var (low, high) = (hour, hour + 3_600)  // offset(low) differs from offset(high)
            while high - low > 1 {
                let middle = (low + high) / 2
                if offset(middle) == offset(low) { low = middle } else { high = middle }
            }
            result.append(high)
        }
        return result
    }
}

extension Array where Element == Int64 {
    /// The first index whose element satisfies `isAfter`, which holds for a suffix of the array.
    func partitionPoint(_ isAfter: (Int64) -> Bool) -> Int {
        var (low, high) = (0, count)
        while low < high {
            let middle = (low + high) / 2
            if isAfter(self[middle]) { high = middle } else { low = middle + 1 }
        }
        return low
    }
}
