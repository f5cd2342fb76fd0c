import ChimeBroker
import ChimeSchedule
import ChimeProtocol
import Hummingbird
import NIOCore
import Prometheus
import Synchronization

/// The admin API's endpoints over the engine's read-only calls. Shapes: docs/formats.md,
/// "admin API v1". Times go out twice: milliseconds since the epoch (`…At`) and ISO-8601
/// (`…AtISO`); 64-bit member ids as strings.
struct AdminRoutes: Sendable {
    let broker: Broker
    let registry: PrometheusCollectorRegistry?
    let connections: (@Sendable () -> ConnectionGauges)?
    let gauges: ScrapedGauges?

    init(broker: Broker, registry: PrometheusCollectorRegistry?, connections: (@Sendable () -> ConnectionGauges)?) {
        self.broker = broker
        self.registry = registry
        self.connections = connections
        gauges = registry.map(ScrapedGauges.init)
    }

    func register(on router: Router<AdminRequestContext>) {
        router.get("/health") { _, _ in health() }
        router.get("/v1/topics") { _, context in Self.json(.object([("topics", .array(try await topics(context.caller)))])) }
        router.get("/v1/topics/:topic") { _, context in Self.json(try await topic(try context.parameters.require("topic"), context.caller)) }
        router.get("/v1/groups") { _, context in Self.json(.object([("groups", .array(try await groups(context.caller)))])) }
        router.get("/v1/groups/:group") { _, context in Self.json(try await group(try context.parameters.require("group"), context.caller)) }
        router.get("/v1/jobs/:id") { request, context in
            Self.json(try await job(try context.parameters.require("id"), group: request.uri.queryParameters["group"].map(String.init), context.caller))
        }
        router.get("/v1/schedules") { _, context in Self.json(.object([("schedules", .array(try await schedules(context.caller)))])) }
        router.get("/v1/schedules/:name") { request, context in
            let upcoming = request.uri.queryParameters["upcoming"].flatMap { Int(String($0)) } ?? 5
            return Self.json(try await schedule(try context.parameters.require("name"), upcoming: upcoming, context.caller))
        }
        router.get("/metrics") { _, context in
            try context.caller.require(.read, topic: nil)
            return try await metrics()
        }
        registerV2(on: router)
    }

    static func json(_ value: JSONValue, status: HTTPResponse.Status = .ok) -> Response {
        Response(
            status: status, headers: [.contentType: "application/json; charset=utf-8"],
            body: ResponseBody(byteBuffer: ByteBuffer(string: value.text)))
    }

    /// `{"status":"ok","version":"…"}`, or 503 `{"status":"degraded","failedPartitions":[…],"version":"…"}`
    /// while a partition refuses appends after a failed write or sync (a restart reopens its logs).
    func health() -> Response {
        let failed = broker.failedPartitions
        guard failed.isEmpty else {
            return Self.json(
                .object([
                    ("status", .string("degraded")), ("failedPartitions", .array(failed.map { .string($0) })),
                    ("version", .string(ChimeVersion.current)),
                ]),
                status: .serviceUnavailable)
        }
        return Self.json(.object([("status", .string("ok")), ("version", .string(ChimeVersion.current))]))
    }

    // MARK: - Topics

    /// The topics the caller sees, each with its totals; `names` limits it to those (a page).
    func topics(_ caller: AdminCaller, names: [TopicInfo]? = nil) async throws -> [JSONValue] {
        try caller.require(.read)
        var out: [JSONValue] = []
        for t in names ?? broker.listTopics() where caller.sees(t.name) {
            let partitions: [PartitionStats]
            do {
                partitions = try await broker.partitionStats(topic: t.name)
            } catch let error as BrokerError where error.code == .unknownTopic {
                continue  // deleted between the listing and its stats
            }
            out.append(.object([("name", .string(t.name)), ("id", .int(Int(t.id))), ("partitions", .int(t.settings.partitions))] + Self.totals(partitions)))
        }
        return out
    }

