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

    init(_ d: WireDelivery, name: String, logger: Logger) {
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
        workerLogger = logger
    }
}

/// Code around every job a worker runs (logging, metrics, tracing): calls `next` to run the
/// job (or does not, to skip it), and may look at what it threw.
public protocol JobMiddleware: Sendable {
    func run(_ context: JobContext, next: @Sendable (JobContext) async throws -> Void) async throws
}
