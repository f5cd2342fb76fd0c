import CoreMetrics

/// What a firing loop reports through swift-metrics: a no-op until the executable
/// bootstraps a backend (`chime serve` does). The metric objects are made once per loop,
/// and recorded once per round of firing that handed something over, never per message:
/// a round at 50,000 due/s holds dozens to thousands of messages, and a histogram
/// observation takes a lock.
public struct FiringMetrics: Sendable {
    /// `chime_fire_lateness_seconds`: per round, how late its most overdue message was
    /// handed over (wall clock after the round − due time). One observation per round, so
    /// the histogram counts rounds, and its quantiles bound per-message lateness from above.
    let lateness: CoreMetrics.Timer
    /// `chime_fired_messages_total`: scheduled messages handed over.
    let fired: Counter

    /// `topic` labels the series (empty for a wheel outside a broker): every series of a
    /// metric carries the same label names, as Prometheus registries require.
    public init(topic: String) {
        let labels = [("topic", topic)]
        lateness = CoreMetrics.Timer(label: "chime_fire_lateness_seconds", dimensions: labels)
        fired = Counter(label: "chime_fired_messages_total", dimensions: labels)
    }

    /// Removes the series from the backend (their topic was deleted: `/metrics` stops
    /// listing it).
    public func destroy() {
        lateness.destroy()
        fired.destroy()
    }
}
