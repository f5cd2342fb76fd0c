import ChimeStore
import ChimeWheel
import Synchronization

/// The token that completes a parked job's callback: the id of its place in the wheel
/// (a scheduled message's id), its timeout (the entry's due time, by which the wheel finds
/// it even once compaction moved it), and a random number, so that a token cannot be
/// guessed from the ids a producer sees. Printed `<id>.<due ms>.<16 hex digits>`.
public struct CallbackToken: Hashable, Sendable, CustomStringConvertible, LosslessStringConvertible {
    public var id: MessageID
    public var dueAt: Int64
    public var nonce: UInt64

    public init(id: MessageID, dueAt: Int64, nonce: UInt64) {
        self.id = id
        self.dueAt = dueAt
        self.nonce = nonce
    }

    public var description: String {
        let hex = String(nonce, radix: 16)
        return "\(id).\(dueAt).\(String(repeating: "0", count: 16 - hex.count))\(hex)"
    }

    public init?(_ text: String) {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, parts[2].count == 16, let id = MessageID(String(parts[0])), id.kind == .scheduled,
            let dueAt = Int64(parts[1]), dueAt >= 0, let nonce = UInt64(parts[2], radix: 16)
        else { return nil }
        self.init(id: id, dueAt: dueAt, nonce: nonce)
    }
}

/// Job events (docs/architecture.md, "Job events"): abort by id, and parking a running job
/// in the wheel — a continuation (run again after a delay, with a state) or a callback
/// (resumed by `completeCallback`, or at its timeout). A parked job is a timer-log entry
/// like any scheduled message: it costs the broker no memory while it waits.
extension Broker {
    /// The most bytes of state a parked job carries, and of payload a completion gives.
    public static let maxStateBytes = 64 << 10

    /// Aborts the job `id`: cancelled if it is scheduled, waiting for delivery or for a
    /// retry; signalled to the member running it otherwise (its lease ends at once; the
    /// member learns it from `abortNotices` and cancels the job's task). Per group; the
    /// outcome is the strongest of the groups' (signalled, then cancelled, then finished).
    public func abort(_ id: MessageID, reason: String) async throws -> AbortOutcome {
        let p = try partition(of: id)
        defer { changes.bump() }  // room in the in-flight windows
        if id.kind == .scheduled, case .pending = try await p.scheduledState(id.value) {
            do {
                try await p.cancel(id)
                return .cancelled
            } catch let error as BrokerError where error.code == .unknownMessage {
                // Fired meanwhile: aborted where it went, below.
            }
        }
        let readyOffset: Int64
        switch try await locate(id, in: p) {
        case .inWheel(.cancelled): return .finished
        case .inWheel: throw BrokerError(.unknownMessage, "message \(id) is being fired right now: abort it again")
        case .ready(let offset): readyOffset = offset
        }
        var outcomes: [AbortOutcome] = []
        var refusals: [(String, any Error)] = []
        for g in allGroups() {
            // One group refusing (far behind, or busy moving it) does not stop the others.
            do {
                if let o = try await g.abort(PartitionKey(topicID: id.topicID, partition: id.partition), readyOffset: readyOffset, reason: reason) {
                    outcomes.append(o)
                }
            } catch {
                refusals.append((g.name, error))
            }
        }
        if let (name, error) = refusals.first {
            guard !outcomes.isEmpty else { throw error }
            logger.warning("abort refused in some groups", metadata: ["id": "\(id)", "group": "\(name)", "error": "\(error)", "groups": "\(refusals.count)"])
        }
        guard !outcomes.isEmpty else {
            throw BrokerError(.invalidArgument, "message \(id) is ready and no group consumes its partition yet: nothing to abort it in (a group that joins later would still get it)")
        }
        return outcomes.contains(.signalled) ? .signalled : outcomes.contains(.cancelled) ? .cancelled : .finished
    }

    /// The leases of `member` in `group` aborted since it last asked.
    public func abortNotices(group name: String, member: UInt64) async throws -> [DeliveryReceipt] {
        try await group(name).takeAbortNotices(member: member)
    }

    /// A continuation: settles the leased message by parking it in the wheel for
    /// `milliseconds`, not as a failed attempt, delivered again (to this group) with
    /// `state` in its `chime-state` header. Returns its id in the wheel.
    public func snooze(group name: String, member: UInt64, _ receipt: DeliveryReceipt, milliseconds: Int64, state: [UInt8]?) async throws -> MessageID {
        try Self.checkPark(milliseconds, state)
        defer { changes.bump() }
        let parked = try await group(name).snooze(member: member, receipt, milliseconds: milliseconds, callback: false) { headers in
            Self.parkedHeaders(headers, state: state, callback: nil)
        }
        return MessageID(topicID: receipt.topicID, partition: receipt.partition, kind: .scheduled, value: parked.position)
    }

    /// A callback: parks the leased message like `snooze`, until `completeCallback` with the
    /// token returned, or `timeout` ms (then it is delivered with `chime-callback: waiting`
    /// still: timed out).
    public func awaitCallback(group name: String, member: UInt64, _ receipt: DeliveryReceipt, timeout: Int64, state: [UInt8]?) async throws -> CallbackToken {
        try Self.checkPark(timeout, state)
        defer { changes.bump() }
        let nonce = UInt64.random(in: 1...UInt64.max)
        let parked = try await group(name).snooze(member: member, receipt, milliseconds: timeout, callback: true) { headers in
            Self.parkedHeaders(headers, state: state, callback: nonce)
        }
        return CallbackToken(
            id: MessageID(topicID: receipt.topicID, partition: receipt.partition, kind: .scheduled, value: parked.position), dueAt: parked.dueAt,
            nonce: nonce)
    }

