import ChimeProtocol
import ChimeStore
import Logging
import NIOCore
import ServiceLifecycle
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Where and how to reach the broker.
public struct ClientOptions: Sendable {
    public var host: String
    public var port: Int
    public var token: String?
    /// Sent in the hello; shows up in the broker's logs.
    public var name: String
    /// Attempts to connect (again) before a call fails, with backoff doubling from 50 ms.
    public var connectAttempts: Int
    public var maxFrameBytes: Int
    /// Batching and idempotence of publishes.
    public var producer: ProducerOptions
    /// TLS to the broker (nil: plain TCP). See `ClientTLS`.
    public var tls: ClientTLS?
    /// How long a member acking at a high rate (64 or more acks in its last ack request)
    /// holds its next ack request to carry more acks: fewer, larger requests, each a
    /// journal sync on the broker (10 ms brought a `ChimeWorker` process's broker CPU per
    /// job to the plain batch consumer's). A trickle of acks, a durable ack and a flush are
    /// never held. `.zero` (the default): every request goes as soon as the one before is
    /// answered.
    public var ackLinger: Duration

    public init(
        host: String = "127.0.0.1", port: Int = 7420, token: String? = nil, name: String = "chime-client", connectAttempts: Int = 5,
        maxFrameBytes: Int = 64 << 20, producer: ProducerOptions = ProducerOptions(), tls: ClientTLS? = nil,
        ackLinger: Duration = .zero
    ) {
        self.host = host
        self.port = port
        self.token = token
        self.name = name
        self.connectAttempts = connectAttempts
        self.maxFrameBytes = maxFrameBytes
        self.producer = producer
        self.tls = tls
        self.ackLinger = ackLinger
    }
}

/// A client of the Chime broker. One connection, opened on first use and opened again (with
/// backoff) after it is lost; requests from any number of tasks are pipelined on it.
/// Publishes are batched per partition and idempotent by default (`ProducerOptions`); acks
/// are batched per member. `Sendable`; the logger is the caller's.
///
/// As a swift-service-lifecycle `Service`, `run()` connects, holds the client open until
/// graceful shutdown, then lets publishes in flight finish and closes; or use
/// `withClient { }` for a scoped client.
public final class ChimeClient: Service, Sendable {
    let connector: Connector
    let logger: Logger
    private let producerBox = Mutex<Producer?>(nil)
    private let ackerBox = Mutex<AckBatcher?>(nil)
    private let producerOptions: ProducerOptions
    private let ackLinger: Duration

    public init(_ options: ClientOptions = ClientOptions(), logger: Logger) {
        connector = Connector(options: options, logger: logger)
        self.logger = logger
        precondition(options.ackLinger >= .zero, "ClientOptions.ackLinger is negative")
        producerOptions = options.producer
        ackLinger = options.ackLinger
    }

    /// Made on first use: they hold the client, which cannot hand itself out in `init`.
    var producer: Producer {
        producerBox.withLock { p in
            if let p { return p }
            let made = Producer(client: self, options: producerOptions, logger: logger)
            p = made
            return made
        }
    }

    var acker: AckBatcher {
        ackerBox.withLock { a in
            if let a { return a }
            let made = AckBatcher(client: self, linger: ackLinger, logger: logger)
            a = made
            return made
        }
    }

    /// Connects (so a wrong address or token shows at start), then waits for graceful
    /// shutdown and closes. Requests made meanwhile by other tasks keep working.
    public func run() async throws {
        _ = try await connector.connection()
        try? await gracefulShutdown()
        // What the lanes hold goes out before the connection closes under it.
        await producerBox.withLock { $0 }?.flush()
        await close()
    }

    /// Runs `body` with a client, closing it after.
    public static func withClient<R: Sendable>(_ options: ClientOptions = ClientOptions(), logger: Logger, _ body: (ChimeClient) async throws -> R) async throws -> R {
        let client = ChimeClient(options, logger: logger)
        do {
            let result = try await body(client)
            await client.close()
            return result
        } catch {
            await client.close()
            throw error
        }
    }

    /// Acks queued by `ConsumedMessage.ack()` and not accepted by the broker so far (each
    /// such message is delivered again).
    public var ackFailures: AckFailures {
        get async { await ackerBox.withLock { $0 }?.failures ?? AckFailures() }
    }

    /// Waits until every ack queued so far has been answered by the broker.
    public func flushAcks() async {
        await ackerBox.withLock { $0 }?.flushAll()
    }

