import Foundation

/// The brute-force reference the cron search is checked against: every UTC minute of a
/// stretch of time, with its wall-clock fields as Foundation's `Calendar` gives them (not the
/// module's own date arithmetic), and the two DST rules of design.md §9 applied explicitly,
/// instant by instant:
/// - a wall-clock time that happens for the second time (clocks were set back) does not fire;
/// - at the first instant after clocks jumped forward, every wall-clock time they jumped over
///   fires (once, at that instant).
///
/// It walks whole minutes: the zones tested have offsets and transitions on whole minutes
/// (checked as the timeline is built), so within a minute the wall clock runs with UTC and the
/// seconds of a 6-field expression follow from the minute.
struct ReferenceTimeline {
    struct WallMinute: Equatable {
        var month: Int
        var day: Int
        /// 0 Sunday … 6 Saturday.
        var weekday: Int
        var hour: Int
        var minute: Int
    }

    struct Minute {
        /// UTC seconds of the minute's start.
        var instant: Int64
        var wall: WallMinute
        /// This wall-clock minute already happened earlier (clocks were set back).
        var isRepeat: Bool
    }

    let zoneIdentifier: String
    let minutes: [Minute]
    /// By index into `minutes`: the wall-clock minutes clocks jumped over just before it.
    let skipped: [Int: [WallMinute]]
    /// UTC seconds where the rules change: a gap's end, a repeat's start and end.
    let boundaries: [Int64]

    /// Every minute of `start..<end` (UTC seconds, whole minutes) in the zone.
    init(zone identifier: String, from start: Int64, to end: Int64) {
        precondition(start % 60 == 0 && end % 60 == 0 && start < end)
        let zone = TimeZone(identifier: identifier)!
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = zone
        // Wall-clock times that never happened have no instant in the zone: read their fields
        // as if they were UTC.
        var utcCalendar = Calendar(identifier: .gregorian)
        utcCalendar.timeZone = TimeZone(identifier: "UTC")!

        func offset(_ instant: Int64) -> Int64 { Int64(zone.secondsFromGMT(for: Date(timeIntervalSince1970: TimeInterval(instant)))) }
        func wall(_ instant: Int64, _ calendar: Calendar) -> WallMinute {
            let c = calendar.dateComponents([.month, .day, .weekday, .hour, .minute, .second], from: Date(timeIntervalSince1970: TimeInterval(instant)))
            precondition(c.second == 0, "\(identifier): the wall clock is not on a whole minute at \(instant)")
            return WallMinute(month: c.month!, day: c.day!, weekday: c.weekday! - 1, hour: c.hour!, minute: c.minute!)
        }
        // Every offset the zone uses around the stretch, sampled hourly: the candidates for
        // "this wall-clock time already happened under another offset".
        let offsets = Set(stride(from: start - 86_400, through: end + 86_400, by: 3_600).map(offset))

        var minutes: [Minute] = []
        var skipped: [Int: [WallMinute]] = [:]
        var boundaries: [Int64] = []
        minutes.reserveCapacity(Int((end - start) / 60))
        for instant in stride(from: start, to: end, by: 60) {
            let current = offset(instant)
            precondition(current % 60 == 0 && offset(instant + 59) == current, "\(identifier): offsets change on whole minutes only")
            let isRepeat = offsets.contains { other in
                other > current && offset(instant - (other - current)) == other
            }
            let before = offset(instant - 1)
            if before < current {
                skipped[minutes.count] = stride(from: instant + before, to: instant + current, by: 60).map { wall($0, utcCalendar) }
                boundaries.append(instant)
            }
            if let previous = minutes.last, previous.isRepeat != isRepeat { boundaries.append(instant) }
            minutes.append(Minute(instant: instant, wall: wall(instant, calendar), isRepeat: isRepeat))
        }
        self.zoneIdentifier = identifier
        self.minutes = minutes
        self.skipped = skipped
        self.boundaries = boundaries
    }

    /// The instants (UTC ms) at which `expression` fires within the timeline, by the two rules.
    func firings(of expression: RandomCronExpression) -> [Int64] {
        let matcher = Matcher(expression)
        var result: [Int64] = []
        let seconds = expression.seconds.sorted()
        for (index, minute) in minutes.enumerated() {
            let skippedTimeMatches = skipped[index]?.contains(where: matcher.matches) ?? false
            let ownTimeMatches = !minute.isRepeat && matcher.matches(minute.wall)
            if skippedTimeMatches && !(ownTimeMatches && seconds.first == 0) {
                result.append(minute.instant * 1_000)
            }
            if ownTimeMatches {
                result.append(contentsOf: seconds.map { (minute.instant + Int64($0)) * 1_000 })
            }
        }
        return result
    }

    /// `RandomCronExpression.matchesMinute` with the sets turned into bit masks once, because
    /// the timeline asks about every minute of a year.
    struct Matcher {
        let minutes: UInt64
        let hours: UInt64
        let daysOfMonth: UInt64
        let months: UInt64
        let daysOfWeek: UInt64
        let eitherDay: Bool

        init(_ expression: RandomCronExpression) {
            func mask(_ values: Set<Int>) -> UInt64 { values.reduce(0) { $0 | 1 << UInt64($1) } }
            minutes = mask(expression.minutes)
            hours = mask(expression.hours)
            daysOfMonth = mask(expression.daysOfMonth)
            months = mask(expression.months)
            daysOfWeek = mask(expression.daysOfWeek)
            eitherDay = !expression.dayOfMonthStartsWithStar && !expression.dayOfWeekStartsWithStar
        }

        func matches(_ wall: WallMinute) -> Bool {
            func has(_ mask: UInt64, _ value: Int) -> Bool { mask & (1 << UInt64(value)) != 0 }
            guard has(months, wall.month), has(hours, wall.hour), has(minutes, wall.minute) else { return false }
            let dayOfMonth = has(daysOfMonth, wall.day)
            let dayOfWeek = has(daysOfWeek, wall.weekday)
            return eitherDay ? dayOfMonth || dayOfWeek : dayOfMonth && dayOfWeek
        }
    }
}
