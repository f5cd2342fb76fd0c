import ChimeWheel
import Synchronization

/// Hand-moved readings of a wall clock and a steady clock (ns), for a `SystemWheelClock`
/// under test: time that elapses moves both; a step moves only the wall clock.
public final class ClockReadings: Sendable {
    private let wall: Atomic<Int64>
    private let steady = Atomic<Int64>(5_000 * 1_000_000)

    /// Readings whose wall clock stands at `wallMilliseconds`.
    public init(wallMilliseconds: Int64) { wall = Atomic(wallMilliseconds * 1_000_000) }

    /// Time passes on both clocks.
    public func elapse(ms: Int64) {
        wall.add(ms * 1_000_000, ordering: .relaxed)
        steady.add(ms * 1_000_000, ordering: .relaxed)
    }

    /// The wall clock alone is stepped (either way), as an operator or NTP does.
    public func stepWall(ms: Int64) { wall.add(ms * 1_000_000, ordering: .relaxed) }

    /// A new clock on these readings (as a broker started now would make).
    public func clock() -> SystemWheelClock {
        SystemWheelClock(wall: { self.wall.load(ordering: .relaxed) }, steady: { self.steady.load(ordering: .relaxed) })
    }
}