    /// Sends the acks still queued and waits for their answers, then closes the
    /// connection; the client does not connect again. Publishes still waiting fail with a
    /// lost-connection error; await them before closing.
    public func close() async {
        await flushAcks()
        // The producer and acker hold the client: drop them so the cycle ends.
        producerBox.withLock { $0 = nil }
        ackerBox.withLock { $0 = nil }
        await connector.close()
    }

    /// Immediate records without dedup keys go as one record batch in the store's format
    /// (protocol version 2, appended by the broker as it came); otherwise, or to an older
    /// broker, as a plain publish.
    func send(_ publish: Publish) async throws -> [PublishReply.Outcome] {
        let connection = try await connector.connection()
        let version = connection.version.withLock { $0 }
        if publish.partition >= 0, publish.records.allSatisfy({ $0.due == nil && $0.dedupKey == nil }) {
            if version >= Opcode.publishRecords.sinceVersion {
                var builder = RecordBatchBuilder(
                    producerId: publish.producerID, baseSequence: publish.sequence,
                    capacity: publish.records.reduce(64) { $0 + $1.body.count + ($1.key?.count ?? 0) + 24 })
                let now = Self.nowMilliseconds()
                for r in publish.records {
                    builder.append(Record(timestamp: now, key: r.key, headers: r.headers.map { RecordHeader(name: $0.name, value: $0.value) }, body: r.body))
                }
                let batch: [UInt8]
                do {
                    batch = try builder.build()
                } catch {
                    throw ClientError(code: WireErrorCode.malformedBatch.rawValue, message: "cannot encode the records as a batch: \(error)")
                }
                let outcomes = try await connection.request(
                    .publishRecords, PublishRecords(topic: publish.topic, partition: UInt32(publish.partition), batch: batch), as: PublishReply.self
                ).outcomes
                guard outcomes.count == publish.records.count else {
                    throw ClientError.protocolViolation("the broker answered \(outcomes.count) outcomes for \(publish.records.count) records")
                }
                return outcomes
            }
        }
        return try await sendPlain(publish.laidOut(for: version), over: connection)
    }

    private func sendPlain(_ publish: Publish, over connection: Connection) async throws -> [PublishReply.Outcome] {
        let outcomes = try await connection.request(.publish, publish, as: PublishReply.self).outcomes
        guard outcomes.count == publish.records.count else {
            throw ClientError.protocolViolation("the broker answered \(outcomes.count) outcomes for \(publish.records.count) records")
        }
        return outcomes
    }

    /// A request over the current connection. A request lost with its connection is not
    /// sent again here: only the caller knows whether it is safe to repeat.
    func call<M: WireMessage, R: WireMessage>(_ opcode: Opcode, _ message: M, as: R.Type) async throws -> R {
        try await connector.connection().request(opcode, message, as: R.self)
    }

    // MARK: - Topics

    @discardableResult
    public func createTopic(_ name: String, settings: WireTopicSettings? = nil) async throws -> WireTopic {
        try await call(.createTopic, CreateTopic(name: name, settings: settings), as: WireTopic.self)
    }

    public func topics() async throws -> [WireTopic] {
        try await call(.listTopics, Empty(), as: TopicList.self).topics
    }

    public func deleteTopic(_ name: String) async throws {
        _ = try await call(.deleteTopic, TopicName(name: name), as: Empty.self)
        await producer.forget(name)
    }

    // MARK: - Groups

    /// Creates a group: the broker's defaults for groups with `settings` over them (say
    /// `WireGroupSettings(mode: .shared)` for a job queue any number of workers share).
    /// A group of that name is `groupExists`, unless `ifAbsent`: then its settings come
    /// back as they are. Returns the group's settings, all of them.
    @discardableResult
    public func createGroup(_ name: String, settings: WireGroupSettings = WireGroupSettings(), ifAbsent: Bool = false) async throws -> WireGroupSettings {
        try await call(.createGroup, CreateGroup(name: name, ifAbsent: ifAbsent, settings: settings), as: WireGroupSettings.self)
    }

    /// Changes the settings present in `settings`; the others stay. Returns them all.
    @discardableResult
    public func configureGroup(_ name: String, _ settings: WireGroupSettings) async throws -> WireGroupSettings {
        try await call(.configureGroup, ConfigureGroup(name: name, settings: settings), as: WireGroupSettings.self)
    }

    /// A group's settings.
    public func groupSettings(_ name: String) async throws -> WireGroupSettings {
        try await call(.describeGroup, GroupRef(name: name), as: WireGroupSettings.self)
    }

