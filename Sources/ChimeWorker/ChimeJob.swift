import ChimeClient
import ChimeProtocol
import Foundation

/// A job: a `Codable & Sendable` value with a stable name. Its message is the value's JSON
/// with a `chime-job: <name>` header, so any producer — the CLI
/// (`chime publish --job send-email '{"to":"…"}'`), another language — can enqueue one.
///
///     struct SendEmail: ChimeJob {
///         static let jobName = "send-email"
///         var to: String
///     }
public protocol ChimeJob: Codable, Sendable {
    /// Stable across releases: it is what the queue holds and what workers look up.
    static var jobName: String { get }
}

/// The header that names a message's job.
public enum JobHeader {
    public static let name = "chime-job"
    /// Set by the broker on a job that parked: its state, and how its callback ended.
    static let state = "chime-state"
    static let callback = "chime-callback"
    static let callbackPayload = "chime-callback-payload"
    static let flow = "chime-flow"
    static let flowDone = "chime-flow-done"

    /// The job name a delivery carries, if any.
    public static func jobName(of delivery: WireDelivery) -> String? {
        delivery.headers.first { $0.name == name }.map { String(decoding: $0.value, as: UTF8.self) }
    }
}

/// When an enqueued job is due.
public enum JobDue: Sendable {
    case now
    /// After this long, counted by the broker from when it receives the job.
    case after(Duration)
    /// At this time (the broker's wall clock).
    case at(Date)
}

extension ChimeClient {
    /// Enqueues `job` on `topic`: now, after a delay or at a time; `key` routes it (and
    /// per-key limits apply to it), `dedupKey` drops a second enqueue within the topic's
    /// dedup window. Returns the message id (what `chime jobs` and the worker's context
    /// call the job's id).
    @discardableResult
    public func enqueue<J: ChimeJob>(_ job: J, to topic: String, due: JobDue = .now, key: String? = nil, dedupKey: String? = nil) async throws -> WireMessageID {
        let body = try JobCoding.encoder.encode(job)
        let headers = [WireHeader(name: JobHeader.name, value: Array(J.jobName.utf8))]
        let keyBytes = key.map { Array($0.utf8) }
        let dedup = dedupKey.map { Array($0.utf8) }
        switch due {
        case .now:
            return try await publish(Array(body), to: topic, key: keyBytes, headers: headers, dedupKey: dedup)
        case .after(let delay):
            return try await publish(Array(body), to: topic, key: keyBytes, headers: headers, delay: delay, dedupKey: dedup)
        case .at(let date):
            return try await publish(
                Array(body), to: topic, key: keyBytes, headers: headers, deliverAt: Int64((date.timeIntervalSince1970 * 1000).rounded()), dedupKey: dedup)
        }
    }
}

/// One JSON encoder and decoder for jobs (both are safe to share between threads).
enum JobCoding {
    nonisolated(unsafe) static let encoder = JSONEncoder()
    nonisolated(unsafe) static let decoder = JSONDecoder()
}
