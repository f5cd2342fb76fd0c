import ChimeBroker
import ChimeProtocol
import ChimeSchedule
import ChimeStore
import Foundation
import Hummingbird
import NIOCore

/// Admin API v2: reads and writes, described by the OpenAPI document it serves at
/// `/v2/openapi.json` (`AdminOpenAPI`; docs/openapi.json is a copy). Every write is a POST
/// or DELETE with a bearer token (`AdminCaller`); no GET changes anything. Lists come a
/// page at a time: `limit` (1–1,000, 100 by default) and the `next` cursor of the page
/// before (`after`).
extension AdminRoutes {
    func registerV2(on router: Router<AdminRequestContext>) {
        let v2 = router.group("/v2")
        v2.get("/openapi.json") { _, _ in
            Response(
                status: .ok, headers: [.contentType: "application/json; charset=utf-8"], body: ResponseBody(byteBuffer: ByteBuffer(string: AdminOpenAPI.document)))
        }

        // Topics and their messages.
        v2.get("/topics") { request, context in
            let page = try Page(request)
            let names = broker.listTopics().filter { context.caller.sees($0.name) }
            let (slice, next) = page.take(names, key: \.name)
            return Self.json(.object([("topics", .array(try await topics(context.caller, names: slice))), ("next", .string(next))]))
        }
        v2.post("/topics") { request, context in
            let body = try await Self.decode(NewTopic.self, request, context)
            try context.caller.require(.admin, topic: body.name)
            var settings = broker.options.defaultTopic
            try body.apply(to: &settings)
            _ = try broker.createTopic(body.name, settings: settings)
            return Self.json(try await topic(body.name, context.caller), status: .created)
        }
        v2.get("/topics/:topic") { _, context in Self.json(try await topic(try context.parameters.require("topic"), context.caller)) }
        v2.delete("/topics/:topic") { _, context in
            let name = try context.parameters.require("topic")
            try context.caller.require(.admin, topic: name)
            try await broker.deleteTopic(name)
            return Response(status: .noContent)
        }
        v2.get("/topics/:topic/partitions/:partition/messages") { request, context in
            let name = try context.parameters.require("topic")
            try context.caller.require(.read, topic: name)
            let partition = try Self.integer(try context.parameters.require("partition"), "partition", in: 0...Int64(Int32.max))
            let from = try request.uri.queryParameters["from"].map { try Self.integer(String($0), "from", in: 0...Int64.max) }
            let limit = try Page(request).limit
            let group = request.uri.queryParameters["group"].map(String.init)
            let messages = try await broker.peek(topic: name, partition: Int(partition), from: from, group: group, max: limit, maxBytes: Self.pageBytes)
            // The next page starts after this one's last message, while the log goes on (a
            // page cut short by its byte budget included).
            let logEnd = try await broker.partitionStats(topic: name).first { $0.partition == Int(partition) }?.logEnd ?? 0
            let next = messages.last.map { $0.offset + 1 }.flatMap { $0 < logEnd ? $0 : nil }
            return Self.json(.object([("messages", .array(messages.map(Self.message))), ("nextFrom", .int(next))]))
        }
        v2.get("/topics/:topic/scheduled") { request, context in
            let name = try context.parameters.require("topic")
            try context.caller.require(.read, topic: name)
            let limit = try Page(request).limit
            let now = broker.options.clock.now()
            let minute: Int64 = 60_000
            let u = try await broker.upcoming(topic: name, before: [now + minute, now + 60 * minute, now + 1_440 * minute], earliest: limit)
            return Self.json(
                .object([
                    ("dueWithinMinute", .int(u.countsBefore[0])), ("dueWithinHour", .int(u.countsBefore[1])), ("dueWithinDay", .int(u.countsBefore[2])),
                    ("countsAreLowerBounds", .bool(u.truncated)),
                    ("earliest", .array(u.earliest.map { .object([("id", .string($0.id.description)), ("dueAt", .int($0.dueAt)), ("dueAtISO", .iso8601($0.dueAt))]) })),
                ]))
        }
        v2.post("/topics/:topic/messages") { request, context in
            let name = try context.parameters.require("topic")
            let body = try await Self.decode(NewMessage.self, request, context)
            try context.caller.require(.publish, topic: name)
            let outgoing = try body.message()
            let partition = try body.partition.map { Int(try Self.integer(String($0), "partition", in: 0...Int64(Int32.max))) }
            guard let published = try await broker.publish(topic: name, [outgoing], partition: partition).first else {
                throw AdminError(.internalServerError, "internal", "the broker answered a publish of one message with none")
            }
            return Self.json(Self.json(published), status: published.duplicate ? .ok : .created)
        }

        // One message (a job) by id.
        v2.get("/messages/:id") { request, context in
            Self.json(try await job(try context.parameters.require("id"), group: request.uri.queryParameters["group"].map(String.init), context.caller))
        }
        v2.delete("/messages/:id") { _, context in
            let id = try Self.messageID(try context.parameters.require("id"))
            try context.caller.require(.publish, topic: broker.topicName(id: id.topicID))
            try await broker.cancel(id)
            return Response(status: .noContent)
        }
        v2.post("/messages/:id/reschedule") { request, context in
            let id = try Self.messageID(try context.parameters.require("id"))
            let body = try await Self.decode(Reschedule.self, request, context)
            try context.caller.require(.publish, topic: broker.topicName(id: id.topicID))
            let moved = try await broker.reschedule(id, to: try Self.due(delayMs: body.delayMs, at: body.at) ?? .after(0))
            return Self.json(.object([("id", .string(moved.description))]))
        }
        v2.post("/messages/:id/abort") { request, context in
            let id = try Self.messageID(try context.parameters.require("id"))
            let body = try await Self.decode(Reason.self, request, context, emptyAllowed: true)
            try context.caller.require(.admin, topic: broker.topicName(id: id.topicID))
            let outcome = try await broker.abort(id, reason: body.reason ?? "aborted from the admin API")
            let name: String =
                switch outcome {
                case .cancelled: "cancelled"
                case .signalled: "signalled"
                case .finished: "finished"
                }
            return Self.json(.object([("id", .string(id.description)), ("outcome", .string(name))]))
        }
        v2.post("/callbacks/:token/complete") { request, context in
            let text = try context.parameters.require("token")
            let body = try await Self.decode(CallbackPayload.self, request, context, emptyAllowed: true)
            guard let token = CallbackToken(text) else {
                throw BrokerError(.callbackClosed, "no callback waits for token \(text.prefix(100)): not a callback token (<id>.<due ms>.<16 hex digits>)")
            }
            try context.caller.require(.publish, topic: broker.topicName(id: token.id.topicID))
            try await broker.completeCallback(token, payload: try body.bytes())
            return Response(status: .noContent)
        }

        // Groups and their dead letters.
        v2.get("/groups") { request, context in
            let page = try Page(request)
            let (slice, next) = page.take(try await visibleGroups(context.caller), key: { $0 })
            return Self.json(.object([("groups", .array(try await groups(context.caller, names: slice))), ("next", .string(next))]))
        }
        v2.get("/groups/:group") { _, context in Self.json(try await group(try context.parameters.require("group"), context.caller)) }
        v2.get("/groups/:group/jobs") { request, context in
            let name = try context.parameters.require("group")
            _ = try await visibleGroupStats(name, context.caller)
            let jobs = try await broker.jobs(group: name, limit: try Page(request).limit)
            func list(_ items: [(id: MessageID, state: JobState)]) -> JSONValue {
                .array(items.map { item in
                    guard case .object(let fields) = Self.json(JobStatus(group: name, state: item.state)) else { return .null }
                    return .object([("id", .string(item.id.description))] + fields)
                })
            }
            return Self.json(.object([("running", list(jobs.running)), ("retrying", list(jobs.retrying)), ("waiting", list(jobs.waiting))]))
        }
        v2.get("/groups/:group/dead-letters") { request, context in
            let name = try context.parameters.require("group")
            _ = try await visibleGroupStats(name, context.caller)
            return Self.json(try await deadLetters(of: name, try Page(request)))
        }
        v2.post("/groups/:group/dead-letters/redrive") { request, context in
            let name = try context.parameters.require("group")
            let body = try await Self.decode(Redrive.self, request, context, emptyAllowed: true)
            try await requireGroupAdmin(name, context.caller)
            if let max = body.max, max < 1 { throw AdminError(.badRequest, "invalidArgument", "max must be at least 1") }
            if let ids = body.ids {
                guard body.max == nil else { throw AdminError(.badRequest, "invalidArgument", "give max or ids, not both") }
                guard ids.count <= 1_000 else { throw AdminError(.badRequest, "invalidArgument", "at most 1000 ids at once") }
                let moved = try await broker.settleDeadLetters(group: name, try ids.map(Self.messageID), .redrive)
                return Self.json(.object([("redriven", .int(moved))]))
            }
            return Self.json(.object([("redriven", .int(try await broker.redrive(group: name, max: body.max ?? .max)))]))
        }
        v2.delete("/groups/:group/dead-letters/:id") { _, context in
            let name = try context.parameters.require("group")
            let id = try Self.messageID(try context.parameters.require("id"))
            try await requireGroupAdmin(name, context.caller)
            guard try await broker.settleDeadLetters(group: name, [id], .delete) == 1 else {
                throw BrokerError(.unknownMessage, "\(id) is not a dead letter of \(name) any more (re-driven or deleted)")
            }
            return Response(status: .noContent)
        }

        // Schedules.
        v2.get("/schedules") { _, context in Self.json(.object([("schedules", .array(try await schedules(context.caller)))])) }
        v2.get("/schedules/:name") { request, context in
            let upcoming = try request.uri.queryParameters["upcoming"].map { Int(try Self.integer(String($0), "upcoming", in: 0...1_000)) } ?? 5
            return Self.json(try await schedule(try context.parameters.require("name"), upcoming: upcoming, context.caller))
        }
        for (action, change) in [("pause", ScheduleAction.pause), ("resume", .resume)] {
            v2.post("/schedules/:name/\(action)") { _, context in
                let name = try context.parameters.require("name")
                try await requireScheduleAdmin(name, context.caller)
                try await broker.controlSchedule(name, change)
                return Self.json(Self.json(try await broker.schedule(name, upcoming: 0)))
            }
        }
        v2.post("/schedules/:name/trigger") { _, context in
            let name = try context.parameters.require("name")
            try await requireScheduleAdmin(name, context.caller)
            return Self.json(Self.json(try await broker.triggerSchedule(name)), status: .created)
        }
        v2.delete("/schedules/:name") { _, context in
            let name = try context.parameters.require("name")
            try await requireScheduleAdmin(name, context.caller)
            try await broker.controlSchedule(name, .delete)
            return Response(status: .noContent)
        }

        // Locks (they belong to no topic: a grant without patterns).
        v2.get("/locks") { _, context in
            try context.caller.require(.read, topic: nil)
            return Self.json(.object([("locks", .array(await broker.locks().map(Self.json)))]))
        }
        v2.get("/locks/:name") { _, context in
            try context.caller.require(.read, topic: nil)
            return Self.json(Self.json(try await broker.lock(try Self.decodedName(try context.parameters.require("name")))))
        }
        v2.delete("/locks/:name") { _, context in
            try context.caller.require(.admin, topic: nil)
            try await broker.releaseLock(try Self.decodedName(try context.parameters.require("name")), token: nil)
            return Response(status: .noContent)
        }

        // Flows.
        v2.get("/flows/:flow") { _, context in
            let ref = try RequestHandler.flow(try context.parameters.require("flow"))
            try context.caller.require(.read, topic: broker.topicName(id: ref.topicID))
            let s = try await broker.flowStatus(ref)
            return Self.json(
                .object([
                    ("id", .string(ref.description)), ("children", .int(s.children)), ("succeeded", .int(s.succeeded)), ("failed", .int(s.failed)),
                    ("pending", .int(s.pending)), ("policy", .string("\(s.policy)")),
                    ("state", .string(s.aborted ? "aborted" : s.continuation != nil ? "finished" : "running")),
                    ("continuation", s.continuation.map { .string($0.description) } ?? .null),
                ]))
        }
        v2.post("/flows/:flow/abort") { request, context in
            let ref = try RequestHandler.flow(try context.parameters.require("flow"))
            let body = try await Self.decode(Reason.self, request, context, emptyAllowed: true)
            try context.caller.require(.admin, topic: broker.topicName(id: ref.topicID))
            let aborted = try await broker.abortFlow(ref, reason: body.reason ?? "aborted from the admin API")
            return Self.json(.object([("id", .string(ref.description)), ("abortedChildren", .int(aborted))]))
        }
    }

