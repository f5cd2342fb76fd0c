/// The bounds every schedule computation stays inside, so that no arithmetic can overflow
/// and no search can run on.
public enum ScheduleLimits {
    /// 0001-01-01T00:00:00Z, in seconds.
    static let earliestSeconds: Int64 = -62_135_596_800
    /// 9999-12-31T23:59:59Z, in seconds.
    static let latestSeconds: Int64 = 253_402_300_799
    /// The instants schedules produce and accept as anchors: years 1 to 9999.
    public static let instantsMs: ClosedRange<Int64> = (earliestSeconds * 1_000)...(latestSeconds * 1_000 + 999)

    /// The longest interval a schedule may have: 100 years of 365.25 days.
    public static let maximumIntervalMs: Int64 = 36_525 * 86_400_000

    /// How far a cron search looks ahead before it answers "never": 8 years, the longest gap
    /// between two occurrences a satisfiable expression can have (February 29 across a
    /// century year that is not a leap year, such as 2096 to 2104).
    public static let cronHorizonYears = 8
}
