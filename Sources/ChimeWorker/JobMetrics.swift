import Metrics

/// A job type's series (swift-metrics; Prometheus names through the process's metrics
/// backend): `chime_worker_jobs_{started,succeeded,failed,retried,dead_lettered,parked}_total`,
/// `chime_worker_job_duration_seconds` and `chime_worker_jobs_running`, each labelled with
/// `job`. Made once per registration, not per job.
final class JobMetrics: Sendable {
    private let startedCount: Counter
    private let succeededCount: Counter
    private let failedCount: Counter
    private let retriedCount: Counter
    private let deadLetteredCount: Counter
    private let parkedCount: Counter
    private let duration: Metrics.Timer
    private let running: Gauge
    private let runningCount = RunningCount()

    init(job: String) {
        let labels = [("job", job)]
        startedCount = Counter(label: "chime_worker_jobs_started_total", dimensions: labels)
        succeededCount = Counter(label: "chime_worker_jobs_succeeded_total", dimensions: labels)
        failedCount = Counter(label: "chime_worker_jobs_failed_total", dimensions: labels)
        retriedCount = Counter(label: "chime_worker_jobs_retried_total", dimensions: labels)
        deadLetteredCount = Counter(label: "chime_worker_jobs_dead_lettered_total", dimensions: labels)
        parkedCount = Counter(label: "chime_worker_jobs_parked_total", dimensions: labels)
        duration = Metrics.Timer(label: "chime_worker_job_duration_seconds", dimensions: labels, preferredDisplayUnit: .seconds)
        running = Gauge(label: "chime_worker_jobs_running", dimensions: labels)
    }

    func started() {
        startedCount.increment()
        running.record(runningCount.add(1))
    }

    func finished(after elapsed: Duration) {
        duration.recordNanoseconds(elapsed.components.seconds * 1_000_000_000 + elapsed.components.attoseconds / 1_000_000_000)
        running.record(runningCount.add(-1))
    }

    func succeeded() { succeededCount.increment() }
    func failed() { failedCount.increment() }
    func retried() { retriedCount.increment() }
    func deadLettered() { deadLetteredCount.increment() }
    /// Parked in the broker's wheel: a continuation, or waiting for a callback.
    func parked() { parkedCount.increment() }
}

import Synchronization

/// Jobs of one type running now (the gauge records its value).
final class RunningCount: Sendable {
    private let count = Atomic<Int>(0)
    func add(_ n: Int) -> Int { count.add(n, ordering: .relaxed).newValue }
}