    /// Most bytes of messages one page holds (base64 doubles some of it on the wire).
    static let pageBytes = 4 << 20

    /// The groups a caller sees: all of them for a grant without patterns, else those whose
    /// every topic it sees (a group of no topic yet: none).
    func visibleGroups(_ caller: AdminCaller) async throws -> [String] {
        try caller.require(.read)
        let all = broker.listGroups()
        guard caller.grant?.topics.isEmpty == false else { return all }
        var out: [String] = []
        for name in all {
            guard let stats = try? await broker.groupStats(name), !stats.partitions.isEmpty, stats.partitions.allSatisfy({ caller.sees($0.topic) }) else { continue }
            out.append(name)
        }
        return out
    }

    /// `admin` on every topic a group reads (a group of no topic yet: without patterns).
    func requireGroupAdmin(_ name: String, _ caller: AdminCaller) async throws {
        let stats = try await visibleGroupStats(name, caller)
        for t in Set(stats.partitions.map(\.topic)) { try caller.require(.admin, topic: t) }
        if stats.partitions.isEmpty { try caller.require(.admin, topic: nil) }
    }

    private func requireScheduleAdmin(_ name: String, _ caller: AdminCaller) async throws {
        try caller.require(.admin)
        try caller.require(.admin, topic: try await broker.schedule(name, upcoming: 0).schedule.target.topic)
    }

