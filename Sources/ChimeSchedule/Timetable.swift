/// A checked `ScheduleSpec`, ready to say when it fires. Made by `ScheduleSpec.timetable()`.
public struct Timetable: Sendable, Hashable {
    /// How occurrences are computed.
    enum Rule: Sendable, Hashable {
        case cron(CronSchedule)
        /// `anchorMs + k * intervalMs`; for every integer `k` when `firstMs` is nil, else only
        /// from `firstMs` (which is the anchor) on.
        case grid(anchorMs: Int64, intervalMs: Int64, firstMs: Int64?)
        case once(atMs: Int64)
        case afterAck(delayMs: Int64)
    }

    /// At most this many occurrences are listed at once.
    public static let maximumListedOccurrences = 10_000

    /// The spec this was made from.
    public let spec: ScheduleSpec
    let rule: Rule

    init(spec: ScheduleSpec, rule: Rule) {
        self.spec = spec
        self.rule = rule
    }

    /// False for fixed delay, whose occurrences are planned from acks, not from the clock.
    public var isTimeBased: Bool {
        if case .afterAck = rule { return false }
        return true
    }

    /// The first occurrence strictly after `ms`: nil when there is none (a past one-off, a cron
    /// expression that never matches within `ScheduleLimits.cronHorizonYears`, the end of
    /// year 9999), and always nil for fixed delay (see `next(afterAckAtMs:)`).
    public func next(after ms: Int64) -> Int64? {
        switch rule {
        case .cron(let schedule):
            return schedule.next(after: ms)
        case .grid(let anchorMs, let intervalMs, let firstMs):
            if let firstMs, ms < firstMs { return firstMs }
            // From just before the earliest instant on, `from - anchorMs` cannot overflow.
            let from = max(ms, ScheduleLimits.instantsMs.lowerBound - 1)
            guard from < ScheduleLimits.instantsMs.upperBound else { return nil }
            let steps = CivilDateTime.floorDivide(from - anchorMs, intervalMs) + 1
            let next = anchorMs + steps * intervalMs
            assert(next > from && next - intervalMs <= from, "the first grid point after from")
            return next <= ScheduleLimits.instantsMs.upperBound ? next : nil
        case .once(let atMs):
            return atMs > ms ? atMs : nil
        case .afterAck:
            return nil
        }
    }

    /// For fixed delay: the occurrence planned when the previous one's message is acked at
    /// `ackMs`. Nil for time-based specs, and past year 9999.
    public func next(afterAckAtMs ackMs: Int64) -> Int64? {
        guard case .afterAck(let delayMs) = rule, ackMs <= ScheduleLimits.instantsMs.upperBound - delayMs else { return nil }
        return ackMs + delayMs
    }

    /// Up to `count` (at most `maximumListedOccurrences`) occurrences strictly after `ms`, in
    /// order; fewer when the schedule ends or looks no further.
    public func nextOccurrences(after ms: Int64, count: Int) -> [Int64] {
        precondition((0...Self.maximumListedOccurrences).contains(count), "list 0 to \(Self.maximumListedOccurrences) occurrences")
        var occurrences: [Int64] = []
        occurrences.reserveCapacity(count)
        var cursor = ms
        while occurrences.count < count, let next = next(after: cursor) {
            assert(next > cursor, "occurrences strictly increase")
            occurrences.append(next)
            cursor = next
        }
        return occurrences
    }
}
