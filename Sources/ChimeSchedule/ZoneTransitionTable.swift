import Foundation
import Synchronization

/// A change of a zone's UTC offset.
struct ZoneTransition: Equatable, Sendable {
    /// The first instant (UTC seconds) of the new offset.
    var instant: Int64
    /// Seconds east of UTC before and from `instant`.
    var offsetBefore: Int
    var offsetAfter: Int

    /// Clocks jump forward: the local times `instant + offsetBefore ..< instant + offsetAfter`
    /// never happen.
    var opensGap: Bool { offsetAfter > offsetBefore }
}

/// The offsets in effect over a stretch of time: `offsetBefore` until the first transition,
/// then each transition's `offsetAfter` until the next.
struct OffsetTimeline: Sendable {
    var offsetBefore: Int
    var transitions: [ZoneTransition]

    /// A stretch of constant offset: `start..<end` in UTC seconds, unbounded at the timeline's ends.
    struct Stretch {
        var start: Int64
        var end: Int64
        var offset: Int

        func contains(_ instant: Int64) -> Bool { start <= instant && instant < end }
    }

    var stretches: [Stretch] {
        var result: [Stretch] = []
        result.reserveCapacity(transitions.count + 1)
        var start = Int64.min
        var offset = offsetBefore
        for transition in transitions {
            result.append(Stretch(start: start, end: transition.instant, offset: offset))
            start = transition.instant
            offset = transition.offsetAfter
        }
        result.append(Stretch(start: start, end: Int64.max, offset: offset))
        return result
    }

    func checkInvariants() {
        var offset = offsetBefore
        var previous = Int64.min
        for transition in transitions {
            assert(transition.instant > previous, "transitions are in time order")
            assert(transition.offsetBefore == offset && transition.offsetAfter != offset, "each one changes the offset")
            offset = transition.offsetAfter
            previous = transition.instant
        }
    }
}

/// A zone's offset transitions, read from Foundation once per UTC calendar year and kept.
///
/// Foundation's zone lookups are far slower than arithmetic; this makes a next-occurrence
/// computation cost a dictionary lookup per year it touches, never a Foundation call per
/// candidate. Years outside `1...9999` are answered without being kept, so that the cache stays
/// bounded whatever instants callers ask about.
final class ZoneTransitionTable: Sendable {
    /// One UTC calendar year: the offset in effect as it begins and the transitions within it.
    struct Year: Sendable {
        var offsetAtStart: Int
        var transitions: [ZoneTransition]
    }

    /// No real zone changes its offset this often; a bound keeps a broken zone from looping.
    static let maximumTransitionsPerYear = 64
    /// Years kept: the ones schedules can reach.
    static let cachedYears = 1...9_999

    let zone: TimeZone
    private let years = Mutex<[Int: Year]>([:])

    init(zone: TimeZone) {
        self.zone = zone
    }

    /// Seconds east of UTC at `instant` (UTC seconds).
    func offset(at instant: Int64) -> Int {
        let rules = year(containing: instant)
        var offset = rules.offsetAtStart
        for transition in rules.transitions where transition.instant <= instant {
            offset = transition.offsetAfter
        }
        return offset
    }

    /// The offsets from `start` through `end` (UTC seconds): the offset in effect at `start`,
    /// then the transitions after it up to and including `end`.
    func timeline(from start: Int64, through end: Int64) -> OffsetTimeline {
        precondition(start <= end)
        let firstYear = Self.year(of: start)
        let lastYear = Self.year(of: end)
        var timeline = OffsetTimeline(offsetBefore: offset(at: start), transitions: [])
        for yearNumber in firstYear...lastYear {
            for transition in year(yearNumber).transitions where transition.instant > start && transition.instant <= end {
                timeline.transitions.append(transition)
            }
        }
        timeline.checkInvariants()
        return timeline
    }

    private func year(containing instant: Int64) -> Year {
        year(Self.year(of: instant))
    }

    private func year(_ number: Int) -> Year {
        guard Self.cachedYears.contains(number) else { return readYear(number) }
        if let known = years.withLock({ $0[number] }) { return known }
        // Read outside the lock: two threads may both read a year; both get the same answer.
        let read = readYear(number)
        years.withLock { $0[number] = read }
        return read
    }

    /// Asks Foundation for one year's transitions.
    private func readYear(_ number: Int) -> Year {
        let start = CivilDateTime.days(year: number, month: 1, day: 1) * CivilDateTime.secondsPerDay
        let end = CivilDateTime.days(year: number + 1, month: 1, day: 1) * CivilDateTime.secondsPerDay
        let offsetAtStart = foundationOffset(at: start - 1)
        var transitions: [ZoneTransition] = []
        var offset = offsetAtStart
        var cursor = Date(timeIntervalSince1970: TimeInterval(start - 1))
        while transitions.count < Self.maximumTransitionsPerYear,
            let next = zone.nextDaylightSavingTimeTransition(after: cursor), next > cursor
        {
            let instant = Int64(next.timeIntervalSince1970.rounded(.down))
            guard instant < end else { break }
            let offsetAfter = foundationOffset(at: instant)
            // Foundation also reports changes of the abbreviation or DST flag alone: not ours.
            if offsetAfter != offset {
                transitions.append(ZoneTransition(instant: instant, offsetBefore: offset, offsetAfter: offsetAfter))
                offset = offsetAfter
            }
            cursor = next
        }
        let year = Year(offsetAtStart: offsetAtStart, transitions: transitions)
        OffsetTimeline(offsetBefore: offsetAtStart, transitions: transitions).checkInvariants()
        return year
    }

    private func foundationOffset(at instant: Int64) -> Int {
        zone.secondsFromGMT(for: Date(timeIntervalSince1970: TimeInterval(instant)))
    }

    /// The UTC calendar year an instant falls in.
    static func year(of instant: Int64) -> Int {
        CivilDateTime.date(fromDays: CivilDateTime.floorDivide(instant, CivilDateTime.secondsPerDay)).year
    }
}
