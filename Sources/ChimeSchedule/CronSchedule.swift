/// A cron expression in a time zone: computes when it fires next.
///
/// The search runs on wall-clock fields with `CivilDateTime` arithmetic, jumping to the next
/// matching month, day, hour, minute and second with bitset lookups, and only then maps the
/// wall-clock time it found to a UTC instant with `TimeZoneRules`. DST, as design.md §9 asks:
/// - a wall-clock time that does not exist (clocks set forward over it) fires at the first
///   instant after the gap; several such times (every 15 minutes through the gap) fire once;
/// - a wall-clock time that happens twice (clocks set back) fires once, at the earlier instant.
public struct CronSchedule: Sendable, Hashable {
    public let expression: CronExpression
    public let zone: TimeZoneRules

    /// `expression`'s wall-clock times, in `zone`.
    public init(expression: CronExpression, zone: TimeZoneRules) {
        self.expression = expression
        self.zone = zone
    }

    /// The first firing instant (ms) strictly after `ms`, at a whole second (a whole minute
    /// for 5-field expressions, in zones whose offsets are whole minutes); nil if there is none
    /// within `ScheduleLimits.cronHorizonYears` years, or before year 10000.
    public func next(after ms: Int64) -> Int64? {
        // The first whole second strictly after `ms`.
        let firstSecond = max(CivilDateTime.floorDivide(ms, 1_000) + 1, ScheduleLimits.earliestSeconds)
        guard firstSecond <= ScheduleLimits.latestSeconds else { return nil }
        var from = zone.earliestLocalTime(firingAtOrAfter: firstSecond)
        let lastYear = CivilDateTime(localSeconds: from).year + ScheduleLimits.cronHorizonYears
        while let local = firstMatch(atOrAfter: from, throughYear: lastYear) {
            let instant = zone.resolve(localSeconds: local).firingInstant
            // Firing instants do not decrease with local time and the search began at the
            // earliest local time firing at or after `firstSecond`: the first match is the answer.
            // (A zone with transitions closer together than their shifts could break that;
            // then look on rather than answer something at or before `ms`.)
            if instant >= firstSecond {
                guard instant <= ScheduleLimits.latestSeconds else { return nil }
                assert(instant * 1_000 > ms, "strictly after")
                return instant * 1_000
            }
            from = local + 1
        }
        return nil
    }

    /// The first wall-clock time (local seconds) at or after `local` that the expression
    /// matches, or nil if none before the end of `lastYear` (and of year 9999).
    func firstMatch(atOrAfter local: Int64, throughYear lastYear: Int) -> Int64? {
        var time = CivilDateTime(localSeconds: local)
        let lastYear = min(lastYear, 9_999)
        // Each pass either returns or moves `time` forward to the start of a later month, day,
        // hour or minute, so the loop ends within the horizon.
        while time.year <= lastYear {
            guard let month = Self.firstBit(of: expression.months, from: time.month) else {
                time = CivilDateTime(year: time.year + 1, month: 1, day: 1)
                continue
            }
            if month != time.month { time = CivilDateTime(year: time.year, month: month, day: 1) }
            guard let day = Self.firstBit(of: matchingDays(year: time.year, month: month), from: time.day) else {
                time = month == 12
                    ? CivilDateTime(year: time.year + 1, month: 1, day: 1)
                    : CivilDateTime(year: time.year, month: month + 1, day: 1)
                continue
            }
            if day != time.day { time = CivilDateTime(year: time.year, month: month, day: day) }
            guard let hour = Self.firstBit(of: expression.hours, from: time.hour) else {
                // Day 32 or 29 February in a common year is no match: the day lookup moves on.
                time = CivilDateTime(year: time.year, month: month, day: day + 1)
                continue
            }
            if hour != time.hour { time = CivilDateTime(year: time.year, month: month, day: day, hour: hour) }
            guard let minute = Self.firstBit(of: expression.minutes, from: time.minute) else {
                // Hour 24 is no match either: the hour lookup moves to the next day.
                time = CivilDateTime(year: time.year, month: month, day: day, hour: hour + 1)
                continue
            }
            if minute != time.minute { time.minute = minute; time.second = 0 }
            guard let second = Self.firstBit(of: expression.seconds, from: time.second) else {
                time = CivilDateTime(year: time.year, month: month, day: day, hour: hour, minute: minute + 1)
                continue
            }
            time.second = second
            return time.localSeconds
        }
        return nil
    }

    /// The days of a month the expression fires on, as bit `d` for day `d`.
    private func matchingDays(year: Int, month: Int) -> UInt64 {
        let firstWeekday = CivilDateTime.weekday(fromDays: CivilDateTime.days(year: year, month: month, day: 1))
        return expression.matchingDays(monthLength: CivilDateTime.daysInMonth(year: year, month: month), firstWeekday: firstWeekday)
    }

    /// The lowest set bit at `from` or above; nil if none (also when `from` is past bit 63).
    static func firstBit(of bits: UInt64, from: Int) -> Int? {
        assert(from >= 0)
        guard from < 64 else { return nil }
        let remaining = bits >> UInt64(from)
        return remaining == 0 ? nil : from + remaining.trailingZeroBitCount
    }
}
