/// An occurrence moved later by a pseudo-random amount that depends only on `seed` and
/// `occurrence`: the same schedule's same occurrence lands on the same instant in every
/// process and after every restart (design.md §9), while different schedules due at the same
/// instant spread out.
///
/// The result is in `occurrence ... occurrence + maxJitterMs` and, when `next` (the following
/// occurrence) is given, strictly before it, so that jitter never reorders or merges occurrences.
/// - Precondition: `maxJitterMs >= 0`, and `next > occurrence` when given.
public func jittered(occurrence: Int64, next: Int64?, maxJitterMs: Int64, seed: String) -> Int64 {
    precondition(maxJitterMs >= 0, "a jitter bound is not negative")
    var bound = maxJitterMs  // inclusive
    if let next {
        precondition(next > occurrence, "the next occurrence comes after this one")
        let (gap, overflow) = next.subtractingReportingOverflow(occurrence)
        if !overflow { bound = min(bound, gap - 1) }  // an overflowing gap bounds nothing
    }
    // Past year 9999 nothing fires; keep the sum from overflowing all the same.
    if occurrence > 0 { bound = min(bound, Int64.max - occurrence) }
    guard bound > 0 else { return occurrence }
    let hash = StableHash.of(seed: seed, occurrence: occurrence)
    // The high half of hash * (bound + 1) is uniform on 0...bound (Lemire's reduction).
    let offset = Int64(hash.multipliedFullWidth(by: UInt64(bound) + 1).high)
    assert(offset >= 0 && offset <= bound)
    let result = occurrence + offset
    assert(result >= occurrence && (next.map { result < $0 } ?? true))
    return result
}

/// A hash that is the same in every process and on every platform (unlike Swift's `Hasher`,
/// which is seeded randomly per process): FNV-1a over the bytes, then SplitMix64's finaliser so
/// that nearby occurrences get unrelated values.
enum StableHash {
    static let fnvOffsetBasis: UInt64 = 0xcbf2_9ce4_8422_2325
    static let fnvPrime: UInt64 = 0x0000_0100_0000_01b3

    /// FNV-1a (64-bit) of some bytes, continuing from `state`.
    static func fnv1a<Bytes: Sequence>(_ bytes: Bytes, state: UInt64 = fnvOffsetBasis) -> UInt64 where Bytes.Element == UInt8 {
        var hash = state
        for byte in bytes {
            hash ^= UInt64(byte)
            hash = hash &* fnvPrime
        }
        return hash
    }

    /// SplitMix64's output function: a bijection that mixes every input bit into every output bit.
    static func mix(_ value: UInt64) -> UInt64 {
        var z = value &+ 0x9e37_79b9_7f4a_7c15
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }

    /// The seed's UTF-8 bytes, then the occurrence's 8 bytes little-endian.
    static func of(seed: String, occurrence: Int64) -> UInt64 {
        let seedHash = fnv1a(seed.utf8)
        return mix(withUnsafeBytes(of: occurrence.littleEndian) { fnv1a($0, state: seedHash) })
    }
}
