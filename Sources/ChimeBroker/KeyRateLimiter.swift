/// A group's per-key rate limit: a token bucket per key (by key hash), in milliseconds of an
/// injected clock; a pure state machine.
///
/// Memory is bounded: a bucket that has refilled to its burst is the same as no bucket, so
/// it may be forgotten. At most `maxKeys` buckets are kept; when a new key comes and the
/// table is full, the full buckets are forgotten, and if none is, the new key waits — its
/// message is held back until the earliest tracked key could be forgotten — rather than
/// being let through unlimited. A fair share of a busy moment: no key ever exceeds its rate.
struct KeyRateLimiter {
    let rate: Double
    let burst: Double
    let maxKeys: Int
    private var buckets: [UInt64: Bucket] = [:]
    /// No bucket can be forgotten before this time (set when a sweep found none).
    private var nothingToForgetBefore: Int64 = .min

    private struct Bucket {
        var tokens: Double
        var last: Int64
    }

    /// `rate`: tokens per second; `burst`: what a bucket holds (default: a second's worth,
    /// at least one).
    init(rate: Double, burst: Double?, maxKeys: Int = 100_000) {
        precondition(rate > 0 && rate.isFinite && maxKeys > 0, "a key rate is positive, and some keys are tracked")
        self.rate = rate
        self.burst = burst ?? max(1, rate)
        precondition(self.burst >= 1, "a bucket holds at least one token")
        self.maxKeys = maxKeys
    }

    var trackedKeys: Int { buckets.count }

    /// Takes a token for `key` at `now`: nil when granted, else the time (ms) to ask again.
    mutating func take(_ key: UInt64, now: Int64) -> Int64? {
        if var b = buckets[key] {
            refill(&b, now: now)
            guard b.tokens >= 1 else {
                buckets[key] = b
                return now + Self.milliseconds(toGain: 1 - b.tokens, rate: rate)
            }
            b.tokens -= 1
            buckets[key] = b
            return nil
        }
        if buckets.count >= maxKeys {
            guard forgetFullBuckets(now: now) else { return nothingToForgetBefore }
        }
        buckets[key] = Bucket(tokens: burst - 1, last: now)
        return nil
    }

    /// Gives back a token taken for a message that was not delivered after all.
    mutating func giveBack(_ key: UInt64) {
        guard var b = buckets[key] else { return }
        b.tokens = min(burst, b.tokens + 1)
        buckets[key] = b
    }

    /// Whole milliseconds until a bucket gains `tokens` (rounded up, less a hair of
    /// floating-point error: 0.996 tokens at 4/s is 1 ms from the next, not 2).
    private static func milliseconds(toGain tokens: Double, rate: Double) -> Int64 {
        max(1, Int64((tokens * 1000 / rate - 1e-6).rounded(.up)))
    }

    private func refill(_ b: inout Bucket, now: Int64) {
        guard now > b.last else { return }
        b.tokens = min(burst, b.tokens + Double(now - b.last) * rate / 1000)
        b.last = now
    }

    /// Forgets the buckets that are full at `now`; true if that made room. Otherwise
    /// remembers when the first could be forgotten, and does not look again before then.
    private mutating func forgetFullBuckets(now: Int64) -> Bool {
        guard now >= nothingToForgetBefore else { return false }
        var earliest = Int64.max
        for (key, var b) in buckets {
            refill(&b, now: now)
            if b.tokens >= burst {
                buckets[key] = nil
            } else {
                earliest = min(earliest, now + Self.milliseconds(toGain: burst - b.tokens, rate: rate))
            }
        }
        if buckets.count < maxKeys { return true }
        nothingToForgetBefore = earliest
        return false
    }
}
