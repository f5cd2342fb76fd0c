import ChimeStore
import Logging
import Synchronization

/// Drives a `TimingWheel` in real time: fires what is due, then sleeps until the next
/// occupied slot — no fixed poll interval — and is woken early when a schedule lands before
/// that. Between fires it cascades upcoming slots ahead in small steps and, after each
/// checkpoint, compacts the timer log when it holds more than twice its live bytes. The
/// wheel is owned by this actor; schedule and cancel go through it. While it runs it
/// checkpoints as `checkpointPolicy` says (when what a crash would replay is worth a
/// checkpoint), and once more when `run` ends, so a clean stop reopens without replay and
/// a crash replays little. A failure to fire (a
/// destination that refuses, a full disk) is logged and retried with backoff; the loop
/// does not stop.
public actor FiringLoop {
    /// A serial executor on the threads all loops share (`ExecutorPool.firing`), not the
    /// cooperative pool: fires block on syncs. Loops are not tied to threads, so a long
    /// step of one (a large fire, a compaction step) holds one thread, not the loops
    /// beside it.
    private let executor: ExecutorPool.Executor
    public nonisolated var unownedExecutor: UnownedSerialExecutor { executor.asUnownedSerialExecutor() }
    private let wheel: TimingWheel
    private let clock: any WheelClock
    /// When a checkpoint is taken while running (nil: only when asked and at the end).
    private let checkpointPolicy: CheckpointPolicy?
    /// Entries moved per `cascadeAhead` step: small enough that a due slot waits at most
    /// about a millisecond behind one.
    private let cascadeStep: Int
    /// A fire of at least `prepareMinEntries` entries is read ahead (`prepareNextFire`)
    /// `prepareLead` ms before it falls due: its walk and copies, most of a large fire's
    /// work before the append, happen before its millisecond instead of after it.
    public static let prepareLead: Int64 = 500
    public static let prepareMinEntries = 16_384
    /// How many ms before its due time a slot is fired (`FireDestination.deliver`): its
    /// syncs and appends happen ahead, and the destination shows it to its readers at the
    /// due time.
    private let fireLead: Int64
    private var lastCheckpoint: Int64
    /// When the loop first saw bytes that no checkpoint covers (nil: none since the last).
    private var changedSince: Int64?
    private let logger: Logger
    private var sleeper: Task<Void, Never>?
    /// A compaction pass may be due or running (set after each checkpoint).
    private var compacting = false
    /// The checkpoint being written in the background, if any.
    private var checkpointWriting: Task<Void, Never>?
    /// The deadline of the current sleep: nil while awake, `.max` while idle.
    public private(set) var sleepingUntil: Int64?
    private let metrics: FiringMetrics
    /// `gauges` as of the loop's last change, for readers that must not wait for its thread.
    private let published: Mutex<Gauges>

    /// What the wheel holds, as stats show it.
    public struct Gauges: Sendable, Equatable {
        /// Messages scheduled and neither fired nor cancelled.
        public var pending: Int
        /// The start of the next slot to fire or cascade; nil when the wheel is empty.
        public var nextDue: Int64?
    }

    public init(
        wheel: sending TimingWheel, clock: any WheelClock = SystemWheelClock(), checkpointPolicy: CheckpointPolicy? = .standard,
        cascadeStep: Int = 1_024, fireLead: Int64 = 0, metrics: FiringMetrics = FiringMetrics(topic: ""), logger: Logger
    ) {
        precondition(fireLead >= 0 && fireLead <= 1_000, "a fire lead is a few milliseconds")
        self.fireLead = fireLead
        self.metrics = metrics
        self.cascadeStep = cascadeStep
        executor = ExecutorPool.firing.makeExecutor()
        self.wheel = wheel
        self.clock = clock
        self.checkpointPolicy = checkpointPolicy
        self.logger = logger
        lastCheckpoint = clock.now()
        published = Mutex(Gauges(pending: wheel.pendingCount, nextDue: wheel.nextDue))
    }

    /// The wheel's pending count and next due time as of the last schedule, cancel or fire,
    /// without a hop to this actor's thread: stats of many partitions, asked for by many
    /// clients at once, would otherwise queue two thread switches per partition behind
    /// the fires. One pass over the slots per change (a few thousand adds), not per message.
    public nonisolated var gauges: Gauges { published.withLock { $0 } }

    private func publishGauges() {
        let now = Gauges(pending: wheel.pendingCount, nextDue: wheel.nextDue)
        published.withLock { $0 = now }
    }

    /// Takes a checkpoint when one is due and none is being written, and writes it on
    /// another thread: the sync it needs can take tens of milliseconds, and fires go on
    /// meanwhile. A checkpoint only shortens replay: its failure is logged, never passed on.
    private func checkpointIfDue() {
        guard wheel.checkpointPath != nil, checkpointWriting == nil else { return }
        guard let checkpointPolicy else { return }
        let now = clock.now()
        let appended = wheel.uncheckpointedBytes
        guard appended > 0 else {
            changedSince = nil
            return
        }
        let since = changedSince ?? now
        changedSince = since
        guard checkpointPolicy.isDue(now: now, last: lastCheckpoint, appended: appended, changedSince: since) else { return }
        guard let pending = wheel.prepareCheckpoint() else { return }
        lastCheckpoint = now
        changedSince = nil
        checkpointWriting = Task { [self] in
            let result: Result<Void, any Error>
            do {
                result = .success(try await ExecutorPool.background.perform { try pending.write() })
            } catch {
                result = .failure(error)
            }
            checkpointFinished(pending, result)
        }
    }

    private func checkpointFinished(_ pending: TimingWheel.PendingCheckpoint, _ result: Result<Void, any Error>) {
        checkpointWriting = nil
        switch result {
        case .success:
            wheel.checkpointWritten(pending)
            reclaimAndCompactLater()
        case .failure(let error):
            logger.error("wheel checkpoint failed; recovery will replay more", metadata: ["error": "\(error)"])
        }
    }

    /// After a checkpoint: delete what it made unnecessary, and let compaction look.
    private func reclaimAndCompactLater() {
        do {
            let deleted = try wheel.reclaim(inBackground: true)
            if !deleted.isEmpty { logger.debug("reclaimed timer-log segments", metadata: ["count": "\(deleted.count)"]) }
        } catch {
            logger.error("reclaiming timer-log segments failed", metadata: ["error": "\(error)"])
        }
        compacting = true
    }

    /// Schedules messages (see `TimingWheel.schedule`) and wakes the loop if one of them is
    /// due before it planned to wake.
    public func schedule(_ messages: [ScheduledMessage]) throws -> [Int64] {
        defer { publishGauges() }
        let ids = try wheel.schedule(messages)
        wakeIfDueBeforeSleepEnds()
        return ids
    }

    /// Ends the loop's sleep when the wheel's next slot must fire before it planned to wake.
    private func wakeIfDueBeforeSleepEnds() {
        if let due = wheel.nextDue, let sleeping = sleepingUntil, due - fireLead < sleeping { sleeper?.cancel() }
    }

    /// Cancels a pending message (see `TimingWheel.cancel`).
    public func cancel(_ id: Int64, dueAt: Int64? = nil) throws {
        defer { publishGauges() }
        try wheel.cancel(id, dueAt: dueAt)
    }

    /// Every message due before this has been handed over (`TimingWheel.time`).
    public var wheelTime: Int64 { wheel.time }

    /// Where a scheduled message stands (see `TimingWheel.state(of:)`).
    public func state(of id: Int64) throws -> TimingWheel.MessageState {
        try wheel.state(of: id)
    }

    /// What is due soon (see `TimingWheel.upcoming`).
    public func upcoming(before bounds: [Int64], earliest: Int, maxEntries: Int) -> TimingWheel.Upcoming {
        wheel.upcoming(before: bounds, earliest: earliest, maxEntries: maxEntries)
    }

    /// Moves a pending message to `newDueAt` (see `TimingWheel.reschedule`); returns its
    /// new id, and wakes the loop if it is now due before the loop planned to wake.
    @discardableResult
    public func reschedule(
        _ id: Int64, dueAt: Int64? = nil, to newDueAt: Int64, edit: @Sendable (inout ScheduledMessage) throws -> Void = { _ in }
    ) throws -> Int64 {
        defer { publishGauges() }
        let moved = try wheel.reschedule(id, dueAt: dueAt, to: newDueAt, edit: edit)
        wakeIfDueBeforeSleepEnds()
        return moved
    }

    /// What one turn of `run` does, for an owner that drives time itself (tests on a manual
    /// clock): fires everything due at `clock.now()` and finishes any cascade ahead. Not
    /// to be mixed with a running `run`. Returns the number of messages handed over.
    @discardableResult
    public func fireDue() throws -> Int {
        defer { publishGauges() }
        let fired = try wheel.advance(to: clock.now())
        reportFired()
        while try wheel.cascadeAhead(maxEntries: cascadeStep) {}
        return fired
    }

    /// Reports what the wheel handed over since the last report: one lateness observation
    /// (its most overdue message) and one counter step per round, whatever its size.
    private func reportFired() {
        let tally = wheel.takeFiredTally()
        guard tally.messages > 0, let earliest = tally.earliestDue else { return }
        metrics.fired.increment(by: tally.messages)
        // A wall clock stepped back makes no message early.
        metrics.lateness.recordMilliseconds(max(0, clock.now() - earliest))
    }

    /// Bytes of the timer log on disk.
    public var timerLogBytes: Int64 { wheel.log.totalBytes }

    public var pendingCount: Int { wheel.pendingCount }
    public var nextDue: Int64? { wheel.nextDue }

    /// Writes the wheel's checkpoint (after syncing the timer log; after any checkpoint
    /// being written in the background), then deletes the timer-log segments that nothing
    /// live needs any more. Returns the base offsets of the deleted segments.
    @discardableResult
    public func checkpoint() async throws -> [Int64] {
        await checkpointWriting?.value
        try wheel.checkpoint()
        lastCheckpoint = clock.now()
        return try wheel.reclaim()
    }

    /// Runs until the task is cancelled: catch up on everything overdue, in due order, then
    /// fire each slot `fireLead` ms before it falls due. Ends with a checkpoint.
    public func run() async throws {
        var failures = 0
        while !Task.isCancelled {
            do {
                try wheel.advance(to: clock.now() + fireLead)
                reportFired()
                failures = 0
            } catch {
                reportFired()  // hand-overs that succeeded before the failure
                failures += 1
                let backoff = min(5_000, 50 << min(failures, 7))
                logger.error("firing failed; retrying", metadata: ["error": "\(error)", "attempt": "\(failures)", "backoffMs": "\(backoff)"])
                publishGauges()
                try? await Task.sleep(for: .milliseconds(backoff))
                continue
            }
            publishGauges()
            checkpointIfDue()
            // Upcoming slots are cascaded ahead in small steps, fires going first between
            // steps, so no slot is cascaded all at once when it starts.
            do {
                if try wheel.cascadeAhead(maxEntries: cascadeStep) {
                    await Task.yield()
                    continue
                }
            } catch {
                logger.error("cascading ahead failed; the slot will be cascaded when it starts", metadata: ["error": "\(error)"])
            }
            // A large fire coming up is read ahead, so that at its millisecond it only appends.
            if wheel.prepareNextFire(now: clock.now(), lead: Self.prepareLead, minEntries: Self.prepareMinEntries) {
                await Task.yield()
                continue
            }
            // Compaction, one slot per step, when nothing else is to do; checked after
            // each checkpoint (it needs the live counts a checkpoint has just pruned).
            if compacting {
                do {
                    compacting = try wheel.compact()
                    if !compacting { logger.debug("timer-log compaction pass done", metadata: ["liveBytes": "\(wheel.liveBytes)"]) }
                } catch {
                    compacting = false
                    logger.error("timer-log compaction failed; retried after the next checkpoint", metadata: ["error": "\(error)"])
                }
                if compacting {
                    await Task.yield()
                    continue
                }
            }
            publishGauges()
            // Until the next slot, or until a change waiting for its checkpoint is due.
            var due = wheel.nextDue.map { $0 - fireLead }
            if let ahead = wheel.nextPreparation(lead: Self.prepareLead, minEntries: Self.prepareMinEntries) { due = min(due ?? .max, ahead) }
            if let since = changedSince, let checkpointPolicy, wheel.checkpointPath != nil {
                due = min(due ?? .max, checkpointPolicy.latest(changedSince: since))
            }
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
        // Stopping: let a checkpoint being written finish, then write a last one, so a
        // clean stop reopens without replay.
        await checkpointWriting?.value
        if wheel.checkpointPath != nil {
            do {
                try wheel.checkpoint()
                try wheel.reclaim()
                wheel.log.waitForBackgroundWork()  // deletions asked for earlier are done too
            } catch {
                logger.error("final wheel checkpoint failed; the next open replays more", metadata: ["error": "\(error)"])
                finalCheckpointError = error
            }
        }
    }

    /// Why the last checkpoint of a `run` that ended could not be written, if it could not.
    public private(set) var finalCheckpointError: (any Error)?
}
