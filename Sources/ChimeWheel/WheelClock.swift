#if canImport(Glibc)
import Glibc
#endif
import NIOCore
import NIOPosix
import Synchronization

/// Time as the broker sees it (docs/architecture.md, "Time"): every due time, lease,
/// session timeout and dedup window is measured in it. Injected, so tests run the broker on
/// a clock they move by hand.
public protocol WheelClock: Sendable {
    /// Broker time in ms: near the Unix epoch's wall clock, but it never steps. Messages
    /// are due, leases run out and members time out on this clock.
    func now() -> Int64
    /// The wall clock (ms since the Unix epoch), which an operator or NTP may step. Only
    /// absolute due times a client names are read on it (converted to broker time on
    /// receipt).
    func wallNow() -> Int64
    /// Returns at `deadline` (broker time, ms) or when the task is cancelled; with no
    /// deadline, only on cancellation.
    func sleep(until deadline: Int64?) async
    /// Moves broker time forward to `time` if it is behind: a broker reopening wheels that
    /// had reached `time` before a stop never lets its clock start behind them, so a wall
    /// clock stepped back while it was down makes nothing due early. Returns how far (ms)
    /// it moved broker time.
    @discardableResult
    func holdAtLeast(_ time: Int64) -> Int64
}

extension WheelClock {
    public func wallNow() -> Int64 { now() }
    @discardableResult
    public func holdAtLeast(_ time: Int64) -> Int64 { 0 }
}

/// The system's clocks combined into broker time: set from the wall clock when created,
/// then advancing with `CLOCK_BOOTTIME`, which counts time while the machine is suspended,
/// follows NTP's rate corrections like the wall clock, and never steps.
///
/// So a step of the wall clock (an operator, NTP correcting a large error, a VM restored)
/// moves no due time and no lease: a delay of 30 s is 30 s of elapsed time whatever the
/// wall clock does. What a step changes is the difference between the two clocks,
/// `now() - wallNow()`, by which an absolute due time a client names is converted when it
/// arrives. The firing loop's sleeps are relative timers, so it never oversleeps a due time
/// because the wall clock moved.
public final class SystemWheelClock: WheelClock {
    /// Broker time minus the steady clock, in ns (set at creation, raised by `holdAtLeast`).
    private let offset: Atomic<Int64>
    private let wallNanoseconds: @Sendable () -> Int64
    private let steadyNanoseconds: @Sendable () -> Int64

    /// The system clocks.
    public convenience init() {
        self.init(wall: { Self.read(CLOCK_REALTIME) }, steady: { Self.read(CLOCK_BOOTTIME) })
    }

    /// Broker time from the given readings (ns): for tests that step a wall clock.
    public init(wall: @escaping @Sendable () -> Int64, steady: @escaping @Sendable () -> Int64) {
        wallNanoseconds = wall
        steadyNanoseconds = steady
        offset = Atomic(wall() - steady())
    }

    private static func read(_ id: clockid_t) -> Int64 {
        var ts = timespec()
        clock_gettime(id, &ts)
        return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
    }

    private func nowNanoseconds() -> Int64 { steadyNanoseconds() + offset.load(ordering: .relaxed) }

    public func now() -> Int64 { nowNanoseconds() / 1_000_000 }

    public func wallNow() -> Int64 { wallNanoseconds() / 1_000_000 }

    @discardableResult
    public func holdAtLeast(_ time: Int64) -> Int64 {
        let wanted = time.multipliedReportingOverflow(by: 1_000_000)
        precondition(!wanted.overflow, "a wheel's time is within the wheel's range, far below Int64.max ns")
        let steady = steadyNanoseconds()
        var current = offset.load(ordering: .relaxed)
        while current + steady < wanted.partialValue {
            let (exchanged, original) = offset.compareExchange(expected: current, desired: wanted.partialValue - steady, ordering: .relaxed)
            if exchanged { return (wanted.partialValue - steady - current) / 1_000_000 }
            current = original
        }
        return 0
    }

    public func sleep(until deadline: Int64?) async {
        guard let deadline else {
            // Idle: only a wake-up (cancellation) ends this.
            while !Task.isCancelled { await Self.sleep(nanoseconds: 3_600 * 1_000_000_000) }
            return
        }
        // Until the first nanosecond of the deadline's millisecond (in ms first: no overflow).
        let nowNs = nowNanoseconds()
        let wholeMs = deadline - nowNs / 1_000_000
        guard wholeMs > 0 else { return }
        await Self.sleep(nanoseconds: min(wholeMs, 3_600_000) * 1_000_000 - nowNs % 1_000_000)
    }

    /// A relative sleep on an event loop's timer (NIO arms it as a relative `timerfd`), ended
    /// early by cancellation. Not `Task.sleep`: the runtime arms an absolute timer for it,
    /// and an absolute timer is only as good as whatever converts the deadline — under
    /// libfaketime, which the clock-step tests run the server with, it is shifted by the
    /// faked wall clock's offset, and a step back of an hour made every sleep an hour long.
    static func sleep(nanoseconds: Int64) async {
        let scheduled = MultiThreadedEventLoopGroup.singleton.next().scheduleTask(in: .nanoseconds(nanoseconds)) {}
        await withTaskCancellationHandler {
            _ = try? await scheduled.futureResult.get()
        } onCancel: {
            scheduled.cancel()
        }
    }
}
