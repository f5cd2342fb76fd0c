import Foundation
import Synchronization

/// The identifier given is not a time zone Foundation knows.
public struct UnknownTimeZone: Error, Equatable, CustomStringConvertible, Sendable {
    public let identifier: String

    public init(identifier: String) {
        self.identifier = identifier
    }

    public var description: String { "unknown time zone '\(identifier)' (expected an IANA name such as Europe/Berlin)" }
}

/// What a wall-clock time in a zone corresponds to.
public enum LocalTimeResolution: Equatable, Sendable {
    /// It happens once, at this instant (ms).
    case unique(Int64)
    /// Clocks were set back: it happens twice.
    case repeated(earlierMs: Int64, laterMs: Int64)
    /// Clocks were set forward over it: it never happens. `nextValidMs` is the first instant
    /// after the gap (the transition itself).
    case skipped(nextValidMs: Int64)

    /// When a schedule asking for this wall-clock time fires: the only instant, the earlier of
    /// two, or the first instant after the gap.
    public var firingInstantMs: Int64 {
        switch self {
        case .unique(let instant): instant
        case .repeated(let earlier, _): earlier
        case .skipped(let next): next
        }
    }
}

/// `LocalTimeResolution` in whole seconds, for the schedule search.
enum LocalSecondsResolution: Equatable, Sendable {
    case unique(Int64)
    case repeated(earlier: Int64, later: Int64)
    case skipped(next: Int64)

    var firingInstant: Int64 {
        switch self {
        case .unique(let instant): instant
        case .repeated(let earlier, _): earlier
        case .skipped(let next): next
        }
    }
}

/// A time zone's UTC offsets over time, with the conversions between wall-clock ("local")
/// time and UTC instants that schedules need, including what happens in DST gaps and overlaps.
///
/// Built from an IANA identifier through Foundation, whose transitions are read once per year
/// and shared by every `TimeZoneRules` of the same zone in the process; the conversions
/// themselves are arithmetic. Local times are expressed as "local ms" (or seconds): what an
/// epoch clock would read if the wall clock's time were UTC.
public struct TimeZoneRules: Sendable, Hashable, CustomStringConvertible {
    /// How far around an instant to look for transitions: further than any UTC offset, so
    /// every instant a local time could denote is inside the window.
    static let lookaroundSeconds: Int64 = 2 * CivilDateTime.secondsPerDay

    /// The identifier this was built from.
    public let identifier: String
    /// nil for UTC, which needs no table: its offset is always 0.
    let table: ZoneTransitionTable?

    /// UTC: no offset, no transitions.
    public static let utc = TimeZoneRules(identifier: "UTC", table: nil)

    /// The zone with this IANA identifier ("Europe/Berlin"); "UTC" needs no lookup.
    public init(identifier: String = "UTC") throws(UnknownTimeZone) {
        if identifier == "UTC" {
            self.init(identifier: identifier, table: nil)
            return
        }
        // Identifiers are short; a bound keeps absurd input away from Foundation and the registry.
        guard identifier.utf8.count <= 64, let zone = TimeZone(identifier: identifier) else {
            throw UnknownTimeZone(identifier: identifier)
        }
        self.init(identifier: identifier, table: Self.sharedTable(for: zone))
    }

    private init(identifier: String, table: ZoneTransitionTable?) {
        self.identifier = identifier
        self.table = table
    }

    public var description: String { identifier }

    public static func == (lhs: TimeZoneRules, rhs: TimeZoneRules) -> Bool { lhs.identifier == rhs.identifier }
    public func hash(into hasher: inout Hasher) { hasher.combine(identifier) }

    // MARK: Public conversions (ms)

    /// Seconds east of UTC in effect at an instant.
    public func utcOffsetSeconds(atMs instantMs: Int64) -> Int {
        offset(at: CivilDateTime.floorDivide(instantMs, 1_000))
    }

    /// The wall-clock time (local ms) at an instant.
    public func localMs(atMs instantMs: Int64) -> Int64 {
        instantMs + Int64(utcOffsetSeconds(atMs: instantMs)) * 1_000
    }

