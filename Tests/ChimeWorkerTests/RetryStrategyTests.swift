import Testing

@testable import ChimeWorker

/// The waits between attempts, with the jitter's random number given.
@Suite struct RetryStrategyTests {
    @Test func exponentialJitterDoublesItsCeilingUpToTheMaximumAndStopsAfterTheLastAttempt() {
        let s = RetryStrategy.exponentialJitter(maxAttempts: 5, base: .seconds(1), maxDelay: .seconds(5))
        #expect(s.delay(afterAttempt: 1, random: 0.999_999)! < .seconds(1))
        #expect(s.delay(afterAttempt: 2, random: 0.5) == .seconds(1))
        #expect(s.delay(afterAttempt: 3, random: 0.5) == .seconds(2))
        #expect(s.delay(afterAttempt: 4, random: 1) == .seconds(5), "capped at the maximum")
        #expect(s.delay(afterAttempt: 4, random: 0) == .zero, "full jitter reaches down to no wait")
        #expect(s.delay(afterAttempt: 5, random: 0.5) == nil, "the fifth attempt was the last")
    }

    @Test func aHugeAttemptNumberDoesNotOverflowTheCeiling() {
        let s = RetryStrategy.exponentialJitter(maxAttempts: .max, base: .seconds(1), maxDelay: .seconds(3_600))
        #expect(s.delay(afterAttempt: 10_000, random: 1) == .seconds(3_600))
    }

    @Test func fixedWaitsTheSameAndNeverGivesNoSecondAttempt() {
        #expect(RetryStrategy.fixed(.milliseconds(250), maxAttempts: 3).delay(afterAttempt: 2, random: 0.1) == .milliseconds(250))
        #expect(RetryStrategy.never.delay(afterAttempt: 1, random: 0.5) == nil)
    }
}