    func topic(_ name: String, _ caller: AdminCaller) async throws -> JSONValue {
        try caller.require(.read, topic: name)
        guard let info = broker.listTopics().first(where: { $0.name == name }) else {
            throw BrokerError(.unknownTopic, "topic \(name) does not exist")
        }
        let partitions = try await broker.partitionStats(topic: name)
        let s = info.settings
        let settings: JSONValue = .object([
            ("partitions", .int(s.partitions)), ("retentionMilliseconds", .int(s.retentionMilliseconds)),
            ("retentionBytes", .int(s.retentionBytes)), ("maxMessageBytes", .int(s.maxMessageBytes)), ("maxAttempts", .int(s.maxAttempts)),
            ("dedupWindowMilliseconds", .int(s.dedupWindowMilliseconds)),
        ])
        let each: [JSONValue] = partitions.map { p in
            .object([
                ("partition", .int(p.partition)), ("readyStart", .int(p.readyStart)), ("logEnd", .int(p.logEnd)),
                ("ready", .int(p.logEnd - p.readyStart)), ("readyBytes", .int(p.readyBytes)), ("scheduled", .int(p.scheduled)),
                ("nextDueAt", .int(p.nextDue)), ("nextDueAtISO", .iso8601(p.nextDue)), ("timerBytes", .int(p.timerBytes)),
            ])
        }
        return .object(
            [("name", .string(info.name)), ("id", .int(Int(info.id))), ("settings", settings), ("wheel", .string(info.wheel))]
                + Self.totals(partitions) + [("partitions", .array(each))])
    }

    /// A topic's sums: messages kept in its ready logs, scheduled ones pending, the
    /// earliest next due time, and bytes of both logs on disk.
    private static func totals(_ partitions: [PartitionStats]) -> [(String, JSONValue)] {
        let nextDue = partitions.compactMap(\.nextDue).min()
        return [
            ("ready", .int(partitions.reduce(Int64(0)) { $0 + $1.logEnd - $1.readyStart })),
            ("scheduled", .int(partitions.reduce(0) { $0 + $1.scheduled })),
            ("nextDueAt", .int(nextDue)), ("nextDueAtISO", .iso8601(nextDue)),
            ("diskBytes", .int(partitions.reduce(Int64(0)) { $0 + $1.readyBytes + $1.timerBytes })),
        ]
    }

    // MARK: - Jobs

    /// Where a message (a job) stands, per group: `Broker.jobStatus`.
    func job(_ text: String, group: String?, _ caller: AdminCaller) async throws -> JSONValue {
        let id = try Self.messageID(text)
        try caller.require(.read, topic: broker.topicName(id: id.topicID))
        let statuses = try await broker.jobStatus(id, group: group)
        return .object([("id", .string(id.description)), ("statuses", .array(statuses.map(Self.json)))])
    }

    static func json(_ status: JobStatus) -> JSONValue {
        var fields: [(String, JSONValue)] = [("group", status.group.map(JSONValue.string) ?? .null)]
        func time(_ name: String, _ ms: Int64?) { fields += [(name, .int(ms)), (name + "ISO", .iso8601(ms))] }
        switch status.state {
        case .scheduled(let dueAt):
            fields.append(("state", .string("scheduled")))
            time("dueAt", dueAt)
        case .ready: fields.append(("state", .string("ready")))
        case .running(let member, let attempt, let deadline):
            fields += [("state", .string("running")), ("member", .id(member)), ("attempt", .int(attempt))]
            time("leaseDeadlineAt", deadline)
        case .retrying(let next, let attempts, let error):
            fields.append(("state", .string("retrying")))
            time("nextAttemptAt", next)
            fields += [("attempts", .int(attempts)), ("lastError", error.map(JSONValue.string) ?? .null)]
        case .succeeded: fields.append(("state", .string("succeeded")))
        case .finished: fields.append(("state", .string("finished")))
        case .dead(let reason, let attempts): fields += [("state", .string("dead")), ("reason", .string(reason)), ("attempts", .int(attempts))]
        case .cancelled: fields.append(("state", .string("cancelled")))
        case .aborted(let whileRunning, let reason):
            fields += [("state", .string("aborted")), ("whileRunning", .bool(whileRunning)), ("reason", .string(reason))]
        case .waiting(let until, let callback):
            fields.append(("state", .string(callback ? "awaiting-callback" : "snoozed")))
            time(callback ? "timeoutAt" : "wakesAt", until)
        }
        return .object(fields)
    }

