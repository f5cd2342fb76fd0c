import ChimeStore

/// Drives a `TimingWheel` in real time: fires what is due, then sleeps until the next
/// occupied slot — no fixed poll interval — and is woken early when a schedule lands before
/// that. The wheel is owned by this actor; schedule and cancel go through it. While work
/// happens it checkpoints at most every `checkpointInterval` ms, and once more when `run`
/// ends, so a clean stop reopens without replay and a crash replays little.
public actor FiringLoop {
    private let wheel: TimingWheel
    private let clock: any WheelClock
    private let checkpointInterval: Int64?
    private var lastCheckpoint: Int64
    private var sleeper: Task<Void, Never>?
    /// The deadline of the current sleep: nil while awake, `.max` while idle.
    public private(set) var sleepingUntil: Int64?

    public init(wheel: sending TimingWheel, clock: any WheelClock = SystemWheelClock(), checkpointInterval: Int64? = 1_000) {
        self.wheel = wheel
        self.clock = clock
        self.checkpointInterval = checkpointInterval
        lastCheckpoint = clock.now()
    }

    private func checkpointIfDue() throws {
        guard let interval = checkpointInterval, wheel.checkpointPath != nil else { return }
        let now = clock.now()
        if now - lastCheckpoint >= interval {
            try wheel.checkpoint()
            lastCheckpoint = now
        }
    }

    /// Schedules messages (see `TimingWheel.schedule`) and wakes the loop if one of them is
    /// due before it planned to wake.
    public func schedule(_ messages: [ScheduledMessage]) throws -> [Int64] {
        let ids = try wheel.schedule(messages)
        if let due = wheel.nextDue, let sleeping = sleepingUntil, due < sleeping { sleeper?.cancel() }
        try checkpointIfDue()
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
    /// fire each slot as it falls due. Ends with a checkpoint.
    public func run() async throws {
        defer { if wheel.checkpointPath != nil { try? wheel.checkpoint() } }
        while !Task.isCancelled {
            try wheel.advance(to: clock.now())
            try checkpointIfDue()
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
