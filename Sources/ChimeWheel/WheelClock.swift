#if canImport(Glibc)
import Glibc
#endif

/// Time as the firing loop sees it: wall-clock milliseconds, and a sleep that ends at a
/// deadline or when the sleeping task is cancelled. Injected, so tests run the loop on a
/// clock they move by hand.
public protocol WheelClock: Sendable {
    /// Milliseconds since the Unix epoch.
    func now() -> Int64
    /// Returns at `deadline` (ms) or when the task is cancelled; with no deadline, only on
    /// cancellation.
    func sleep(until deadline: Int64?) async
}

/// The system's wall clock.
///
/// A sleep is cut into pieces of at most `maxNap` so that a step of the wall clock (NTP,
/// an operator) is noticed within that time; a wheel with nothing pending does not wake.
public struct SystemWheelClock: WheelClock {
    public var maxNap: Duration

    public init(maxNap: Duration = .seconds(1)) {
        self.maxNap = maxNap
    }

    public func now() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
    }

    private func nowNanoseconds() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
    }

    public func sleep(until deadline: Int64?) async {
        guard let deadline else {
            // Idle: only a wake-up (cancellation) ends this.
            while !Task.isCancelled { try? await Task.sleep(for: .seconds(3600)) }
            return
        }
        // Until the first nanosecond of the deadline's millisecond (in ms first: no overflow).
        let nowNs = nowNanoseconds()
        let wholeMs = deadline - nowNs / 1_000_000
        guard wholeMs > 0 else { return }
        let remaining = min(wholeMs, 1_000_000) * 1_000_000 - nowNs % 1_000_000
        try? await Task.sleep(for: min(.nanoseconds(remaining), maxNap))
    }
}
