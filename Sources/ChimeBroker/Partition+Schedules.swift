import ChimeSchedule
import ChimeStore
import ChimeWheel
import CoreMetrics
import Synchronization

/// A partition's schedules at work: each has one pending timer entry, its next occurrence,
/// whose destination is "schedule occurrence". The wheel hands it into the ready log
/// exactly once (its hand-over number goes with the append, like every fired message);
/// the sink then tells the partition, which plans the next occurrence: one timer append,
/// then a `planned` record in the table. A crash between the two leaves the new entry in
/// the timer log's tail, where `recoverSchedules` finds it; a crash before the timer
/// append leaves the fired plan gone from the wheel, and recovery plans the next one.
extension Partition {
    /// The occurrence entry for `occurrence` of `schedule`, due at `fireAt`.
    static func occurrenceMessage(_ schedule: Schedule, occurrence: Int64, fireAt: Int64, now: Int64) -> ScheduledMessage {
        var headers = occurrenceHeaders(schedule, occurrence)
        headers.append(RecordHeader(name: ReservedHeader.dedup, value: Schedule.dedupKey(name: schedule.name, occurrence: occurrence)))
        var revision: [UInt8] = []
        LittleEndian.append(schedule.revision, to: &revision)
        headers.append(RecordHeader(name: ReservedHeader.scheduleRevision, value: revision))
        var destination = PartitionFireSink.scheduleOccurrence
        if let group = schedule.watchedGroup {
            headers.append(RecordHeader(name: ReservedHeader.scheduleWatch, value: [overlapCode(schedule.options.overlap)] + Array(group.utf8)))
            destination = PartitionFireSink.watchedOccurrence
        }
        return ScheduledMessage(
            dueAt: fireAt, publishedAt: now, destination: destination, key: schedule.target.key, headers: headers, body: schedule.target.body)
    }

    private static func overlapCode(_ p: OverlapPolicy) -> UInt8 {
        switch p {
        case .allow: 0
        case .skip: 1
        case .bufferOne: 2
        }
    }

    /// A watched occurrence's name, time, overlap policy and group, from its headers.
    static func watchFields(_ headers: [RecordHeader]) -> (name: String, occurrence: Int64, overlap: OverlapPolicy, group: String)? {
        guard let fields = occurrenceFields(headers), let w = headers.first(where: { $0.name == ReservedHeader.scheduleWatch }), let code = w.value.first,
            let group = String(validating: w.value.dropFirst(), as: UTF8.self)
        else { return nil }
        let overlap: OverlapPolicy = code == 1 ? .skip : code == 2 ? .bufferOne : .allow
        return (fields.name, fields.occurrence, overlap, group)
    }

    /// What every occurrence's message carries: the target's headers, the schedule's name
    /// and the occurrence's time.
    static func occurrenceHeaders(_ schedule: Schedule, _ occurrence: Int64) -> [RecordHeader] {
        var headers = schedule.target.headers.map { RecordHeader(name: $0.name, value: $0.value) }
        headers.append(RecordHeader(name: ReservedHeader.schedule, value: Array(schedule.name.utf8)))
        headers.append(RecordHeader(name: ReservedHeader.occurrence, value: Array(String(occurrence).utf8)))
        return headers
    }

    /// Name, occurrence and revision of an occurrence entry, from its headers.
    static func occurrenceFields(_ headers: [RecordHeader]) -> (name: String, occurrence: Int64, revision: Int64)? {
        var name: String?
        var occurrence: Int64?
        var revision: Int64?
        for h in headers {
            switch h.name {
            case ReservedHeader.schedule: name = String(validating: h.value, as: UTF8.self)
            case ReservedHeader.occurrence: occurrence = String(validating: h.value, as: UTF8.self).flatMap { Int64($0) }
            case ReservedHeader.scheduleRevision where h.value.count == 8:
                revision = h.value.withUnsafeBytes { LittleEndian.load(Int64.self, $0, 0) }
            default: break
            }
        }
        guard let name, let occurrence, let revision else { return nil }
        return (name, occurrence, revision)
    }

    // MARK: - Planning

