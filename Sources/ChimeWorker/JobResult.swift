import ChimeProtocol
import Foundation

/// What a job asks for when it returns, besides being done: to run again later (a
/// continuation), or to wait for an external completion (a callback). Either parks the job's
/// message in the broker's wheel — durable, no memory held on either side while it waits,
/// not counted as a failed attempt — and the worker's slot is free at once.
///
///     worker.registerResumable(PollExport.self) { job, context in
///         let polls = try context.state(as: Int.self) ?? 0
///         guard try await export(job.id).isReady else { return try .continueAfter(.seconds(30), state: polls + 1) }
///         return .done
///     }
public struct JobResult: Sendable {
    enum Kind: Sendable {
        case done
        case snooze(Duration, state: [UInt8]?)
        case callback(timeout: Duration, state: [UInt8]?, parked: @Sendable (String) async throws -> Void)
    }
    let kind: Kind

    /// Finished: the message is acked.
    public static let done = JobResult(kind: .done)

    /// Run again after `delay` with `state` (given back as `JobContext.state`).
    public static func continueAfter(_ delay: Duration, state: [UInt8]? = nil) -> JobResult {
        JobResult(kind: .snooze(delay, state: state))
    }

    /// Run again after `delay` with `state` as JSON (`JobContext.state(as:)` reads it).
    public static func continueAfter<S: Encodable>(_ delay: Duration, state: S) throws -> JobResult {
        JobResult(kind: .snooze(delay, state: Array(try JobCoding.encoder.encode(state))))
    }

    /// Wait for a callback: the job is parked, then `parked` is called with the callback's
    /// token (hand it to whoever completes it: an approval link, a webhook's URL). The job
    /// runs again when the token is completed (`ChimeClient.complete`, `chime complete`) —
    /// `JobContext.callback` is then `.completed(payload)` — or after `timeout`
    /// (`.timedOut`). An error thrown by `parked` is logged; the job stays parked until
    /// its timeout.
    public static func awaitCallback(
        timeout: Duration, state: [UInt8]? = nil, parked: @escaping @Sendable (_ token: String) async throws -> Void
    ) -> JobResult {
        JobResult(kind: .callback(timeout: timeout, state: state, parked: parked))
    }
}

/// How a job's callback ended, when it awaited one.
public enum CallbackOutcome: Sendable, Equatable {
    case completed(payload: [UInt8])
    case timedOut
}

/// A job was aborted (`ChimeClient.abort`, `chime jobs abort`) while it ran: its task was
/// cancelled, and the broker has ended it (it is not delivered again).
public struct JobAborted: Error, CustomStringConvertible {
    public var description: String { "the job was aborted" }
}