    /// Deletes a group that has no live member and no position in a topic that still
    /// exists (`groupInUse` otherwise: a group's positions go with their topics).
    public func deleteGroup(_ name: String) async throws {
        _ = try await call(.deleteGroup, GroupRef(name: name), as: Empty.self)
    }

    /// Counts for topics and groups (all of them when none are named).
    public func stats(topics: [String] = [], groups: [String] = [], includeMembers: Bool = false) async throws -> StatsReply {
        try await call(.stats, StatsRequest(topics: topics, groups: groups, includeMembers: includeMembers), as: StatsReply.self)
    }

    /// Messages of one partition read without leasing them (a browse: nothing changes,
    /// nothing is delivered to anyone): from `offset`, else from the start of the partition
    /// — or, with `group`, from that group's position, skipping what it acked (its backlog,
    /// messages in flight included). At most `max` (and what fits one answer). Their
    /// receipts cannot be settled; `attempt` counts only finished earlier attempts. Needs a
    /// broker of protocol version 4.
    public func peek(topic: String, partition: Int, from offset: Int64? = nil, group: String? = nil, max: Int = 100) async throws -> [WireDelivery] {
        guard partition >= 0, partition <= Int(UInt32.max) else { throw ClientError(code: WireErrorCode.badPartition.rawValue, message: "no partition \(partition)") }
        guard (offset ?? 0) >= 0 else { throw ClientError(code: WireErrorCode.invalidArgument.rawValue, message: "offsets are 0 or more, not \(offset!)") }
        let request = Peek(
            topic: topic, partition: UInt32(partition), fromOffset: offset ?? -1, group: group ?? "", max: UInt32(Swift.min(Swift.max(0, max), Int(UInt32.max))))
        return try await call(.peek, request, as: Deliveries.self).deliveries
    }

    // MARK: - Publish

    /// Publishes one message now (`due` nil) or for later; returns its id once the broker
    /// has stored it.
    @discardableResult
    public func publish(
        _ body: [UInt8], to topic: String, key: [UInt8]? = nil, headers: [WireHeader] = [], due: WireDue? = nil, dedupKey: [UInt8]? = nil
    ) async throws -> WireMessageID {
        let outcome = try await publish([OutgoingRecord(due: due, dedupKey: dedupKey, key: key, headers: headers, body: body)], to: topic)[0]
        guard let id = outcome.id else { throw ClientError.protocolViolation("the broker returned no id (a duplicate it no longer remembers)") }
        return id
    }

    /// Publishes one message to be delivered at `deliverAt` (ms since the epoch on the
    /// broker's wall clock).
    @discardableResult
    public func publish(
        _ body: [UInt8], to topic: String, key: [UInt8]? = nil, headers: [WireHeader] = [], deliverAt: Int64, dedupKey: [UInt8]? = nil
    ) async throws -> WireMessageID {
        try await publish(body, to: topic, key: key, headers: headers, due: .at(deliverAt), dedupKey: dedupKey)
    }

    /// Publishes one message to be delivered `delay` after the broker receives it (counted
    /// on the broker's steady clock, whatever the clocks of either machine do).
    @discardableResult
    public func publish(
        _ body: [UInt8], to topic: String, key: [UInt8]? = nil, headers: [WireHeader] = [], delay: Duration, dedupKey: [UInt8]? = nil
    ) async throws -> WireMessageID {
        try await publish(body, to: topic, key: key, headers: headers, due: .after(Self.milliseconds(delay)), dedupKey: dedupKey)
    }

    /// A duration in whole ms (negative: 0).
    static func milliseconds(_ d: Duration) -> Int64 {
        max(0, d.components.seconds.multipliedReportingOverflow(by: 1_000).partialValue + d.components.attoseconds / 1_000_000_000_000_000)
    }

    /// Publishes records; one outcome per record, in order. Records go to `partition`, or are
    /// routed like the broker routes them (key, else dedup key, else the next partition in
    /// turn). Batched with other publishes to the same partition (`ProducerOptions`).
    public func publish(_ records: [OutgoingRecord], to topic: String, partition: Int32? = nil) async throws -> [PublishReply.Outcome] {
        try await producer.publish(records, to: topic, partition: partition.flatMap { $0 < 0 ? nil : $0 })
    }

