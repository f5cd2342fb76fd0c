import Testing

@testable import ChimeSchedule

@Suite struct JitterTests {
    @Test func theHashIsFNV1aWithTheStandardVectors() {
        #expect(StableHash.fnv1a("".utf8) == 0xcbf2_9ce4_8422_2325)
        #expect(StableHash.fnv1a("a".utf8) == 0xaf63_dc4c_8601_ec8c)
        #expect(StableHash.fnv1a("foobar".utf8) == 0x8594_4171_f739_67e8)
    }

    @Test func jitterIsTheSameForTheSameSeedAndOccurrence() {
        let occurrence = utcMs("2026-03-08T07:00:00Z")
        let first = jittered(occurrence: occurrence, next: nil, maxJitterMs: 60_000, seed: "nightly-report")
        #expect(jittered(occurrence: occurrence, next: nil, maxJitterMs: 60_000, seed: "nightly-report") == first)
        // Fixed across processes and platforms: pinned, so that a change of hash is noticed.
        #expect(first - occurrence == Self.pinnedOffset)
        #expect(jittered(occurrence: occurrence, next: nil, maxJitterMs: 60_000, seed: "other") != first)
    }

    /// The offset of "nightly-report" at 2026-03-08T07:00Z (1772953200000) with a 60 s bound,
    /// computed outside Swift from the definition: FNV-1a 64 of the seed's bytes then of the
    /// occurrence's 8 bytes little-endian, SplitMix64's finaliser, high half of hash × 60001.
    static let pinnedOffset: Int64 = 30_679

    @Test func jitterStaysInRangeAndStrictlyBeforeTheNextOccurrence() {
        let seed = testSeed(default: 0x717)
        var rng = SeededGenerator(seed: seed)
        var offsets = Set<Int64>()
        for index in 0..<20_000 {
            let occurrence = Int64.random(in: 0...4_000_000_000_000, using: &rng)
            let maxJitter = Int64.random(in: 0...120_000, using: &rng)
            let next: Int64? = Bool.random(using: &rng) ? occurrence + Int64.random(in: 1...200_000, using: &rng) : nil
            let result = jittered(occurrence: occurrence, next: next, maxJitterMs: maxJitter, seed: "schedule-\(index % 7)")
            #expect(result >= occurrence && result <= occurrence + maxJitter, "seed \(seed)")
            if let next { #expect(result < next, "seed \(seed)") }
            offsets.insert(result - occurrence)
        }
        #expect(offsets.count > 10_000, "spread out, not clustered")
    }

    @Test func noRoomMeansNoJitter() {
        #expect(jittered(occurrence: 1_000, next: 1_001, maxJitterMs: 5_000, seed: "s") == 1_000)
        #expect(jittered(occurrence: 1_000, next: nil, maxJitterMs: 0, seed: "s") == 1_000)
        #expect(jittered(occurrence: Int64.max - 1, next: nil, maxJitterMs: 5_000, seed: "s") <= Int64.max)
    }

    @Test func extremeInstantsDoNotOverflow() {
        let early = jittered(occurrence: -5_000, next: Int64.max, maxJitterMs: 1_000, seed: "s")
        #expect((-5_000)...(-4_000) ~= early)
        let earliest = jittered(occurrence: Int64.min, next: Int64.max, maxJitterMs: Int64.max, seed: "s")
        #expect(earliest < Int64.max)
        #expect(jittered(occurrence: Int64.max - 1, next: Int64.max, maxJitterMs: Int64.max, seed: "s") == Int64.max - 1)
    }

    @Test func consecutiveOccurrencesSpreadUniformly() {
        // 100 buckets of a 100 s bound over 100,000 occurrences a minute apart: each gets about 1,000.
        var buckets = [Int](repeating: 0, count: 100)
        for k in Int64(0)..<100_000 {
            let occurrence = k * 60_000
            buckets[Int((jittered(occurrence: occurrence, next: nil, maxJitterMs: 99_999, seed: "uniform") - occurrence) / 1_000)] += 1
        }
        #expect(buckets.min()! > 850 && buckets.max()! < 1_150)
    }
}
