import CoreMetrics
import Prometheus

/// The process's metrics backend. The libraries (store, wheel, broker) only emit through
/// swift-metrics, which does nothing until a backend is bootstrapped; bootstrapping is the
/// executable's job (`chime serve` calls `bootstrap()` before opening the broker, so the
/// metric objects the engine makes when it opens already point at the registry).
///
/// swift-metrics can be bootstrapped once per process: `bootstrap()` does it on the first
/// call and returns the same registry on every later one, so several servers (or tests)
/// in one process share it. Nothing else in the process may call
/// `MetricsSystem.bootstrap`.
public enum ChimeMetrics {
    /// The registry `/metrics` renders, with swift-metrics bootstrapped to feed it.
    public static func bootstrap() -> PrometheusCollectorRegistry { shared }

    /// A Swift `static let` is initialised once, on first use, safely across threads.
    private static let shared: PrometheusCollectorRegistry = {
        let registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.durationHistogramBuckets = [
            "chime_fire_lateness_seconds": latenessBuckets,
            "chime_fsync_seconds": fsyncBuckets,
        ]
        MetricsSystem.bootstrap(factory)
        return registry
    }()

    /// Fire lateness: 1 ms (the wheel's resolution) to 10 s; later lands in +Inf.
    static let latenessBuckets: [Duration] = [
        .milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50),
        .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .milliseconds(2_500), .seconds(5), .seconds(10),
    ]

    /// fdatasync: tens of microseconds (a fast NVMe, little data) to a second (a stalled disk).
    static let fsyncBuckets: [Duration] = [
        .microseconds(50), .microseconds(100), .microseconds(250), .microseconds(500), .milliseconds(1), .microseconds(2_500),
        .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250),
        .milliseconds(500), .seconds(1),
    ]
}