    /// Plans the next occurrence of each named schedule after `after` (nil: after now), in
    /// one timer append and one table append; the misfire policy's decisions are logged
    /// with their counts.
    func planSchedules(_ requests: [(name: String, after: Int64?)]) async throws {
        guard !requests.isEmpty else { return }
        let now = clock.now()
        var messages: [ScheduledMessage] = []
        var plans: [(name: String, plan: ScheduleTable.Plan)] = []
        var skipped: [MisfirePolicy: Int] = [:]
        var late = 0
        var capped = false
        for r in requests {
            guard let row = schedules.rows[r.name], !row.schedule.options.paused, row.plan == nil else { continue }
            let planner: SchedulePlanner
            do {
                planner = try plannerCache.planner(for: row.schedule)
            } catch {
                logger.error("a stored schedule no longer parses; not planned", metadata: ["schedule": "\(r.name)", "error": "\(error)"])
                continue
            }
            let decision = planner.next(after: r.after, now: now)
            if decision.skipped > 0 { skipped[row.schedule.options.misfire, default: 0] += decision.skipped }
            capped = capped || decision.countCapped
            guard case .plan(let occurrence, let fireAt) = decision.outcome else { continue }
            guard fireAt < dueLimit else {
                logger.warning("a schedule's next occurrence is past the wheel's range; not planned", metadata: ["schedule": "\(r.name)"])
                continue
            }
            if decision.catchingUp { late += 1 }
            messages.append(Self.occurrenceMessage(row.schedule, occurrence: occurrence, fireAt: fireAt, now: now))
            plans.append((r.name, ScheduleTable.Plan(occurrence: occurrence, fireAt: fireAt, timerID: -1, revision: row.schedule.revision)))
        }
        for (policy, count) in skipped {
            scheduleMetrics.missed(policy: policy, count: count)
            logger.info(
                "missed schedule occurrences skipped by the misfire policy",
                metadata: ["policy": "\(policy.rawValue)", "occurrences": "\(capped ? "at least " : "")\(count)"])
        }
        if late > 0 { logger.info("missed schedule occurrences fired late by the misfire policy", metadata: ["occurrences": "\(late)"]) }
        guard !messages.isEmpty else { return }
        let ids = try await loop.schedule(messages)
        for k in plans.indices { plans[k].plan.timerID = ids[k] }
        try schedules.planned(plans)
    }

    /// The sink handed these occurrences over (into the ready log, or held back or skipped
    /// by an overlap policy): the next ones are planned — for fixed delay, once the group
    /// settles this one. One whose entry is no longer its schedule's plan (updated, deleted
    /// meanwhile) plans nothing.
    func occurrencesFired(_ fired: [FiredOccurrence]) async {
        guard !closed else { return }
        let now = clock.now()
        var next: [(name: String, after: Int64?)] = []
        var published: [(name: String, occurrence: Int64, offset: Int64)] = []
        var latest: Int64 = 0
        var skipped = 0
        for o in fired {
            let f = o.message
            guard let fields = Self.occurrenceFields(f.message.headers), let row = schedules.rows[fields.name], row.plan?.timerID == f.id else { continue }
            schedules.fired(fields.name, occurrence: fields.occurrence)
            switch o.fate {
            case .published:
                latest = max(latest, now - f.dueAt)
                if let offset = o.readyOffset { published.append((fields.name, fields.occurrence, offset)) }
            case .skipped: skipped += 1
            case .buffered: break
            }
            // Fixed delay plans from the settling of this occurrence (`occurrenceSettled`).
            if case .fixedDelay = row.schedule.spec, o.fate == .published { continue }
            next.append((fields.name, fields.occurrence))
        }
        scheduleMetrics.fired(count: fired.count - skipped, latestMilliseconds: latest)
        if skipped > 0 {
            scheduleMetrics.skipped(count: skipped)
            logger.info("schedule occurrences skipped: the previous ones are not settled (overlap skip)", metadata: ["occurrences": "\(skipped)"])
        }
        do {
            try schedules.published(published)
        } catch {
            logger.error("recording published occurrences failed", metadata: ["error": "\(error)"])
        }
        do {
            try await planSchedules(next)
        } catch {
            // Each is planned again at the next start (recovery finds its plan gone).
            logger.error("planning the next schedule occurrences failed", metadata: ["schedules": "\(next.count)", "error": "\(error)"])
        }
    }

