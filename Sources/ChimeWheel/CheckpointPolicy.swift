/// When a log's checkpoint is worth writing. A checkpoint only shortens what a restart
/// after a crash replays (and lets segments it made unnecessary go), and it costs an atomic
/// file write: a rename and three syncs. Taken every second for every partition that
/// changed, a trickle of a message per partition now and then over 10,000 partitions
/// became 2,000 syncs a second of checkpoints — more than the messages' own. So a
/// checkpoint waits until what a crash would replay is worth it: `bytes` appended since
/// the last one (looked at every `interval`), or a change that has waited
/// `maximumInterval`. A busy log still checkpoints every `interval`; a quiet one once per
/// change that waited `maximumInterval`; an idle one never. A clean stop checkpoints
/// whatever changed regardless.
public struct CheckpointPolicy: Sendable, Equatable {
    /// Shortest time between two checkpoints, milliseconds.
    public var interval: Int64
    /// Bytes appended since the last checkpoint that make one due at `interval`.
    public var bytes: Int64
    /// Longest a change waits for its checkpoint, milliseconds.
    public var maximumInterval: Int64

    /// Replay after a crash is then at most 256 KiB per log (a few thousand timer entries,
    /// milliseconds to read). A quiet log's change waits up to 5 minutes: 10,000 partitions
    /// each changing now and then cost 33 checkpoints a second, not 10,000.
    public static let standard = CheckpointPolicy(interval: 1_000, bytes: 256 << 10, maximumInterval: 300_000)

    /// Every `interval` whenever anything changed (tests that want checkpoints to happen).
    public static func every(_ interval: Int64) -> CheckpointPolicy {
        CheckpointPolicy(interval: interval, bytes: 0, maximumInterval: interval)
    }

    public init(interval: Int64, bytes: Int64, maximumInterval: Int64) {
        precondition(interval > 0 && bytes >= 0 && maximumInterval >= interval, "interval > 0, bytes >= 0, maximumInterval >= interval")
        self.interval = interval
        self.bytes = bytes
        self.maximumInterval = maximumInterval
    }

    /// Whether a checkpoint is due at `now` for a log whose last checkpoint was taken at
    /// `last`, that has grown by `appended` bytes since, the first of them noticed at
    /// `changedSince`. Nothing appended: never. A clock that stepped back (`now` before
    /// `last`) counts as due, so checkpoints do not stop.
    public func isDue(now: Int64, last: Int64, appended: Int64, changedSince: Int64) -> Bool {
        guard appended > 0 else { return false }
        guard now >= last else { return true }
        return Self.elapsed(now, since: last) >= interval && appended >= bytes
            || Self.elapsed(now, since: changedSince) >= maximumInterval
    }

    /// When a change first noticed at `changedSince` is due at the latest.
    public func latest(changedSince: Int64) -> Int64 {
        changedSince.addingReportingOverflow(maximumInterval).overflow ? .max : changedSince + maximumInterval
    }

    /// `now - since`, 0 when `since` is later, `.max` when they are too far apart to subtract
    /// (a wall clock set decades on).
    private static func elapsed(_ now: Int64, since: Int64) -> Int64 {
        guard now > since else { return 0 }
        let (d, overflow) = now.subtractingReportingOverflow(since)
        return overflow ? .max : d
    }
}