    // MARK: - Schedules

    func schedules(_ caller: AdminCaller) async throws -> [JSONValue] {
        try caller.require(.read)
        return await broker.schedules().filter { caller.sees($0.schedule.target.topic) }.map(Self.json)
    }

    /// One schedule with its next `upcoming` (0–1,000) occurrences after the planned one.
    func schedule(_ name: String, upcoming: Int, _ caller: AdminCaller) async throws -> JSONValue {
        guard (0...1_000).contains(upcoming) else { throw BrokerError(.invalidArgument, "upcoming must be 0 to 1000") }
        let info = try await broker.schedule(name, upcoming: upcoming)
        try caller.require(.read, topic: info.schedule.target.topic)
        return Self.json(info)
    }

    static func json(_ info: ScheduleInfo) -> JSONValue {
        let s = info.schedule
        let o = s.options
        var fields: [(String, JSONValue)] = [("name", .string(s.name))]
        switch s.spec {
        case .cron(let expression, let zone): fields += [("cron", .string(expression)), ("timeZone", .string(zone))]
        case .every(let interval, let anchor): fields += [("everyMs", .int(interval)), ("anchorMs", .int(anchor))]
        case .fixedRate(let interval, let delay, let anchor):
            fields += [("fixedRateMs", .int(interval)), ("initialDelayMs", .int(delay)), ("anchorMs", .int(anchor))]
        case .fixedDelay(let interval, let group): fields += [("fixedDelayMs", .int(interval)), ("group", .string(group))]
        case .once(let at): fields += [("onceAt", .int(at)), ("onceAtISO", .iso8601(at))]
        }
        func time(_ name: String, _ ms: Int64?) { fields += [(name, .int(ms)), (name + "ISO", .iso8601(ms))] }
        fields += [("topic", .string(s.target.topic)), ("partition", .int(info.partition)), ("revision", .int(s.revision))]
        fields += [("misfire", .string(o.misfire.rawValue)), ("catchUpWindowMs", .int(o.catchUpWindowMilliseconds)), ("jitterMs", .int(o.jitterMilliseconds))]
        time("startAt", o.startAt)
        time("endAt", o.endAt)
        fields.append(("paused", .bool(o.paused)))
        time("nextOccurrence", info.nextOccurrence)
        time("nextFireAt", info.nextFireAt)
        time("lastOccurrence", info.lastOccurrence)
        fields.append(("idle", info.idle.map(JSONValue.string) ?? .null))
        if !info.upcoming.isEmpty { fields.append(("upcoming", .array(info.upcoming.map { .iso8601($0) }))) }
        return .object(fields)
    }

    // MARK: - Groups

    /// The groups the caller sees (those of topics it sees); `names` limits it to those (a page).
    func groups(_ caller: AdminCaller, names: [String]? = nil) async throws -> [JSONValue] {
        try caller.require(.read)
        var out: [JSONValue] = []
        let listed: [String]
        if let names { listed = names } else { listed = try await visibleGroups(caller) }
        for name in listed {
            let stats: GroupStats
            do {
                stats = try await broker.groupStats(name)
            } catch let error as BrokerError where error.code == .unknownGroup {
                continue
            }
            out.append(.object([("name", .string(name)), ("generation", .int(stats.generation)), ("members", .int(stats.members))] + Self.totals(stats)))
        }
        return out
    }