    /// A watched occurrence of `name` was settled by its group: fixed delay plans the next
    /// one now; `bufferOne` publishes the one it held back, and watches it in turn.
    func occurrenceSettled(_ name: String, buffered: FiredMessage?) async {
        guard !closed, let row = schedules.rows[name], let group = row.schedule.watchedGroup else { return }
        do {
            if case .fixedDelay = row.schedule.spec {
                guard row.plan == nil else { return }
                try await planSchedules([(name, clock.now())])
                return
            }
            guard let held = buffered, let fields = Self.occurrenceFields(held.message.headers) else { return }
            let published = try await publishOccurrences(name, [fields.occurrence])
            if let id = published.first?.id, id.kind == .ready, !(published.first?.duplicate ?? true) {
                watch.published(name, occurrence: fields.occurrence, as: OccurrenceWatch.Key(group: group, partition: PartitionKey(topicID: topicID, partition: index), offset: id.value))
                try schedules.published([(name, fields.occurrence, id.value)])
            }
        } catch {
            logger.error("acting on a settled occurrence failed", metadata: ["schedule": "\(name)", "error": "\(error)"])
        }
    }

    /// Brings every schedule back to one pending occurrence after opening, before the
    /// firing loop runs: plans found in the timer log's tail are adopted, cancels begun are
    /// done again, fired plans are followed by the next occurrence, and plans of a time
    /// that passed while the broker was down go through the misfire policy.
    func recoverSchedules() async {
        guard !schedules.rows.isEmpty || !schedules.orphans.isEmpty else { return }
        do {
            try await recoverSchedulesOrThrow()
        } catch {
            logger.error("recovering schedules failed; they fire again after the next start", metadata: ["error": "\(error)"])
        }
    }

    private func recoverSchedulesOrThrow() async throws {
        // Plans whose `planned` record did not reach the disk.
        var adopted: [(name: String, plan: ScheduleTable.Plan)] = []
        let from = max(timerLog.startOffset, schedules.lastPlannedTimerID)
        let lastRecorded = schedules.lastPlannedTimerID
        try timerLog.scan(from: from) { entries, readFrom in
            for e in entries where e.kind == .message && e.position >= readFrom && e.position > lastRecorded {
                guard let m = try? e.message(), m.destination == PartitionFireSink.scheduleOccurrence,
                    let fields = Self.occurrenceFields(m.headers), schedules.rows[fields.name] != nil
                else { continue }
                adopted.append(
                    (fields.name, ScheduleTable.Plan(occurrence: fields.occurrence, fireAt: m.dueAt, timerID: e.position, revision: fields.revision)))
            }
        }
        let latest = Dictionary(adopted.map { ($0.name, $0) }, uniquingKeysWith: { $0.plan.timerID > $1.plan.timerID ? $0 : $1 })
        try schedules.planned(Array(latest.values))
        for id in schedules.takeOrphans() { try? await loop.cancel(id) }

        let now = clock.now()
        let wheelTime = await loop.wheelTime
        var replan: [(name: String, after: Int64?)] = []
        var cancels: [String] = []
        for (name, row) in schedules.rows.sorted(by: { $0.key < $1.key }) {
            if let id = row.cancelling {
                try? await loop.cancel(id)
                schedules.cancelled(name)
            }
            // A watched schedule's last occurrence: out again until its group settles it.
            let settled = await restoreWatch(name, row)
            if case .fixedDelay = row.schedule.spec, !row.schedule.options.paused {
                // Waiting for its group: planned once the occurrence out is settled.
                var waiting = row.plan == nil
                if let plan = row.plan, plan.fireAt <= wheelTime {
                    let state = try? await loop.state(of: plan.timerID)
                    waiting = state.map(Self.isGone) ?? true
                }
                if waiting {
                    if row.plan != nil { schedules.fired(name, occurrence: row.plan!.occurrence) }
                    if settled != false { replan.append((name, row.published == nil ? nil : now)) }
                    continue
                }
            }
            guard let plan = row.plan else {
                if !row.schedule.options.paused { replan.append((name, nil)) }
                continue
            }
            if row.schedule.options.paused || plan.revision != row.schedule.revision {
                cancels.append(name)
                if !row.schedule.options.paused { replan.append((name, nil)) }
                continue
            }
            // An entry due after the wheel time has not fired; one at or before it may have.
            let state = plan.fireAt > wheelTime ? .pending(dueAt: plan.fireAt) : try await loop.state(of: plan.timerID)
            switch state {
            case .pending, .beingFired:
                guard plan.fireAt < now - Schedule.misfireThresholdMilliseconds else { continue }
                // Missed while the broker was down: does the policy keep this occurrence?
                let planner = try plannerCache.planner(for: row.schedule)
                if case .plan(let occurrence, _) = planner.next(after: plan.occurrence - 1, now: now).outcome, occurrence == plan.occurrence {
                    continue
                }
                cancels.append(name)
                replan.append((name, plan.occurrence - 1))
            case .cancelled, .gone:
                schedules.fired(name, occurrence: plan.occurrence)
                replan.append((name, plan.occurrence))
            }
        }
        try await cancelPlans(cancels)
        try await planSchedules(replan)
        if !schedules.rows.isEmpty {
            logger.info("schedules recovered", metadata: ["schedules": "\(schedules.rows.count)", "replanned": "\(replan.count)"])
        }
    }