    /// Wall-clock time in ms since the epoch: what `deliverAt` is measured in (and how a
    /// delay is sent to a broker older than protocol version 3).
    public static func nowMilliseconds() -> Int64 {
        var t = timespec()
        clock_gettime(CLOCK_REALTIME, &t)
        return Int64(t.tv_sec) * 1_000 + Int64(t.tv_nsec) / 1_000_000
    }

    public func cancel(_ id: WireMessageID) async throws {
        let connection = try await connector.connection()
        _ = try await connection.request(.cancel, ScheduleChange(id: id, version: connection.version.withLock { $0 }), as: Empty.self)
    }

    /// Where the message (job) `id` stands: scheduled or cancelled, or in each group that
    /// consumes it (or in `group`) ready, running, retrying, succeeded or dead. Times are
    /// the broker's, ms since the epoch. Needs a broker of protocol version 6.
    public func jobStatus(_ id: WireMessageID, group: String? = nil) async throws -> [WireJobStatus] {
        try await call(.jobStatus, JobStatusRequest(id: id, group: group ?? ""), as: JobStatusReply.self).statuses
    }

    /// Moves a scheduled message to `dueAt` (ms since the epoch on the broker's wall clock);
    /// returns its new id.
    public func reschedule(_ id: WireMessageID, to dueAt: Int64) async throws -> WireMessageID {
        try await reschedule(id, due: .at(dueAt))
    }

    /// Moves a scheduled message to be due `delay` after the broker receives this.
    public func reschedule(_ id: WireMessageID, after delay: Duration) async throws -> WireMessageID {
        try await reschedule(id, due: .after(Self.milliseconds(delay)))
    }

    private func reschedule(_ id: WireMessageID, due: WireDue) async throws -> WireMessageID {
        let connection = try await connector.connection()
        let version = connection.version.withLock { $0 }
        let change = ScheduleChange(id: id, due: due.laidOut(for: version), version: version)
        return try await connection.request(.reschedule, change, as: WireMessageID.self)
    }

    // MARK: - Consume

    /// Acks many messages in one request per member; one result per message, in order
    /// (nil: acked; a lost connection is code 0 for each message of its request, whose acks
    /// may or may not have landed).
    @discardableResult
    public func ack(_ messages: [ConsumedMessage]) async throws -> [ClientError?] {
        try await settle(.ack, messages)
    }

    /// Extends the leases of many messages by `milliseconds` from now, in one request per
    /// member (a worker keeping its running jobs' leases); one result per message.
    @discardableResult
    public func extend(_ messages: [ConsumedMessage], by milliseconds: Int64) async throws -> [ClientError?] {
        try await settle(.extend, messages, milliseconds: milliseconds)
    }

    /// Gives messages back unprocessed, in one request per member: delivered again at once
    /// (to any member), the delivery not counted as an attempt. For messages fetched and not
    /// started (a worker shutting down). Needs a broker of protocol version 5.
    @discardableResult
    public func release(_ messages: [ConsumedMessage]) async throws -> [ClientError?] {
        try await settle(.release, messages)
    }

    private func settle(_ opcode: Opcode, _ messages: [ConsumedMessage], milliseconds: Int64 = 0) async throws -> [ClientError?] {
        var results = [ClientError?](repeating: nil, count: messages.count)
        var byMember: [MemberKey: [Int]] = [:]
        if let first = messages.first, messages.allSatisfy({ $0.memberID == first.memberID && $0.group == first.group }) {
            byMember[MemberKey(group: first.group, memberID: first.memberID)] = Array(messages.indices)  // one member: no lookup per message
        } else {
            for (i, m) in messages.enumerated() { byMember[MemberKey(group: m.group, memberID: m.memberID), default: []].append(i) }
        }
        for (member, indices) in byMember {
            for chunk in stride(from: 0, to: indices.count, by: AckBatcher.maxReceipts) {
                let part = Array(indices[chunk..<min(chunk + AckBatcher.maxReceipts, indices.count)])
                // A request that fails gives its error to each of its messages; the other
                // requests' results are kept (an ack of another member may have landed).
                do {
                    let reply = try await call(
                        opcode,
                        Settle(
                            group: member.group, memberID: member.memberID, receipts: part.map { messages[$0].delivery.receipt },
                            milliseconds: milliseconds),
                        as: SettleReply.self)
                    for (k, i) in part.enumerated() {
                        results[i] = k < reply.results.count
                            ? reply.results[k].map(ClientError.init)
                            : ClientError.protocolViolation("the broker answered \(reply.results.count) results for \(part.count) receipts")
                    }
                } catch {
                    let failure = error as? ClientError ?? ClientError.protocolViolation("\(error)")
                    for i in part { results[i] = failure }
                }
            }
        }
        return results
    }

