import ChimeClient
import ChimeProtocol
import Foundation
import Logging

/// What a running job knows about itself. Cancellation (a timeout, a lost lease, the end of
/// the grace period at shutdown) reaches the job as its task's cancellation:
/// `try Task.checkCancellation()` in long loops, or cancellable awaits.
public struct JobContext: Sendable {
    /// The message's id, as `chime` prints it (`3-1-r4096`).
    public let id: String
    /// The job's name (its `chime-job` header).
    public let name: String
    /// 1 for the first delivery.
    public let attempt: Int
    /// Of the message: when it was published, when it fell due, when this worker got it.
    public let publishedAt: Date
    public let dueAt: Date
    public let deliveredAt: Date
    public let topic: String
    public let partition: Int
    public let key: [UInt8]?
    /// The message's headers (the job's name among them).
    public let headers: [WireHeader]
    /// The error of the attempt before, if it failed.
    public let lastError: String?
    /// The state the job gave when it last parked (`JobResult.continueAfter`,
    /// `JobResult.awaitCallback`), nil on its first run.
    public let state: [UInt8]?
    /// How its callback ended, when it parked awaiting one.
    public let callback: CallbackOutcome?
    /// Its place as a flow's child (its index is its shard), if it is one.
    public let flow: FlowPlace?
    /// The flow it continues, when it is a flow's continuation.
    public let continues: String?
    private let client: ChimeClient?

    /// The outcomes of the children of the flow this job continues (empty otherwise), read
    /// from the broker a page at a time.
    public func childOutcomes() async throws -> [FlowChildOutcome] {
        guard let continues, let client else { return [] }
        return try await client.flowOutcomes(continues).map {
            FlowChildOutcome(index: Int($0.index), succeeded: $0.succeeded, detail: String(decoding: $0.detail, as: UTF8.self))
        }
    }
    /// `state` decoded from JSON (as `JobResult.continueAfter(_:state:)` encodes it).
    public func state<S: Decodable>(as type: S.Type) throws -> S? {
        try state.map { try JobCoding.decoder.decode(S.self, from: Data($0)) }
    }
    /// The worker's logger with the job's id, name and attempt as metadata (made when asked
    /// for: a job that does not log does not pay for its metadata).
    public var logger: Logger {
        var logger = workerLogger
        logger[metadataKey: "job"] = "\(name)"
        logger[metadataKey: "job-id"] = "\(id)"
        logger[metadataKey: "attempt"] = "\(attempt)"
        return logger
    }
    private let workerLogger: Logger

    init(_ d: WireDelivery, name: String, logger: Logger, client: ChimeClient? = nil) {
        id = d.id.text
        self.name = name
        attempt = Int(d.attempt)
        publishedAt = Date(timeIntervalSince1970: Double(d.publishedAt) / 1000)
        dueAt = Date(timeIntervalSince1970: Double(d.dueAt) / 1000)
        deliveredAt = Date(timeIntervalSince1970: Double(d.deliveredAt) / 1000)
        topic = d.topic
        partition = Int(d.partition)
        key = d.key
        headers = d.headers
        lastError = d.lastError
        func header(_ name: String) -> [UInt8]? { d.headers.first { $0.name == name }?.value }
        state = header(JobHeader.state)
        switch header(JobHeader.callback).map({ String(decoding: $0, as: UTF8.self) }) {
        case "completed"?: callback = .completed(payload: header(JobHeader.callbackPayload) ?? [])
        case "waiting"?: callback = .timedOut
        default: callback = nil
        }
        flow = header(JobHeader.flow).flatMap(Self.place)
        continues = header(JobHeader.flowDone).map { String(decoding: $0, as: UTF8.self) }
        self.client = client
        workerLogger = logger
    }
}

extension JobContext {
    /// A `chime-flow` header (24 bytes: topic id u32, partition u32, flow id i64, group id
    /// u32, index u32, little-endian) as a place.
    static func place(_ b: [UInt8]) -> FlowPlace? {
        guard b.count == 24 else { return nil }
        func u32(_ at: Int) -> UInt32 { (0..<4).reduce(UInt32(0)) { $0 | UInt32(b[at + $1]) << (8 * UInt32($1)) } }
        let id = (0..<8).reduce(UInt64(0)) { $0 | UInt64(b[8 + $1]) << (8 * UInt64($1)) }
        return FlowPlace(flow: "\(u32(0))-\(u32(4))-f\(Int64(bitPattern: id))", index: Int(u32(20)))
    }
}

/// Code around every job a worker runs (logging, metrics, tracing): calls `next` to run the
/// job (or does not, to skip it), and may look at what it threw.
public protocol JobMiddleware: Sendable {
    func run(_ context: JobContext, next: @Sendable (JobContext) async throws -> Void) async throws
}
