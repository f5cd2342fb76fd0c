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
        /// Done, with a result for the flow the job is a child of.
        case result(String)
        case spawn(children: [OutgoingRecord], childTopic: String?, continuation: OutgoingRecord, continuationTopic: String?, policy: WireFlowPolicy)
        case snooze(Duration, state: [UInt8]?)
        case callback(timeout: Duration, state: [UInt8]?, parked: @Sendable (String) async throws -> Void)
    }
    let kind: Kind

    /// Finished: the message is acked.
    public static let done = JobResult(kind: .done)

    /// Finished, with `result` (UTF-8, at most 1 KiB) for the flow this job is a child of:
    /// its continuation reads it (`JobContext.childOutcomes`).
    public static func done(result: String) -> JobResult { JobResult(kind: .result(result)) }

    /// Splits: `children` run as jobs (on `topic`, default this job's), and `then` runs once
    /// they have all ended — or at the first failure, failing fast — with their outcomes
    /// (`JobContext.childOutcomes`). All or nothing: the children and the continuation are
    /// journaled together before this job is acked. A child that splits again nests: its
    /// continuation stands for it in this flow.
    public static func spawn<Child: ChimeJob, Next: ChimeJob>(
        _ children: [Child], on topic: String? = nil, then next: Next, on nextTopic: String? = nil, policy: WireFlowPolicy = .waitForAll
    ) throws -> JobResult {
        JobResult(kind: .spawn(children: try children.map(Self.record), childTopic: topic, continuation: try Self.record(next), continuationTopic: nextTopic, policy: policy))
    }

    /// Shards: `make(i)` for each `i` of `shards` as the children (`JobContext.flow?.index`
    /// is a child's shard), then `next` (see `spawn(_:on:then:on:policy:)`).
    public static func spawn<Child: ChimeJob, Next: ChimeJob>(
        shards: Range<Int>, on topic: String? = nil, _ make: (Int) throws -> Child, then next: Next, on nextTopic: String? = nil,
        policy: WireFlowPolicy = .waitForAll
    ) throws -> JobResult {
        precondition(shards.lowerBound == 0, "shards count from 0: a child's index in its flow is its shard")
        return try spawn(try shards.map(make), on: topic, then: next, on: nextTopic, policy: policy)
    }

    static func record<J: ChimeJob>(_ job: J) throws -> OutgoingRecord {
        OutgoingRecord(headers: [WireHeader(name: JobHeader.name, value: Array(J.jobName.utf8))], body: Array(try JobCoding.encoder.encode(job)))
    }

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

/// Where a job stands in a flow: a child (its index: its shard).
public struct FlowPlace: Sendable, Equatable {
    /// The flow, as `chime flows show` takes it (`3-0-f17`).
    public var flow: String
    /// A child's index among its flow's children (0-based).
    public var index: Int
}

/// One child's end, as the continuation reads it.
public struct FlowChildOutcome: Sendable, Equatable {
    public var index: Int
    public var succeeded: Bool
    /// Its result (`JobResult.done(result:)`), or its error.
    public var detail: String
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
