import ChimeProtocol
import Logging
import NIOCore
import Synchronization

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
    /// TLS to the broker (nil: plain TCP). See `ClientTLS`.
    public var tls: ClientTLS?

    public init(
        host: String = "127.0.0.1", port: Int = 7420, token: String? = nil, name: String = "chime-client", connectAttempts: Int = 5, maxFrameBytes: Int = 64 << 20,
        tls: ClientTLS? = nil
    ) {
        self.host = host
        self.port = port
        self.token = token
        self.name = name
        self.connectAttempts = connectAttempts
        self.maxFrameBytes = maxFrameBytes
        self.tls = tls
    }
}

/// A client of the Chime broker. One connection, opened on first use and opened again (with
/// backoff) after it is lost; requests from any number of tasks are pipelined on it.
/// `Sendable`; the logger is the caller's.
public final class ChimeClient: Sendable {
    let connector: Connector
    let logger: Logger

    public init(_ options: ClientOptions = ClientOptions(), logger: Logger) {
        connector = Connector(options: options, logger: logger)
        self.logger = logger
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

    public func close() async { await connector.close() }

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
    }

    // MARK: - Publish

    /// Publishes one message now (`deliverAt` nil) or for later; returns its id.
    @discardableResult
    public func publish(
        _ body: [UInt8], to topic: String, key: [UInt8]? = nil, headers: [WireHeader] = [], deliverAt: Int64? = nil, dedupKey: [UInt8]? = nil
    ) async throws -> WireMessageID {
        let outcome = try await publish([OutgoingRecord(deliverAt: deliverAt, dedupKey: dedupKey, key: key, headers: headers, body: body)], to: topic)[0]
        guard let id = outcome.id else { throw ClientError(code: 0, message: "the broker returned no id (a duplicate it no longer remembers)") }
        return id
    }

    /// Publishes a batch in one request; one outcome per record, in order.
    public func publish(_ records: [OutgoingRecord], to topic: String, partition: Int32 = -1) async throws -> [PublishReply.Outcome] {
        try await call(.publish, Publish(topic: topic, partition: partition, records: records), as: PublishReply.self).outcomes
    }

    public func cancel(_ id: WireMessageID) async throws {
        _ = try await call(.cancel, ScheduleChange(id: id), as: Empty.self)
    }

    public func reschedule(_ id: WireMessageID, to dueAt: Int64) async throws -> WireMessageID {
        try await call(.reschedule, ScheduleChange(id: id, dueAt: dueAt), as: WireMessageID.self)
    }

    // MARK: - Consume

    /// Messages of `topics` for this member of `group`, as they become deliverable. Each is
    /// leased until acked, nacked, extended or terminated. The member joins on first use,
    /// keeps at most `prefetch` messages it has not handed out, and leaves when the
    /// iteration ends (or joins again if the broker dropped it).
    public func consume(group: String, topics: [String], member: String? = nil, prefetch: Int = 100) -> Consumer {
        Consumer(client: self, group: group, topics: topics, member: member ?? connector.optionsName, prefetch: prefetch)
    }
}

/// Opens the connection, and opens it again when it is lost.
actor Connector {
    let options: ClientOptions
    private let logger: Logger
    private var current: Connection?
    /// The connection in use and how many have been made: deliveries fetched on an earlier
    /// one are stale (their leases went with it). Readable without a hop onto this actor,
    /// since consumers check it for every message they hand out.
    private nonisolated let latest = Mutex<(connection: Connection?, generation: Int)>((nil, 0))

    nonisolated var optionsName: String { options.name }

    init(options: ClientOptions, logger: Logger) {
        self.options = options
        self.logger = logger
    }

    func connection() async throws -> Connection {
        if let current, current.isOpen { return current }
        var delay = 50
        var lastError: any Error = ClientError.disconnected("not connected")
        for attempt in 1...max(1, options.connectAttempts) {
            do {
                let c = try await Connection.open(
                    host: options.host, port: options.port,
                    hello: Hello(client: options.name, token: options.token.map { Array($0.utf8) }), maxFrameBytes: options.maxFrameBytes,
                    tls: options.tls)
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
        await current?.close()
        current = nil
    }
}