    /// The instants a wall-clock time (local ms) denotes: one, two (clocks set back), or none
    /// (clocks set forward over it). `localMs` is within `ScheduleLimits.instantsMs`.
    public func resolve(localMs: Int64) -> LocalTimeResolution {
        precondition(ScheduleLimits.instantsMs.contains(localMs), "local time \(localMs) ms is outside years 1–9999")
        let seconds = CivilDateTime.floorDivide(localMs, 1_000)
        let fraction = localMs - seconds * 1_000
        switch resolve(localSeconds: seconds) {
        case .unique(let instant): return .unique(instant * 1_000 + fraction)
        case .repeated(let earlier, let later):
            return .repeated(earlierMs: earlier * 1_000 + fraction, laterMs: later * 1_000 + fraction)
        // The gap ends at a whole second (the transition); the fraction fell into the gap too.
        case .skipped(let next): return .skipped(nextValidMs: next * 1_000)
        }
    }

    // MARK: Seconds, for the schedule search

    /// Seconds east of UTC at `instant` (UTC seconds).
    func offset(at instant: Int64) -> Int {
        table?.offset(at: instant) ?? 0
    }

    /// The instants (UTC seconds) a local time (local seconds) denotes.
    func resolve(localSeconds local: Int64) -> LocalSecondsResolution {
        guard let table else { return .unique(local) }
        let timeline = table.timeline(from: local - Self.lookaroundSeconds, through: local + Self.lookaroundSeconds)
        // Each stretch of constant offset holds the instant `local - offset`, or not.
        var earliest: Int64?
        var latest: Int64?
        for stretch in timeline.stretches where stretch.contains(local - Int64(stretch.offset)) {
            earliest = earliest ?? local - Int64(stretch.offset)
            latest = local - Int64(stretch.offset)
        }
        if let earliest, let latest {
            return earliest == latest ? .unique(earliest) : .repeated(earlier: earliest, later: latest)
        }
        // No stretch holds it: a transition moved the wall clock forward over it.
        for transition in timeline.transitions
        where transition.instant + Int64(transition.offsetBefore) <= local && local < transition.instant + Int64(transition.offsetAfter) {
            return .skipped(next: transition.instant)
        }
        preconditionFailure("local time \(local) in \(identifier) is neither real nor in a gap")
    }

    /// The earliest local time (local seconds) whose firing instant is at or after `instant`.
    ///
    /// Firing instants never decrease as local time increases, so a search for the next
    /// occurrence may start here. Usually that is simply the wall-clock time at `instant`, but:
    /// - at the first instant after a gap, the gap's local times fire there too, so the search
    ///   starts at the gap's beginning;
    /// - in the second pass of a repeated stretch, those local times already fired on their
    ///   first pass, so the search starts where the repetition ends.
    func earliestLocalTime(firingAtOrAfter instant: Int64) -> Int64 {
        guard let table else { return instant }
        let timeline = table.timeline(from: instant - Self.lookaroundSeconds, through: instant)
        let offset = timeline.transitions.last?.offsetAfter ?? timeline.offsetBefore
        if let last = timeline.transitions.last {
            if last.instant == instant && last.opensGap {
                return instant + Int64(last.offsetBefore)
            }
            let repeatedSeconds = Int64(last.offsetBefore - last.offsetAfter)
            if !last.opensGap && instant - last.instant < repeatedSeconds {
                return last.instant + Int64(last.offsetBefore)
            }
        }
        return instant + Int64(offset)
    }

    // MARK: Sharing tables between schedules of one zone

    private static let tables = Mutex<[String: ZoneTransitionTable]>([:])

    /// One table per zone in the process, so that a million schedules in Europe/Berlin read
    /// Berlin's transitions once. Bounded by the number of zones Foundation knows.
    private static func sharedTable(for zone: TimeZone) -> ZoneTransitionTable {
        tables.withLock { tables in
            if let table = tables[zone.identifier] { return table }
            let table = ZoneTransitionTable(zone: zone)
            tables[zone.identifier] = table
            return table
        }
    }
}
