/// When a schedule fires (design.md §9). A value as stored and sent (`Codable` as a keyed case,
/// `{"every":{"intervalMs":30000,"anchorMs":0}}`); decoding does not check it: `timetable()` does,
/// and prepares it for computing occurrences. Every time is in ms since the Unix epoch, UTC.
public enum ScheduleSpec: Sendable, Hashable, Codable {
    /// A cron expression (5 or 6 fields, or a macro such as `@daily`) in an IANA time zone.
    case cron(expression: String, zone: String)
    /// At `anchorMs + k * intervalMs` for every integer `k`: the anchor sets the phase only.
    case every(intervalMs: Int64, anchorMs: Int64)
    /// At `anchorMs + initialDelayMs + k * intervalMs` for `k = 0, 1, 2, …`.
    case fixedRate(intervalMs: Int64, initialDelayMs: Int64, anchorMs: Int64)
    /// `intervalMs` after the previous occurrence's message is acked by `group`: not a function
    /// of time, so the broker plans each occurrence when the ack arrives (`Timetable.next(afterAckAtMs:)`).
    case fixedDelay(intervalMs: Int64, group: String)
    /// Once, at `atMs`.
    case once(atMs: Int64)

    /// Reads a spec written as text: `@every <duration>` (`@every 30s`, `@every 1h30m`, `@every
    /// 500ms`) becomes `.every` anchored at `anchorMs`; anything else must be a cron expression
    /// or macro, kept as text with `zone`. Both are checked, so the result's `timetable()` succeeds.
    public static func parse(_ text: String, zone: String = "UTC", anchorMs: Int64 = 0) throws(ScheduleSpecError) -> ScheduleSpec {
        let scalars = Array(text.unicodeScalars.prefix(CronExpression.maximumLength + 1))
        guard scalars.count <= CronExpression.maximumLength else {
            throw ScheduleSpecError(
                .tooLong, "a schedule is at most \(CronExpression.maximumLength) characters", offset: CronExpression.maximumLength)
        }
        let spec: ScheduleSpec
        if let durationStart = everyDurationStart(in: scalars) {
            var durationEnd = scalars.count
            while durationEnd > durationStart && isBlank(scalars[durationEnd - 1]) { durationEnd -= 1 }
            let duration = String(String.UnicodeScalarView(scalars[durationStart..<durationEnd]))
            do {
                spec = .every(intervalMs: try ScheduleInterval(parsing: duration).milliseconds, anchorMs: anchorMs)
            } catch {
                throw ScheduleSpecError(error, shiftedBy: durationStart)
            }
        } else {
            spec = .cron(expression: text, zone: zone)
        }
        _ = try spec.timetable()
        return spec
    }

    /// Checks the spec and returns what computes its occurrences.
    public func timetable() throws(ScheduleSpecError) -> Timetable {
        switch self {
        case .cron(let text, let zoneIdentifier):
            let expression: CronExpression
            let zone: TimeZoneRules
            do { expression = try CronExpression(parsing: text) } catch { throw ScheduleSpecError(error) }
            do { zone = try TimeZoneRules(identifier: zoneIdentifier) } catch { throw ScheduleSpecError(error) }
            return Timetable(spec: self, rule: .cron(CronSchedule(expression: expression, zone: zone)))
        case .every(let intervalMs, let anchorMs):
            try Self.check(intervalMs: intervalMs)
            try Self.check(instantMs: anchorMs, "the anchor")
            return Timetable(spec: self, rule: .grid(anchorMs: anchorMs, intervalMs: intervalMs, firstMs: nil))
        case .fixedRate(let intervalMs, let initialDelayMs, let anchorMs):
            try Self.check(intervalMs: intervalMs)
            try Self.check(instantMs: anchorMs, "the anchor")
            guard (0...ScheduleLimits.maximumIntervalMs).contains(initialDelayMs) else {
                throw ScheduleSpecError(.delayOutOfRange, "the initial delay \(initialDelayMs) ms is not within 0 ms to 100 years")
            }
            let firstMs = anchorMs + initialDelayMs
            try Self.check(instantMs: firstMs, "the first occurrence")
            return Timetable(spec: self, rule: .grid(anchorMs: firstMs, intervalMs: intervalMs, firstMs: firstMs))
        case .fixedDelay(let intervalMs, let group):
            try Self.check(intervalMs: intervalMs)
            guard !group.isEmpty else { throw ScheduleSpecError(.missingGroup, "a fixed-delay schedule names the group whose acks plan it") }
            return Timetable(spec: self, rule: .afterAck(delayMs: intervalMs))
        case .once(let atMs):
            try Self.check(instantMs: atMs, "the instant")
            return Timetable(spec: self, rule: .once(atMs: atMs))
        }
    }

    /// The first occurrence strictly after `ms` (nil if none, or for `.fixedDelay`). Checks the
    /// spec each call: keep a `timetable()` to compute many.
    public func next(after ms: Int64) throws(ScheduleSpecError) -> Int64? {
        try timetable().next(after: ms)
    }

    /// Up to `count` occurrences strictly after `ms`, in order ("show the next N").
    public func nextOccurrences(after ms: Int64, count: Int) throws(ScheduleSpecError) -> [Int64] {
        try timetable().nextOccurrences(after: ms, count: count)
    }

    /// Where the duration of `@every <duration>` starts, if that is what the text is.
    private static func everyDurationStart(in scalars: [Unicode.Scalar]) -> Int? {
        var position = 0
        while position < scalars.count && isBlank(scalars[position]) { position += 1 }
        let keyword = "@every"
        let keywordEnd = position + keyword.unicodeScalars.count
        guard keywordEnd <= scalars.count,
            String(String.UnicodeScalarView(scalars[position..<keywordEnd])).lowercased() == keyword,
            keywordEnd == scalars.count || isBlank(scalars[keywordEnd])
        else { return nil }
        position = keywordEnd
        while position < scalars.count && isBlank(scalars[position]) { position += 1 }
        return position
    }

    private static func isBlank(_ scalar: Unicode.Scalar) -> Bool { scalar == " " || scalar == "\t" || scalar == "\n" || scalar == "\r" }

    private static func check(intervalMs: Int64) throws(ScheduleSpecError) {
        guard (1...ScheduleLimits.maximumIntervalMs).contains(intervalMs) else {
            throw ScheduleSpecError(.intervalOutOfRange, "the interval \(intervalMs) ms is not within 1 ms to 100 years")
        }
    }

    private static func check(instantMs: Int64, _ what: String) throws(ScheduleSpecError) {
        guard ScheduleLimits.instantsMs.contains(instantMs) else {
            throw ScheduleSpecError(.instantOutOfRange, "\(what) \(instantMs) ms is outside years 1–9999")
        }
    }
}