    /// A group's stats, for a caller who sees every topic it reads (a group of no topic yet
    /// only for a grant without patterns).
    func visibleGroupStats(_ name: String, _ caller: AdminCaller) async throws -> GroupStats {
        // Internal groups (`__…`, the redrive reader) are not listed, so not shown either.
        guard !name.hasPrefix("__") else { throw BrokerError(.unknownGroup, "group \(name) does not exist") }
        let stats = try await broker.groupStats(name)
        let topics = Set(stats.partitions.map(\.topic))
        if topics.isEmpty { try caller.require(.read, topic: nil) }
        for t in topics { try caller.require(.read, topic: t) }
        return stats
    }

    func group(_ name: String, _ caller: AdminCaller) async throws -> JSONValue {
        let stats = try await visibleGroupStats(name, caller)
        let members = try await broker.groupMembers(name)
        let memberList: [JSONValue] = members.map { m in
            .object([
                ("id", .id(m.id)), ("name", .string(m.name)), ("topics", .array(m.topics.map { .string($0) })),
                ("lastSeenAt", .int(m.lastSeen)), ("lastSeenAtISO", .iso8601(m.lastSeen)),
                ("assignment", .array(m.assignment.map { .object([("topic", .string($0.topic)), ("partition", .int($0.partition))]) })),
            ])
        }
        let partitions: [JSONValue] = stats.partitions.map { p in
            .object([
                ("topic", .string(p.topic)), ("partition", .int(p.partition)), ("committed", .int(p.committed)),
                ("ackedAboveCommitted", .int(p.ackedAboveCommitted)), ("lag", .int(p.lag)), ("inFlight", .int(p.inFlight)),
                ("retriesPending", .int(p.retriesPending)), ("deadLettered", .int(p.deadLettered)), ("owner", p.owner.map(JSONValue.id) ?? .null),
                ("trackedBytes", .int(p.trackedBytes)),
            ])
        }
        return .object(
            [("name", .string(name)), ("generation", .int(stats.generation)), ("deadLetterTopic", .string(name + ".dlq"))]
                + Self.totals(stats) + [("members", .array(memberList)), ("partitions", .array(partitions))])
    }

    /// A group's sums over its partitions.
    private static func totals(_ stats: GroupStats) -> [(String, JSONValue)] {
        let p = stats.partitions
        return [
            ("lag", .int(p.reduce(Int64(0)) { $0 + $1.lag })), ("inFlight", .int(p.reduce(0) { $0 + $1.inFlight })),
            ("retriesPending", .int(p.reduce(0) { $0 + $1.retriesPending })), ("deadLettered", .int(p.reduce(0) { $0 + $1.deadLettered })),
        ]
    }

    // MARK: - Metrics

