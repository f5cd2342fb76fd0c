import ChimeClient
import ChimeSchedule
import Foundation

/// Schedules a worker makes sure of when it starts: each job value is published by the
/// broker at every occurrence (the broker fires it, exactly once per occurrence, whether
/// or not a worker is running). Every worker of a fleet may register the same schedule:
/// the broker keeps one, and changes it only when a definition differs.
extension ChimeWorker {
    /// Has the broker publish `job` to `topic` on a cron spec (5 or 6 fields, a macro such
    /// as `@daily`, or `@every 30s`) in `timeZone`. `name` defaults to the job's name.
    /// Checked here: a spec or zone that does not parse throws at once.
    public func schedule<J: ChimeJob>(
        _ job: J, cron: String, timeZone: String = "UTC", to topic: String, name: String? = nil, options: ScheduleOptions = ScheduleOptions()
    ) throws {
        try addSchedule(job, spec: ScheduleSpec.parse(cron, zone: timeZone), to: topic, name: name, options: options)
    }

    /// Has the broker publish `job` to `topic` every `interval` (on multiples of it since
    /// the epoch, so every worker asks for the same schedule).
    public func schedule<J: ChimeJob>(
        _ job: J, every interval: Duration, to topic: String, name: String? = nil, options: ScheduleOptions = ScheduleOptions()
    ) throws {
        let ms = milliseconds(interval)
        try addSchedule(job, spec: .every(intervalMs: ms, anchorMs: 0), to: topic, name: name, options: options)
    }

    private func addSchedule<J: ChimeJob>(_ job: J, spec: ScheduleSpec, to topic: String, name: String?, options: ScheduleOptions) throws {
        _ = try spec.timetable()
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]  // the same bytes in every worker: one definition
        let target = ScheduleTarget(
            topic: topic, headers: [ScheduleHeader(name: JobHeader.name, value: Array(J.jobName.utf8))], body: Array(try encoder.encode(job)))
        addSchedule(Schedule(name: name ?? J.jobName, spec: spec, target: target, options: options))
    }

    /// Creates or updates the registered schedules on the broker (at `run`).
    func ensureSchedules(_ schedules: [Schedule]) async throws {
        for s in schedules {
            let info = try await client.schedule(s, .createOrUpdate)
            logger.info(
                "schedule ensured", metadata: ["schedule": "\(s.name)", "revision": "\(info.schedule.revision)", "next": "\(info.nextOccurrence.map(String.init) ?? "-")"])
        }
    }
}
