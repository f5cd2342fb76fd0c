import Testing

@testable import ChimeBroker

/// A bucket per key, on an injected clock, with a bounded number of keys tracked.
@Suite struct KeyRateLimiterTests {
    @Test func aKeyGetsItsBurstThenOneTokenPerIntervalAndOtherKeysTheirOwn() {
        var l = KeyRateLimiter(rate: 4, burst: 2)
        #expect(l.take(1, now: 0) == nil)
        #expect(l.take(1, now: 0) == nil)
        #expect(l.take(1, now: 0) == 250, "the next token in a quarter second")
        #expect(l.take(2, now: 0) == nil, "another key has its own bucket")
        #expect(l.take(1, now: 249) == 250)
        #expect(l.take(1, now: 250) == nil)
        #expect(l.take(1, now: 250) == 500)
    }

    @Test func aTokenGivenBackCanBeTakenAgain() {
        var l = KeyRateLimiter(rate: 1, burst: 1)
        #expect(l.take(1, now: 0) == nil)
        l.giveBack(1)
        #expect(l.take(1, now: 0) == nil)
        #expect(l.take(1, now: 0) == 1_000)
    }

    @Test func idleKeysAreForgottenToMakeRoomAndANewKeyWaitsWhenNoneIsIdle() {
        var l = KeyRateLimiter(rate: 10, burst: 1, maxKeys: 3)
        for k in 0..<3 { #expect(l.take(UInt64(k), now: 0) == nil) }
        #expect(l.trackedKeys == 3)
        // Every bucket is empty: key 3 waits until the first could be forgotten (full again).
        #expect(l.take(3, now: 0) == 100)
        #expect(l.take(3, now: 50) == 100, "no sweep before then")
        #expect(l.take(3, now: 100) == nil, "the idle keys were forgotten")
        #expect(l.trackedKeys == 1)
        #expect(l.take(0, now: 100) == nil, "a forgotten key starts with a full bucket")
    }
}