    /// A page of a group's dead letters, oldest first, partition by partition of its dead
    /// letter topic: those the group's re-drive has not taken. The cursor is
    /// `<partition>:<offset>`.
    func deadLetters(of group: String, _ page: Page) async throws -> JSONValue {
        let topic = group + ".dlq"
        guard let info = broker.listTopics().first(where: { $0.name == topic }) else {
            return .object([("deadLetters", .array([])), ("next", .null)])
        }
        var (partition, offset) = (0, Int64?.none)
        if let after = page.after {
            let parts = after.split(separator: ":")
            guard parts.count == 2, let p = Int(parts[0]), let o = Int64(parts[1]), p >= 0, o >= 0 else {
                throw AdminError(.badRequest, "invalidArgument", "after must be a cursor of the page before (<partition>:<offset>)")
            }
            (partition, offset) = (p, o)
        }
        var out: [JSONValue] = []
        var next: String?
        var budget = Self.pageBytes
        while partition < info.settings.partitions && next == nil {
            if out.count == page.limit || budget <= 0 {
                next = "\(partition):\(offset ?? 0)"
                break
            }
            let want = page.limit - out.count
            let letters: [Delivery]
            do {
                letters = try await broker.peek(topic: topic, partition: partition, from: offset, group: "__redrive." + group, max: want, maxBytes: budget)
            } catch let error as BrokerError where error.code == .unknownGroup {
                // Never re-driven: every letter of the topic is still there.
                letters = try await broker.peek(topic: topic, partition: partition, from: offset, max: want, maxBytes: budget)
            }
            guard let last = letters.last else {
                // This partition is done: the next one from its start.
                partition += 1
                offset = nil
                continue
            }
            offset = last.offset + 1
            for l in letters {
                budget -= l.body.count + (l.key?.count ?? 0) + 256
                var fields: [(String, JSONValue)] = []
                if case .object(let m) = Self.message(l) { fields = m }
                let header = { (name: String) in l.headers.first { $0.name == name }.map { String(decoding: $0.value, as: UTF8.self) } }
                fields += [
                    ("originalTopic", header("chime-dlq-topic").map(JSONValue.string) ?? .null),
                    ("originalId", header("chime-dlq-id").map(JSONValue.string) ?? .null),
                    ("attempts", header("chime-dlq-attempts").flatMap { Int($0) }.map { .int($0) } ?? .null),
                    ("error", header("chime-dlq-error").map(JSONValue.string) ?? .null),
                ]
                out.append(.object(fields))
            }
        }
        return .object([("deadLetters", .array(out)), ("next", next.map(JSONValue.string) ?? .null)])
    }

