import ChimeStore

/// Drives a `TimingWheel` in real time: fires what is due, then sleeps until the next
/// occupied slot — no fixed poll interval — and is woken early when a schedule lands before
/// that. The wheel is owned by this actor; schedule and cancel go through it.
public actor FiringLoop {
    private let wheel: TimingWheel
    private let clock: any WheelClock
    private var sleeper: Task<Void, Never>?
    /// The deadline of the current sleep: nil while awake, `.max` while idle.
    public private(set) var sleepingUntil: Int64?

    public init(wheel: sending TimingWheel, clock: any WheelClock = SystemWheelClock()) {
        self.wheel = wheel
        self.clock = clock
    }

    /// Schedules messages (see `TimingWheel.schedule`) and wakes the loop if one of them is
    /// due before it planned to wake.
    public func schedule(_ messages: [ScheduledMessage]) throws -> [Int64] {
        let ids = try wheel.schedule(messages)
        if let due = wheel.nextDue, let sleeping = sleepingUntil, due < sleeping { sleeper?.cancel() }
        return ids
    }

    public func cancel(_ id: Int64) throws {
        try wheel.cancel(id)
    }

    public var pendingCount: Int { wheel.pendingCount }
    public var nextDue: Int64? { wheel.nextDue }

    /// Writes the wheel's checkpoint (after syncing the timer log).
    public func checkpoint() throws {
        try wheel.checkpoint()
    }

    /// Runs until the task is cancelled: catch up on everything overdue, in due order, then
    /// fire each slot as it falls due.
    public func run() async throws {
        while !Task.isCancelled {
            try wheel.advance(to: clock.now())
            let due = wheel.nextDue
            sleepingUntil = due ?? .max
            let clock = self.clock
            let nap = Task { await clock.sleep(until: due) }
            sleeper = nap
            await withTaskCancellationHandler {
                await nap.value
            } onCancel: {
                nap.cancel()
            }
            sleeper = nil
            sleepingUntil = nil
        }
    }
}
