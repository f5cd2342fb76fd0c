import ChimeSchedule

/// Which occurrence of a schedule comes next, and what the misfire policy made of the
/// ones that were missed: a pure function of the schedule, the last occurrence and now.
struct SchedulePlanner {
    /// Missed occurrences counted one by one up to this many; past it the planner jumps
    /// (a per-second schedule down for a month is 2.6 M occurrences).
    static let countLimit = 10_000

    enum Outcome: Equatable {
        /// Plan `occurrence` (nominal) to fire at `fireAt`.
        case plan(occurrence: Int64, fireAt: Int64)
        /// No occurrence is left (past the end, a one-off that fired, a spec that never matches).
        case ended
    }

    struct Decision: Equatable {
        var outcome: Outcome
        /// Missed occurrences skipped by the policy (at least this many when `countCapped`).
        var skipped = 0
        var countCapped = false
        /// Whether the planned occurrence is itself a missed one fired late by the policy.
        var catchingUp = false
    }

    let name: String
    let options: ScheduleOptions
    let timetable: Timetable

    init(_ schedule: Schedule) throws(ScheduleSpecError) {
        self.init(schedule, timetable: try schedule.spec.timetable())
    }

    /// With the timetable of the schedule's spec, made already (`SchedulePlannerCache`).
    init(_ schedule: Schedule, timetable: Timetable) {
        name = schedule.name
        options = schedule.options
        self.timetable = timetable
    }

    /// The occurrence after `last` (nil: none yet, so the first one after `now`), with the
    /// misfire policy applied when it is more than the threshold late.
    func next(after last: Int64?, now: Int64) -> Decision {
        guard timetable.isTimeBased else {
            // Fixed delay: `last` is when the previous occurrence was settled (nil: the
            // first, counted from now).
            guard let occurrence = timetable.next(afterAckAtMs: last ?? now) else { return Decision(outcome: .ended) }
            return Decision(outcome: .plan(occurrence: occurrence, fireAt: occurrence))
        }
        var from = last ?? now
        if let start = options.startAt, start - 1 > from { from = start - 1 }
        guard var candidate = timetable.next(after: from) else { return Decision(outcome: .ended) }
        let lateLimit = now - Schedule.misfireThresholdMilliseconds
        var decision = Decision(outcome: .ended)
        if candidate < lateLimit {
            switch options.misfire {
            case .all:
                let earliest = now - options.catchUpWindowMilliseconds
                (candidate, decision.skipped, decision.countCapped) = skip(from: candidate, whileBefore: earliest)
                decision.catchingUp = candidate < lateLimit
            case .latest:
                // The last occurrence at or before now; the ones before it are skipped.
                var skipped = 0
                var capped = false
                while let following = timetable.next(after: candidate), following <= now {
                    if skipped == Self.countLimit {
                        capped = true
                        // Jump near now, then step to the last one at or before it.
                        guard let near = timetable.next(after: lateLimit - 1), near <= now else { break }
                        candidate = near
                        continue
                    }
                    candidate = following
                    skipped += 1
                }
                decision.skipped = skipped
                decision.countCapped = capped
                decision.catchingUp = candidate < lateLimit
            case .none:
                (candidate, decision.skipped, decision.countCapped) = skip(from: candidate, whileBefore: lateLimit)
            }
        }
        if candidate == .max { return Decision(outcome: .ended, skipped: decision.skipped, countCapped: decision.countCapped) }
        if let end = options.endAt, candidate > end { return Decision(outcome: .ended, skipped: decision.skipped, countCapped: decision.countCapped) }
        decision.outcome = .plan(occurrence: candidate, fireAt: fireTime(of: candidate))
        return decision
    }

    /// Steps over occurrences before `limit`; returns the first at or after it, how many were
    /// passed, and whether the count stopped at `countLimit` (the rest jumped over).
    private func skip(from first: Int64, whileBefore limit: Int64) -> (Int64, Int, Bool) {
        var candidate = first
        var skipped = 0
        while candidate < limit {
            if skipped == Self.countLimit {
                guard let jumped = timetable.next(after: limit - 1) else { return (Int64.max, skipped, true) }
                return (jumped, skipped, true)
            }
            guard let following = timetable.next(after: candidate) else { return (Int64.max, skipped + 1, false) }
            candidate = following
            skipped += 1
        }
        return (candidate, skipped, false)
    }

    /// When an occurrence fires: with jitter, deterministic per schedule and occurrence and
    /// before the following occurrence.
    func fireTime(of occurrence: Int64) -> Int64 {
        let jitter = options.jitterMilliseconds
        guard jitter > 0 else { return occurrence }
        return jittered(occurrence: occurrence, next: timetable.next(after: occurrence), maxJitterMs: jitter, seed: name)
    }
}