    // MARK: - Shapes

    static func message(_ d: Delivery) -> JSONValue {
        func text(_ bytes: [UInt8]) -> JSONValue { String(validating: bytes, as: UTF8.self).map(JSONValue.string) ?? .null }
        return .object([
            ("id", .string(d.id.description)), ("topic", .string(d.topic)), ("partition", .int(d.partition)), ("offset", .int(d.offset)),
            ("key", d.key.map(text) ?? .null), ("keyBase64", d.key.map { .string(Data($0).base64EncodedString()) } ?? .null),
            ("headers", .object(d.headers.map { ($0.name, text($0.value)) })),
            ("body", text(d.body)), ("bodyBase64", .string(Data(d.body).base64EncodedString())), ("bodyBytes", .int(d.body.count)),
            ("publishedAt", .int(d.publishedAt)), ("publishedAtISO", .iso8601(d.publishedAt)),
            ("attempts", .int(d.attempt)),
        ])
    }

    static func json(_ p: PublishedMessage) -> JSONValue {
        .object([("id", p.id.map { .string($0.description) } ?? .null), ("partition", .int(p.partition)), ("duplicate", .bool(p.duplicate))])
    }

    static func json(_ l: LockInfo) -> JSONValue {
        .object([
            ("name", .string(l.name)), ("holder", l.holder.map(JSONValue.string) ?? .null), ("token", .int(l.token)),
            ("expiresAt", .int(l.expiresAt)), ("expiresAtISO", .iso8601(l.expiresAt)), ("waiters", .int(l.waiters)),
        ])
    }

