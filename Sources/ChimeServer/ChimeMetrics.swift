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
        MetricsSystem.bootstrap(HelpfulFactory(registry: registry))
        return registry
    }()

    /// The `# HELP` line of every metric the libraries emit: Prometheus tools (`promtool
    /// check metrics`) and dashboards expect one, and swift-metrics has no place for it.
    static let help: [String: String] = [
        "chime_published_messages_total": "Messages stored by publishes, counted once durable (duplicates not counted).",
        "chime_delivered_messages_total": "Deliveries a group handed out by fetches, redeliveries included.",
        "chime_acked_messages_total": "Acks of a group, counted once journaled durably.",
        "chime_fired_messages_total": "Scheduled messages the timing wheels handed over (fired 2 ms ahead, shown to consumers when due).",
        "chime_fire_lateness_seconds": "Per firing round, how late its most overdue message was handed over.",
        "chime_fsync_seconds": "Each fdatasync of a log's active segment.",
        "chime_locks_held": "Locks held now, per lock partition.",
        "chime_lock_waiters": "Acquirers waiting for a held lock, per lock partition.",
        "chime_locks_expired_total": "Lock grants that ended at their TTL without a release.",
        "chime_schedule_occurrences_total": "Schedule occurrences published.",
        "chime_schedule_lateness_seconds": "Per batch of occurrences, how late the latest was published.",
        "chime_schedule_skipped_total": "Occurrences skipped because the previous one was still running.",
        "chime_schedule_missed_total": "Occurrences missed while the broker was down, by misfire policy.",
        "chime_worker_jobs_started_total": "Jobs a worker started.",
        "chime_worker_jobs_succeeded_total": "Jobs that succeeded.",
        "chime_worker_jobs_failed_total": "Job attempts that failed.",
        "chime_worker_jobs_retried_total": "Failed jobs handed back for another attempt.",
        "chime_worker_jobs_dead_lettered_total": "Jobs dead-lettered after their last attempt.",
        "chime_worker_jobs_parked_total": "Jobs parked (continued later or awaiting a callback).",
        "chime_worker_job_duration_seconds": "How long each job attempt ran.",
        "chime_worker_jobs_running": "Jobs running now.",
    ]

    /// swift-prometheus's factory, with the help text above on the metrics that have one.
    struct HelpfulFactory: MetricsFactory {
        let registry: PrometheusCollectorRegistry
        let base: PrometheusMetricsFactory

        init(registry: PrometheusCollectorRegistry) {
            self.registry = registry
            var base = PrometheusMetricsFactory(registry: registry)
            base.durationHistogramBuckets = durationBuckets
            self.base = base
        }

        func makeCounter(label: String, dimensions: [(String, String)]) -> any CounterHandler {
            guard let help = help[label] else { return base.makeCounter(label: label, dimensions: dimensions) }
            return registry.makeCounter(name: label, labels: dimensions, help: help)
        }

        func makeRecorder(label: String, dimensions: [(String, String)], aggregate: Bool) -> any RecorderHandler {
            guard let help = help[label], !aggregate else { return base.makeRecorder(label: label, dimensions: dimensions, aggregate: aggregate) }
            return registry.makeGauge(name: label, labels: dimensions, help: help)
        }

        func makeTimer(label: String, dimensions: [(String, String)]) -> any TimerHandler {
            guard let help = help[label] else { return base.makeTimer(label: label, dimensions: dimensions) }
            let buckets = durationBuckets[label] ?? base.defaultDurationHistogramBuckets
            return registry.makeDurationHistogram(name: label, labels: dimensions, buckets: buckets, help: help)
        }

        func makeFloatingPointCounter(label: String, dimensions: [(String, String)]) -> any FloatingPointCounterHandler {
            base.makeFloatingPointCounter(label: label, dimensions: dimensions)
        }
        func makeMeter(label: String, dimensions: [(String, String)]) -> any MeterHandler { base.makeMeter(label: label, dimensions: dimensions) }
        func destroyCounter(_ handler: any CounterHandler) { base.destroyCounter(handler) }
        func destroyFloatingPointCounter(_ handler: any FloatingPointCounterHandler) { base.destroyFloatingPointCounter(handler) }
        func destroyRecorder(_ handler: any RecorderHandler) { base.destroyRecorder(handler) }
        func destroyMeter(_ handler: any MeterHandler) { base.destroyMeter(handler) }
        func destroyTimer(_ handler: any TimerHandler) { base.destroyTimer(handler) }
    }

    static let durationBuckets: [String: [Duration]] = [
        "chime_fire_lateness_seconds": latenessBuckets,
        "chime_fsync_seconds": fsyncBuckets,
    ]

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