    private static func isGone(_ state: TimingWheel.MessageState) -> Bool {
        switch state {
        case .gone, .cancelled: true
        case .pending, .beingFired: false
        }
    }

    /// Puts a watched schedule's last published occurrence back in the watch unless its
    /// group has settled it; returns whether it was settled (nil: nothing to ask about).
    private func restoreWatch(_ name: String, _ row: ScheduleTable.Row) async -> Bool? {
        guard let group = row.schedule.watchedGroup, let published = row.published, let check = settledCheck.withLock({ $0 }) else { return nil }
        let id = MessageID(topicID: topicID, partition: index, kind: .ready, value: published.offset)
        guard let settled = await check(id, group) else { return nil }
        if !settled {
            watch.published(
                name, occurrence: published.occurrence, as: OccurrenceWatch.Key(group: group, partition: PartitionKey(topicID: topicID, partition: index), offset: published.offset))
        }
        return settled
    }

    /// Cancels the named schedules' plans: `unplanned` first, then the wheel's cancel (one
    /// already firing fires; its occurrence is then no longer the plan and plans nothing).
    func cancelPlans(_ names: [String]) async throws {
        let plans = names.compactMap { name in schedules.rows[name]?.plan.map { (name, $0) } }
        guard !plans.isEmpty else { return }
        try schedules.unplanned(plans.map(\.0))
        for (name, plan) in plans {
            do {
                try await loop.cancel(plan.timerID, dueAt: plan.fireAt)
            } catch let error as WheelError where error.code == .notPending || error.code == .beingFired {
                // Fired, or firing: nothing left to cancel.
            }
            schedules.cancelled(name)
        }
    }

    // MARK: - Operations (the broker serialises them per schedule name)

    /// Stores `schedule` (a create or an update): a plan made under an older revision is
    /// replaced by the new definition's first occurrence after now.
    func defineSchedule(_ schedule: Schedule) async throws -> ScheduleInfo {
        guard !closed else { throw BrokerError(.closed, "partition \(topic)/\(index) is closed") }
        try schedules.define(schedule)
        watch.forget(schedule.name)
        try await cancelPlans([schedule.name])
        if !schedule.options.paused { try await planSchedules([(schedule.name, nil)]) }
        return scheduleInfo(schedule.name, upcoming: 0)!
    }

    func deleteSchedule(_ name: String) async throws {
        guard !closed else { throw BrokerError(.closed, "partition \(topic)/\(index) is closed") }
        guard schedules.rows[name] != nil else { throw BrokerError(.unknownSchedule, "no schedule is named \(name)") }
        try await cancelPlans([name])
        try schedules.delete(name)
        watch.forget(name)
    }

    /// Publishes occurrence messages now (trigger: one at `now`; backfill: those of a past
    /// range), each with its dedup key: within the topic's dedup window an occurrence is
    /// published once, however often it is asked for.
    func publishOccurrences(_ name: String, _ occurrences: [Int64]) async throws -> [PublishedMessage] {
        guard let row = schedules.rows[name] else { throw BrokerError(.unknownSchedule, "no schedule is named \(name)") }
        let messages = occurrences.map { occurrence in
            OutgoingMessage(
                key: row.schedule.target.key, headers: Self.occurrenceHeaders(row.schedule, occurrence), body: row.schedule.target.body,
                dedupKey: Schedule.dedupKey(name: name, occurrence: occurrence))
        }
        return try await publish(messages, producer: nil, asBroker: true)
    }

    /// The occurrences of `name` in `from...to` (at most `limit`).
    func scheduleOccurrences(_ name: String, from: Int64, to: Int64, limit: Int) throws -> [Int64] {
        guard let row = schedules.rows[name] else { throw BrokerError(.unknownSchedule, "no schedule is named \(name)") }
        let timetable = try plannerCache.planner(for: row.schedule).timetable
        var out: [Int64] = []
        var cursor = from - 1
        while out.count < limit, let next = timetable.next(after: cursor), next <= to {
            out.append(next)
            cursor = next
        }
        return out
    }