    // MARK: - Input

    /// A path segment as the name it encodes (lock names are any UTF-8, so a client
    /// percent-encodes them; the router hands segments over as sent).
    static func decodedName(_ segment: String) throws -> String {
        guard let name = segment.removingPercentEncoding else {
            throw AdminError(.badRequest, "invalidArgument", "'\(segment.prefix(100))' is not a percent-encoded name")
        }
        return name
    }

    static func messageID(_ text: String) throws -> MessageID {
        guard let id = MessageID(text) else {
            throw AdminError(.badRequest, "invalidArgument", "'\(text.prefix(100))' is not a message id (they look like 3-1-s4096)")
        }
        return id
    }

    static func integer(_ text: String, _ name: String, in range: ClosedRange<Int64>) throws -> Int64 {
        guard let n = Int64(text), range.contains(n) else {
            throw AdminError(.badRequest, "invalidArgument", "\(name) must be an integer from \(range.lowerBound) to \(range.upperBound), not '\(text.prefix(40))'")
        }
        return n
    }

    /// `delayMs` or `at` (ms since the epoch, or ISO-8601), not both; nil for neither.
    static func due(delayMs: Int64?, at: TimeValue?) throws -> Due? {
        switch (delayMs, at) {
        case (nil, nil): return nil
        case (let d?, nil):
            guard (0...Broker.maxDelayMilliseconds).contains(d) else {
                throw AdminError(.badRequest, "invalidArgument", "delayMs must be 0 to \(Broker.maxDelayMilliseconds) (100 years)")
            }
            return .after(d)
        case (nil, let a?): return .at(a.milliseconds)
        default: throw AdminError(.badRequest, "invalidArgument", "give delayMs or at, not both")
        }
    }

    /// The JSON body as `T`: a typed 400 for a body that is not JSON or not of its shape,
    /// 413 past the body limit (the connection's limit closes it before that, for bigger ones).
    static func decode<T: Decodable>(_: T.Type, _ request: Request, _ context: AdminRequestContext, emptyAllowed: Bool = false) async throws -> T {
        var request = request
        // The channel closes a connection whose body passes the configured limit before this.
        let buffer = try await request.collectBody(upTo: 64 << 20)
        if buffer.readableBytes == 0 && emptyAllowed { return try JSONDecoder().decode(T.self, from: Data("{}".utf8)) }
        do {
            return try JSONDecoder().decode(T.self, from: Data(buffer.readableBytesView))
        } catch let error as AdminError {
            throw error
        } catch let error as DecodingError {
            throw AdminError(.badRequest, "badJSON", "the body is not a JSON \(T.self): \(Self.describe(error))")
        } catch {
            throw AdminError(.badRequest, "badJSON", "the body is not JSON: \(error)")
        }
    }

    private static func describe(_ e: DecodingError) -> String {
        switch e {
        case .keyNotFound(let key, let c): return "missing \((c.codingPath + [key]).map(\.stringValue).joined(separator: "."))"
        case .typeMismatch(_, let c), .valueNotFound(_, let c), .dataCorrupted(let c):
            let path = c.codingPath.map(\.stringValue).joined(separator: ".")
            return path.isEmpty ? c.debugDescription : "\(path): \(c.debugDescription)"
        @unknown default: return "\(e)"
        }
    }
}

