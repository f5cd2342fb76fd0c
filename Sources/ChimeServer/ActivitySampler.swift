import Prometheus
import Synchronization

/// The overview chart's history: every few seconds the totals of the broker's counters
/// (read from the metrics registry, so they are exactly what `/metrics` shows), kept for
/// the last minutes. Rates are differences of neighbouring samples.
final class ActivitySampler: Sendable {
    struct Sample: Sendable {
        /// Milliseconds since the epoch.
        let at: Int64
        let published: Double
        let fired: Double
        let delivered: Double
        let acked: Double
        let latenessSum: Double
        let latenessCount: Double
    }

    /// One rate point: per second between two samples, and the mean fire lateness (ms) of
    /// the rounds between them.
    struct Rate: Sendable {
        let at: Int64
        let published: Double
        let fired: Double
        let delivered: Double
        let acked: Double
        let latenessMilliseconds: Double?
    }

    static let interval = Duration.seconds(5)
    static let kept = 120  // ten minutes

    private let registry: PrometheusCollectorRegistry?
    private let samples = Mutex<[Sample]>([])

    init(registry: PrometheusCollectorRegistry?) {
        self.registry = registry
    }

    /// Samples until cancelled.
    func run(now: @escaping @Sendable () -> Int64) async {
        guard registry != nil else { return }
        while !Task.isCancelled {
            sample(at: now())
            try? await Task.sleep(for: Self.interval)
        }
    }

    func sample(at milliseconds: Int64) {
        guard let registry else { return }
        var bytes: [UInt8] = []
        ScrapedGauges.rendering.withLock { _ in registry.emit(into: &bytes) }
        let totals = Self.totals(String(decoding: bytes, as: UTF8.self))
        let s = Sample(
            at: milliseconds, published: totals["chime_published_messages_total"] ?? 0, fired: totals["chime_fired_messages_total"] ?? 0,
            delivered: totals["chime_delivered_messages_total"] ?? 0, acked: totals["chime_acked_messages_total"] ?? 0,
            latenessSum: totals["chime_fire_lateness_seconds_sum"] ?? 0, latenessCount: totals["chime_fire_lateness_seconds_count"] ?? 0)
        samples.withLock { all in
            all.append(s)
            if all.count > Self.kept { all.removeFirst(all.count - Self.kept) }
        }
    }

    /// Rates between neighbouring samples, oldest first. A counter that went down (a topic
    /// deleted, its series gone) counts as no activity, not as a negative rate.
    func rates() -> [Rate] {
        let all = samples.withLock { $0 }
        guard all.count > 1 else { return [] }
        return zip(all, all.dropFirst()).map { a, b in
            let seconds = max(0.001, Double(b.at - a.at) / 1_000)
            func r(_ x: Double, _ y: Double) -> Double { max(0, y - x) / seconds }
            let rounds = b.latenessCount - a.latenessCount
            return Rate(
                at: b.at, published: r(a.published, b.published), fired: r(a.fired, b.fired), delivered: r(a.delivered, b.delivered),
                acked: r(a.acked, b.acked), latenessMilliseconds: rounds > 0 ? (b.latenessSum - a.latenessSum) / rounds * 1_000 : nil)
        }
    }

    /// Sums of each metric's series (`name{labels} value` lines; comments skipped).
    static func totals(_ text: String) -> [String: Double] {
        var out: [String: Double] = [:]
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else { continue }
            let series = line[..<space]
            let name = series.firstIndex(of: "{").map { series[..<$0] } ?? series
            out[String(name), default: 0] += value
        }
        return out
    }
}