    /// Completes the callback `token`: its job is delivered again at once with `payload` in
    /// `chime-callback-payload` and `chime-callback: completed`. Exactly once: the move out
    /// of the wheel is one append, and a second complete (or one after the timeout fired)
    /// is `callbackClosed`.
    public func completeCallback(_ token: CallbackToken, payload: [UInt8]) async throws {
        guard payload.count <= Self.maxStateBytes else {
            throw BrokerError(.messageTooLarge, "a callback's payload is at most \(Self.maxStateBytes) bytes, not \(payload.count)")
        }
        let p: Partition
        do {
            p = try partition(of: token.id)
        } catch {
            throw BrokerError(.callbackClosed, "no callback waits for token \(token): no such topic or partition")
        }
        defer { changes.bump() }
        let moved = try await p.completeCallback(token, payload: payload)
        // Its group's status follows it to its new place in the wheel.
        if let readyOffset = moved.readyOffset, let g = allGroups().first(where: { $0.id == moved.destination }) {
            await g.callbackCompleted(PartitionKey(topicID: token.id.topicID, partition: token.id.partition), readyOffset: readyOffset, timerID: moved.position)
        }
    }

    private static func checkPark(_ milliseconds: Int64, _ state: [UInt8]?) throws {
        guard milliseconds >= 0, milliseconds <= maxDelayMilliseconds else {
            throw BrokerError(.invalidArgument, "a job parks for 0...\(maxDelayMilliseconds) ms, not \(milliseconds)")
        }
        if let state, state.count > maxStateBytes {
            throw BrokerError(.messageTooLarge, "a parked job's state is at most \(maxStateBytes) bytes, not \(state.count)")
        }
    }

    /// The headers of a job parking again: its earlier state and callback go, the new ones come.
    static func parkedHeaders(_ headers: [RecordHeader], state: [UInt8]?, callback nonce: UInt64?) -> [RecordHeader] {
        let gone: Set<String> = [ReservedHeader.state, ReservedHeader.callback, ReservedHeader.callbackNonce, ReservedHeader.callbackPayload]
        var out = headers.filter { !gone.contains($0.name) }
        if let state { out.append(RecordHeader(name: ReservedHeader.state, value: state)) }
        if let nonce {
            out.append(RecordHeader(name: ReservedHeader.callback, value: Array(CallbackMark.waiting.utf8)))
            out.append(RecordHeader(name: ReservedHeader.callbackNonce, value: ReservedHeader.int64(Int64(bitPattern: nonce))))
        }
        return out
    }
}

/// The values of `chime-callback`.
enum CallbackMark {
    static let waiting = "waiting"
    static let completed = "completed"
}

extension Partition {
    /// The timer entry still pending that holds a retry or a parked job bound for the group
    /// `destination`, of the message first stored at `readyOffset` (the last one found):
    /// what a restart made the group forget. Reads at most `MessageSearch.maxBytes` of the
    /// timer log, entries as written (not copies compaction moved).
    func findPending(destination: UInt32, readyOffset: Int64) async throws -> (timerID: Int64, due: Int64)? {
        var found: (timerID: Int64, due: Int64)?
        var read = 0
        let chunk = 4 << 20
        try timerLog.scan(from: timerLog.startOffset, chunkBytes: chunk, while: { read < MessageSearch.maxBytes }) { entries, from in
            read += chunk
            for e in entries where e.kind == .message && e.position >= from {
                guard let m = try? e.message(), m.destination == destination, RecordMeta.split(m.headers).meta.readyOffset == readyOffset else { continue }
                found = (e.position, m.dueAt)
            }
        }
        guard let found, case .pending = try await loop.state(of: found.timerID) else { return nil }
        return found
    }

    /// Moves the job parked under `token` to now, marked completed with `payload` (see
    /// `Broker.completeCallback`).
    /// Returns where it went: its new timer position, its destination (a group's id) and its
    /// ready-log offset.
    func completeCallback(_ token: CallbackToken, payload: [UInt8]) async throws -> (position: Int64, destination: UInt32, readyOffset: Int64?) {
        struct NotWaiting: Error {}
        let nonce = ReservedHeader.int64(Int64(bitPattern: token.nonce))
        let closed = BrokerError(.callbackClosed, "no callback waits for token \(token): it was completed already, timed out, or never issued")
        let found = Mutex<(destination: UInt32, readyOffset: Int64?)>((0, nil))
        let position: Int64
        do {
            position = try await loop.reschedule(token.id.value, dueAt: token.dueAt, to: clock.now()) { message in
                guard message.headers.contains(where: { $0.name == ReservedHeader.callbackNonce && $0.value == nonce }),
                    message.headers.contains(where: { $0.name == ReservedHeader.callback && $0.value == Array(CallbackMark.waiting.utf8) })
                else { throw NotWaiting() }
                let destination = message.destination
                found.withLock { $0 = (destination, RecordMeta.split(message.headers).meta.readyOffset) }
                message.headers.removeAll { $0.name == ReservedHeader.callback || $0.name == ReservedHeader.callbackPayload }
                message.headers.append(RecordHeader(name: ReservedHeader.callback, value: Array(CallbackMark.completed.utf8)))
                message.headers.append(RecordHeader(name: ReservedHeader.callbackPayload, value: payload))
            }
        } catch is NotWaiting {
            throw closed
        } catch let error as WheelError {
            switch error.code {
            case .unknownMessage, .notPending, .beingFired, .dueOutOfRange: throw closed
            default: throw BrokerError(error, "completing callback \(token)")
            }
        }
        try await timerLog.waitForAcknowledgement(timerLog.endOffset)
        return found.withLock { (position, $0.destination, $0.readyOffset) }
    }
}
