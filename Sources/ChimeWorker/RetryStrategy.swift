/// How a failed job is tried again: how many attempts in all, and how long to wait before
/// each. The wait goes through the broker's wheel (a nack with a delay), so a worker holds
/// nothing while a job waits for its next attempt.
public struct RetryStrategy: Sendable {
    /// Attempts in all, the first included (1: never again).
    public let maxAttempts: Int
    private let delayAfter: @Sendable (_ attempt: Int, _ random: Double) -> Duration

    /// `delay(attempt, random)`: the wait after failed attempt `attempt` (1 for the first),
    /// `random` uniform in 0..<1 for jitter.
    public init(maxAttempts: Int, delay: @escaping @Sendable (_ attempt: Int, _ random: Double) -> Duration) {
        precondition(maxAttempts >= 1, "a job is attempted at least once")
        self.maxAttempts = maxAttempts
        delayAfter = delay
    }

    /// The wait after failed attempt `attempt`, or nil when it was the last.
    public func delay(afterAttempt attempt: Int, random: Double) -> Duration? {
        guard attempt < maxAttempts else { return nil }
        return delayAfter(attempt, random)
    }

    /// Exponential backoff with full jitter: after attempt n, a wait drawn uniformly from
    /// 0 to min(maxDelay, base × 2^(n−1)) — the spread keeps retries of many jobs that
    /// failed together from hitting the same dependency together again.
    public static func exponentialJitter(maxAttempts: Int = 5, base: Duration = .seconds(1), maxDelay: Duration = .seconds(3_600)) -> RetryStrategy {
        RetryStrategy(maxAttempts: maxAttempts) { attempt, random in
            let ceiling = min(maxDelay, base * Self.power(attempt - 1))
            return ceiling * random
        }
    }

    /// The same wait after every failed attempt.
    public static func fixed(_ delay: Duration, maxAttempts: Int = 5) -> RetryStrategy {
        RetryStrategy(maxAttempts: maxAttempts) { _, _ in delay }
    }

    /// One attempt: a failure goes to the dead letters at once.
    public static let never = RetryStrategy(maxAttempts: 1) { _, _ in .zero }

    /// 2^n, capped so that the product above cannot overflow.
    private static func power(_ n: Int) -> Int { 1 << Swift.min(Swift.max(0, n), 40) }
}

/// An error that must not be retried: the job goes to the dead letters at once, with this
/// error's text as the reason (a malformed request, a permission that will not appear).
public struct NonRetryableError: Error, CustomStringConvertible {
    public let underlying: any Error
    public init(_ underlying: any Error) { self.underlying = underlying }
    public var description: String { "\(underlying)" }
}