    var scheduleNames: [String] { Array(schedules.rows.keys) }

    func scheduleInfo(_ name: String, upcoming: Int) -> ScheduleInfo? {
        guard let row = schedules.rows[name] else { return nil }
        var info = ScheduleInfo(
            schedule: row.schedule, partition: index, nextOccurrence: row.plan?.occurrence, nextFireAt: row.plan?.fireAt,
            lastOccurrence: row.lastOccurrence, upcoming: [], idle: nil)
        if row.schedule.options.paused {
            info.idle = "paused"
        } else if row.plan == nil {
            info.idle = (try? plannerCache.planner(for: row.schedule).timetable.isTimeBased) == false ? "waiting for its group to settle the last occurrence" : "ended"
        }
        if upcoming > 0, let plan = row.plan, let timetable = try? plannerCache.planner(for: row.schedule).timetable {
            info.upcoming = timetable.nextOccurrences(after: plan.occurrence, count: min(upcoming, Timetable.maximumListedOccurrences))
            if let end = row.schedule.options.endAt { info.upcoming.removeAll { $0 > end } }
        }
        return info
    }

    func scheduleInfos(upcoming: Int) -> [ScheduleInfo] {
        schedules.rows.keys.sorted().compactMap { scheduleInfo($0, upcoming: upcoming) }
    }
}

/// Checked timetables by spec, so that planning does not parse a spec for every
/// occurrence: schedules sharing a spec (a thousand `@every 1s`) share one. Bounded,
/// emptied when full: memory does not grow with the number of schedules.
final class SchedulePlannerCache {
    static let capacity = 4_096
    private var timetables: [ScheduleSpec: Timetable] = [:]

    func planner(for schedule: Schedule) throws -> SchedulePlanner {
        if let t = timetables[schedule.spec] { return SchedulePlanner(schedule, timetable: t) }
        let t: Timetable
        do {
            t = try schedule.spec.timetable()
        } catch {
            throw BrokerError(.badSchedule, "schedule \(schedule.name): \(error)")
        }
        if timetables.count >= Self.capacity { timetables.removeAll(keepingCapacity: true) }
        timetables[schedule.spec] = t
        return SchedulePlanner(schedule, timetable: t)
    }
}

/// `chime_schedule_occurrences_total{topic}`, `chime_schedule_missed_total{topic,policy}`
/// and `chime_schedule_lateness_seconds{topic}`: per batch of occurrences planned after,
/// how late the latest of them was handed over (one observation per batch, like the
/// wheel's own lateness, never one lock per occurrence).
struct ScheduleMetrics {
    private let occurrences: Counter
    private let lateness: CoreMetrics.Timer
    private let missed: [MisfirePolicy: Counter]
    private let skippedByOverlap: Counter

    init(topic: String) {
        occurrences = Counter(label: "chime_schedule_occurrences_total", dimensions: [("topic", topic)])
        lateness = CoreMetrics.Timer(label: "chime_schedule_lateness_seconds", dimensions: [("topic", topic)])
        skippedByOverlap = Counter(label: "chime_schedule_skipped_total", dimensions: [("topic", topic)])
        missed = Dictionary(
            uniqueKeysWithValues: MisfirePolicy.allCases.map {
                ($0, Counter(label: "chime_schedule_missed_total", dimensions: [("topic", topic), ("policy", $0.rawValue)]))
            })
    }

    func fired(count: Int, latestMilliseconds ms: Int64) {
        guard count > 0 else { return }
        occurrences.increment(by: count)
        lateness.recordMilliseconds(max(0, ms))
    }

    func missed(policy: MisfirePolicy, count: Int) { missed[policy]!.increment(by: count) }

    func skipped(count: Int) { skippedByOverlap.increment(by: count) }

    /// Removes the series (their topic was deleted).
    func destroy() {
        occurrences.destroy()
        lateness.destroy()
        skippedByOverlap.destroy()
        for c in missed.values { c.destroy() }
    }
}

/// Occurrences handed over by the sink (on the firing loop) and not yet planned after.
final class FiredOccurrences: Sendable {
    private let fired = Mutex<[FiredOccurrence]>([])
    func add(_ more: [FiredOccurrence]) { fired.withLock { $0.append(contentsOf: more) } }
    func take() -> [FiredOccurrence] {
        fired.withLock { f in
            defer { f = [] }
            return f
        }
    }
}