    /// The registry in Prometheus text format, after the gauges read at scrape time (disk
    /// bytes, scheduled messages, group lag, connections) are brought up to date. A topic
    /// or group whose stats fail is left out of those gauges rather than failing the scrape:
    /// the counters and histograms still go out.
    func metrics() async throws -> Response {
        guard let registry, let gauges else { throw AdminError(.notFound, "metricsDisabled", "this server was started without a metrics registry") }
        var disk: [(labels: [(String, String)], value: Double)] = []
        var scheduled: [(labels: [(String, String)], value: Double)] = []
        for t in broker.listTopics() {
            guard let partitions = try? await broker.partitionStats(topic: t.name) else { continue }
            disk.append(([("topic", t.name)], Double(partitions.reduce(Int64(0)) { $0 + $1.readyBytes + $1.timerBytes })))
            scheduled.append(([("topic", t.name)], Double(partitions.reduce(0) { $0 + $1.scheduled })))
        }
        var lag: [(labels: [(String, String)], value: Double)] = []
        for g in broker.listGroups() {
            guard let stats = try? await broker.groupStats(g) else { continue }
            var byTopic: [String: Int64] = [:]
            for p in stats.partitions { byTopic[p.topic, default: 0] += p.lag }
            for (topic, value) in byTopic.sorted(by: { $0.key < $1.key }) { lag.append(([("group", g), ("topic", topic)], Double(value))) }
        }
        let connectionGauges = connections?()
        let failed = broker.failedPartitions.count
        let bytes = ScrapedGauges.rendering.withLock { _ in
            gauges.set(ScrapedGauges.failedPartitions, Double(failed))
            gauges.set(ScrapedGauges.disk, disk)
            gauges.set(ScrapedGauges.scheduled, scheduled)
            gauges.set(ScrapedGauges.lag, lag)
            if let c = connectionGauges {
                gauges.set(ScrapedGauges.connections, Double(c.open))
                gauges.set(ScrapedGauges.unauthenticatedConnections, Double(c.unauthenticated))
                gauges.set(ScrapedGauges.unwrittenReplyBytes, Double(c.unwrittenReplyBytes))
                gauges.set(ScrapedGauges.requestsRunning, Double(c.requestsRunning))
            }
            var bytes: [UInt8] = []
            registry.emit(into: &bytes)
            return bytes
        }
        return Response(
            status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"], body: ResponseBody(byteBuffer: ByteBuffer(bytes: bytes)))
    }
}

/// Gauges whose values are read from the engine when `/metrics` is scraped rather than
/// kept up to date on every change: nothing on the hot path pays for them. A series whose
/// topic or group has gone is removed from the registry.
final class ScrapedGauges: Sendable {
    /// `chime_<name>_<unit>`, and the help line.
    struct Metric: Sendable {
        let name: String
        let unit: String
        let help: String
        var descriptor: MetricNameDescriptor { MetricNameDescriptor(namespace: "chime", metricName: name, unitName: unit, helpText: help) }
    }

    static let disk = Metric(name: "disk", unit: "bytes", help: "Bytes of a topic's ready and timer logs on disk.")
    static let scheduled = Metric(name: "scheduled", unit: "messages", help: "Scheduled messages of a topic pending in its timing wheels.")
    static let lag = Metric(name: "group_lag", unit: "messages", help: "Messages of a topic's ready logs a group has not acked.")
    static let connections = Metric(name: "connections", unit: "", help: "Open broker-protocol connections.")
    static let unauthenticatedConnections = Metric(
        name: "connections_unauthenticated", unit: "", help: "Broker-protocol connections whose hello has not been accepted.")
    static let unwrittenReplyBytes = Metric(
        name: "unwritten_reply", unit: "bytes", help: "Reply bytes held for broker-protocol clients and not yet written to their sockets.")
    static let requestsRunning = Metric(name: "requests_running", unit: "", help: "Broker-protocol requests whose work has not finished.")
    static let failedPartitions = Metric(
        name: "partitions_failed", unit: "", help: "Partitions whose log failed a write or sync: they refuse appends until a restart.")

    /// One scrape at a time sets its values and renders: what a scrape sets is what it shows,
    /// also when several admin servers share the process's registry (tests do).
    static let rendering = Mutex(())

    private let registry: PrometheusCollectorRegistry
    /// Per metric name, the series set at the last scrape, by their label values.
    private let series = Mutex<[String: [[String]: Gauge]]>([:])

    init(registry: PrometheusCollectorRegistry) {
        self.registry = registry
    }

    /// Sets a labelled metric to exactly these series.
    func set(_ metric: Metric, _ values: [(labels: [(String, String)], value: Double)]) {
        series.withLock { all in
            var now: [[String]: Gauge] = [:]
            for (labels, value) in values {
                let gauge = registry.makeGauge(descriptor: metric.descriptor, labels: labels)
                gauge.set(value)
                now[labels.map(\.1)] = gauge
            }
            for (key, gauge) in all[metric.name] ?? [:] where now[key] == nil { registry.unregisterGauge(gauge) }
            all[metric.name] = now
        }
    }

    /// Sets an unlabelled metric.
    func set(_ metric: Metric, _ value: Double) {
        registry.makeGauge(descriptor: metric.descriptor).set(value)
    }
}
