import ChimeWheel
import Testing

/// When a checkpoint is worth writing: bytes that a crash would replay, or a change that
/// has waited long enough; never for nothing.
@Suite struct CheckpointPolicyTests {
    let policy = CheckpointPolicy(interval: 1_000, bytes: 4_096, maximumInterval: 30_000)

    @Test func nothingAppendedIsNeverDue() {
        #expect(!policy.isDue(now: 1_000_000, last: 0, appended: 0, changedSince: 0))
        #expect(!policy.isDue(now: 0, last: 1_000_000, appended: 0, changedSince: 0), "not even after a clock step back")
    }

    @Test func enoughBytesAreDueOnceTheIntervalHasPassed() {
        #expect(!policy.isDue(now: 999, last: 0, appended: 1 << 30, changedSince: 0), "not before the interval, however many bytes")
        #expect(policy.isDue(now: 1_000, last: 0, appended: 4_096, changedSince: 1_000))
        #expect(!policy.isDue(now: 1_000, last: 0, appended: 4_095, changedSince: 0), "a byte short")
    }

    @Test func aSmallChangeWaitsTheMaximumIntervalFromWhenItCame() {
        // The last checkpoint long ago does not make a new small change due at once: at
        // 10,000 quiet partitions that would be a checkpoint per message.
        #expect(!policy.isDue(now: 100_000, last: 0, appended: 1, changedSince: 99_000))
        #expect(!policy.isDue(now: 128_999, last: 0, appended: 1, changedSince: 99_000))
        #expect(policy.isDue(now: 129_000, last: 0, appended: 1, changedSince: 99_000))
        #expect(policy.latest(changedSince: 99_000) == 129_000)
    }

    @Test func aClockSteppedBackIsDueSoCheckpointsDoNotStop() {
        #expect(policy.isDue(now: 5_000, last: 3_600_000, appended: 1, changedSince: 3_600_000))
    }

    @Test func everyIntervalIsDueForAnyChange() {
        let every = CheckpointPolicy.every(150)
        #expect(every.isDue(now: 150, last: 0, appended: 1, changedSince: 100))
        #expect(!every.isDue(now: 149, last: 0, appended: 1 << 20, changedSince: 0))
    }

    @Test func extremeTimesDoNotTrap() {
        #expect(policy.isDue(now: .max, last: .min, appended: 1, changedSince: .min))
        #expect(policy.isDue(now: .min, last: .max, appended: 1, changedSince: .max), "a step back")
        #expect(!policy.isDue(now: .max, last: .max, appended: .max, changedSince: .max))
        #expect(policy.latest(changedSince: .max) == .max)
        #expect(policy.latest(changedSince: .min) == .min + 30_000)
    }
}
