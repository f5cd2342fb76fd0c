import Foundation

/// Instants in the tests are written as ISO 8601 text and read by Foundation, not by the
/// module under test.
func utcMs(_ text: String) -> Int64 {
    let formatter = ISO8601DateFormatter()
    if text.contains(".") { formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds] }
    guard let date = formatter.date(from: text) else { preconditionFailure("not an ISO 8601 instant: \(text)") }
    return Int64(date.timeIntervalSince1970 * 1_000)
}

/// An instant as ISO 8601 text, for failure messages.
func iso(_ ms: Int64?) -> String {
    guard let ms else { return "nil" }
    let formatter = ISO8601DateFormatter()
    formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
    return formatter.string(from: Date(timeIntervalSince1970: TimeInterval(ms) / 1_000))
}

/// SplitMix64: a small seeded generator, so that every random test can be repeated from the
/// seed it prints.
struct SeededGenerator: RandomNumberGenerator {
    private var state: UInt64

    init(seed: UInt64) {
        state = seed
    }

    mutating func next() -> UInt64 {
        state &+= 0x9e37_79b9_7f4a_7c15
        var z = state
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }
}

/// The seed of the random tests: `CHIME_SCHEDULE_SEED` when set (to repeat a failure or explore),
/// otherwise a fixed one.
func testSeed(default value: UInt64) -> UInt64 {
    ProcessInfo.processInfo.environment["CHIME_SCHEDULE_SEED"].flatMap { UInt64($0) } ?? value
}