/// `limit` and `after` of a list request.
struct Page {
    let limit: Int
    let after: String?

    init(limit: Int, after: String?) {
        self.limit = limit
        self.after = after
    }

    init(_ request: Request) throws {
        limit = try request.uri.queryParameters["limit"].map { Int(try AdminRoutes.integer(String($0), "limit", in: 1...1_000)) } ?? 100
        after = request.uri.queryParameters["after"].map(String.init)
    }

    /// The page of `items` (sorted by `key`) after the cursor, and the cursor of the next
    /// page ("" when this is the last).
    func take<T>(_ items: [T], key: (T) -> String) -> ([T], String) {
        let start = after.map { a in items.firstIndex { key($0) > a } ?? items.count } ?? 0
        let end = min(items.count, start + limit)
        let slice = Array(items[start..<end])
        return (slice, end < items.count ? key(items[end - 1]) : "")
    }
}

/// A time given as milliseconds since the epoch or as ISO-8601 text.
struct TimeValue: Decodable {
    let milliseconds: Int64

    init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let ms = try? c.decode(Int64.self) {
            milliseconds = ms
            return
        }
        let text = try c.decode(String.self)
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        guard let date = f.date(from: text) ?? ISO8601DateFormatter().date(from: text) else {
            throw DecodingError.dataCorruptedError(in: c, debugDescription: "'\(text.prefix(60))' is neither ms since the epoch nor ISO-8601 (2026-12-24T18:00:00Z)")
        }
        milliseconds = Int64((date.timeIntervalSince1970 * 1000).rounded())
    }
}

struct NewTopic: Decodable {
    var name: String
    var partitions: Int?
    var retentionMs: Int64?
    var retentionBytes: Int64?
    var maxMessageBytes: Int?
    var maxAttempts: Int?
    var dedupWindowMs: Int64?

    func apply(to s: inout TopicSettings) throws {
        if let partitions { s.partitions = partitions }
        if let retentionMs { s.retentionMilliseconds = retentionMs }
        if let retentionBytes { s.retentionBytes = retentionBytes }
        if let maxMessageBytes { s.maxMessageBytes = maxMessageBytes }
        if let maxAttempts { s.maxAttempts = maxAttempts }
        if let dedupWindowMs { s.dedupWindowMilliseconds = dedupWindowMs }
    }
}

/// A message to publish: a body as text or base64, an optional key, headers, and when it is
/// due (`delayMs` or `at`; now without either).
struct NewMessage: Decodable {
    var body: String?
    var bodyBase64: String?
    var key: String?
    var headers: [String: String]?
    var delayMs: Int64?
    var at: TimeValue?
    var dedupKey: String?
    var partition: Int64?

    func message() throws -> OutgoingMessage {
        let bytes: [UInt8]
        switch (body, bodyBase64) {
        case (let b?, nil): bytes = Array(b.utf8)
        case (nil, let b?):
            guard let data = Data(base64Encoded: b) else { throw AdminError(.badRequest, "invalidArgument", "bodyBase64 is not base64") }
            bytes = Array(data)
        default: throw AdminError(.badRequest, "invalidArgument", "give body (text) or bodyBase64, one of them")
        }
        let headers = (headers ?? [:]).sorted { $0.key < $1.key }.map { RecordHeader(name: $0.key, value: Array($0.value.utf8)) }
        return OutgoingMessage(
            key: key.map { Array($0.utf8) }, headers: headers, body: bytes, due: try AdminRoutes.due(delayMs: delayMs, at: at),
            dedupKey: dedupKey.map { Array($0.utf8) })
    }
}

struct Reschedule: Decodable {
    var delayMs: Int64?
    var at: TimeValue?
}

struct Reason: Decodable {
    var reason: String?
}

struct Redrive: Decodable {
    var max: Int?
    var ids: [String]?
}

struct CallbackPayload: Decodable {
    var payload: String?
    var payloadBase64: String?

    func bytes() throws -> [UInt8] {
        switch (payload, payloadBase64) {
        case (nil, nil): return []
        case (let p?, nil): return Array(p.utf8)
        case (nil, let p?):
            guard let data = Data(base64Encoded: p) else { throw AdminError(.badRequest, "invalidArgument", "payloadBase64 is not base64") }
            return Array(data)
        default: throw AdminError(.badRequest, "invalidArgument", "give payload (text) or payloadBase64, not both")
        }
    }
}