    struct MemberKey: Hashable {
        let group: String
        let memberID: UInt64
    }

    /// Messages of `topics` for this member of `group`, as they become deliverable. Each is
    /// leased until acked, nacked, extended or terminated. The member joins on first use,
    /// keeps at most `prefetch` messages it has not handed out, and joins again if the
    /// broker dropped it; `leave()` on the iterator (or closing the client after the acks)
    /// ends it. A topic that does not exist yet is waited for — consuming never creates a
    /// topic by accident — unless `createTopics` (a broker older than protocol version 4
    /// creates it either way).
    public func consume(group: String, topics: [String], member: String? = nil, prefetch: Int = 100, createTopics: Bool = false) -> Consumer {
        Consumer(client: self, group: group, topics: topics, member: member ?? connector.optionsName, prefetch: prefetch, createTopics: createTopics)
    }
}

/// Opens the connection, and opens it again when it is lost.
actor Connector {
    let options: ClientOptions
    private let logger: Logger
    private var current: Connection?
    /// Set by `close()`: a closed client opens no new connection (nobody would close it).
    private var closed = false
    /// The connection in use and how many have been made: deliveries fetched on an earlier
    /// one are stale (their leases went with it). Readable without a hop onto this actor,
    /// since consumers check it for every message they hand out.
    private nonisolated let latest = Mutex<(connection: Connection?, generation: Int)>((nil, 0))

    nonisolated var optionsName: String { options.name }

    init(options: ClientOptions, logger: Logger) {
        self.options = options
        self.logger = logger
    }

    /// The connection being opened: callers that ask meanwhile wait for it instead of
    /// opening their own (32 requests sent at once by a new client used to open 32
    /// connections, of which 31 were never closed).
    private var opening: Task<Connection, any Error>?

    func connection() async throws -> Connection {
        guard !closed else { throw ClientError.disconnected("the client is closed") }
        if let current, current.isOpen { return current }
        if let opening { return try await opening.value }
        let task = Task { try await self.open() }
        opening = task
        defer { opening = nil }
        return try await task.value
    }

    private func open() async throws -> Connection {
        var delay = 50
        var lastError: any Error = ClientError.disconnected("not connected")
        for attempt in 1...max(1, options.connectAttempts) {
            do {
                let c = try await Connection.open(
                    host: options.host, port: options.port,
                    hello: Hello(client: options.name, token: options.token.map { Array($0.utf8) }), maxFrameBytes: options.maxFrameBytes,
                    tls: options.tls)
                if closed {
                    // Closed while this connection was being made.
                    await c.close()
                    throw ClientError.disconnected("the client is closed")
                }
                current = c
                latest.withLock { $0 = (c, $0.generation + 1) }
                if attempt > 1 { logger.info("connected to the broker again", metadata: ["attempts": "\(attempt)"]) }
                return c
            } catch let error as ClientError where !error.isDisconnected {
                throw error  // refused by the broker (token, version): trying again will not help
            } catch let error as ClientTLSError {
                throw error  // an untrusted certificate or a bad trust file: the same again
            } catch {
                lastError = error
                if closed { throw ClientError.disconnected("the client is closed") }
                if attempt < options.connectAttempts {
                    try await Task.sleep(for: .milliseconds(delay))
                    delay = min(delay * 2, 2_000)
                }
            }
        }
        throw lastError
    }

    /// The generation of the connection in use now, if it is still open.
    nonisolated func liveGeneration() -> Int? {
        latest.withLock { l in l.connection.map { $0.isOpen ? l.generation : nil } ?? nil }
    }

    func close() async {
        closed = true
        let c = current
        current = nil
        await c?.close()
    }
}

extension WireDue {
    /// As a broker speaking `version` takes it: before version 3 a delay can only travel
    /// as a time, read on this machine's wall clock now.
    func laidOut(for version: UInt16) -> WireDue {
        guard version < ProtocolVersion.relativeDueTimes, case .after(let ms) = self else { return self }
        return .at(ChimeClient.nowMilliseconds() &+ ms)
    }
}

extension Publish {
    /// This publish as a broker speaking `version` reads it.
    func laidOut(for version: UInt16) -> Publish {
        var out = self
        out.version = version
        if version < ProtocolVersion.relativeDueTimes {
            for i in out.records.indices { out.records[i].due = out.records[i].due?.laidOut(for: version) }
        }
        return out
    }
}
