import ChimeProtocol
import Logging

/// Acks of one member go to the broker together, in the background: each `ack()` queues
/// its receipt and returns, and one request carries everything that queued while the
/// previous one was in flight. A consumer acking every message as it finishes it costs one
/// round trip per batch, not per message, and does not wait for it. Acks that must be
/// known durable wait for the broker's answer (`waitForBroker`), each with its own result.
///
/// Bounded: once `maxQueued` receipts of a member are queued or in flight, `ack()` waits
/// for room, so a consumer faster than its broker slows down instead of growing the queue.
///
/// Lingering: a member whose last request carried `lingerAfter` receipts or more acks
/// faster than round trips carry them; its next request waits `linger` first (from the
/// answer to that one) and carries what queued meanwhile too. Each ack request costs the
/// broker a journal record and a sync per partition it touches, so fewer, larger requests
/// cost it less CPU per message; a trickle of acks (slow jobs, one key in order) still goes
/// out at once, and a durable ack or a flush waiting on the queue is never held back.
actor AckBatcher {
    private struct Member: Hashable {
        let group: String
        let memberID: UInt64
    }

    /// One member's receipts not answered yet: queued ones (each with its waiter, nil for
    /// an ack that did not wait) and how many are in the request in flight.
    private struct Queue {
        var receipts: [WireReceipt] = []
        var waiters: [CheckedContinuation<Void, any Error>?] = []
        var inFlight = 0
        var busy = false
        /// Receipts in the last request sent: at `lingerAfter` or more the next one lingers.
        var lastSent = 0
        /// Queued receipts whose `ack` waits for the broker's answer.
        var waiting = 0
        var pending: Int { receipts.count + inFlight }
    }

    /// Most receipts one ack request carries.
    static let maxReceipts = 10_000
    /// Receipts of one member queued or in flight before `ack()` waits for room.
    static let maxQueued = 20_000
    /// Receipts in a member's last request from which its next request lingers.
    static let lingerAfter = 64

    private let client: ChimeClient
    private let logger: Logger
    private let linger: Duration
    private var queues: [Member: Queue] = [:]
    private var waitingForRoom: [Member: [CheckedContinuation<Void, Never>]] = [:]
    private var waitingForIdle: [Member: [CheckedContinuation<Void, Never>]] = [:]
    /// Members whose drain lingers: woken by the timer, or early by a flush, a durable ack
    /// or a full request's worth of receipts.
    private var lingering: [Member: (wake: CheckedContinuation<Void, Never>, timer: Task<Void, Never>)] = [:]
    private(set) var failures = AckFailures()

    init(client: ChimeClient, linger: Duration, logger: Logger) {
        self.client = client
        self.linger = linger
        self.logger = logger
    }

    /// Queues an ack of `receipt`. `waitForBroker`: returns once the broker answered it
    /// (durably recorded, or refused: thrown); otherwise once it is queued, and a refusal
    /// counts in `failures` (the message is delivered again).
    func ack(group: String, memberID: UInt64, receipt: WireReceipt, waitForBroker: Bool) async throws {
        let member = Member(group: group, memberID: memberID)
        while (queues[member]?.pending ?? 0) >= Self.maxQueued {
            await withCheckedContinuation { waitingForRoom[member, default: []].append($0) }
        }
        if waitForBroker {
            try await withCheckedThrowingContinuation { (c: CheckedContinuation<Void, any Error>) in
                enqueue(receipt, waiter: c, for: member)
            }
        } else {
            enqueue(receipt, waiter: nil, for: member)
        }
    }

    /// Waits until every ack of `memberID` queued so far has been answered.
    func flush(group: String, memberID: UInt64) async {
        let member = Member(group: group, memberID: memberID)
        guard queues[member] != nil else { return }
        await withCheckedContinuation {
            waitingForIdle[member, default: []].append($0)
            endLinger(member)
        }
    }

    /// Waits until every ack queued so far, of every member, has been answered.
    func flushAll() async {
        for member in Array(queues.keys) { await flush(group: member.group, memberID: member.memberID) }
    }

    /// Whether a member's next request waits for more acks first: its last request carried
    /// `lingerAfter` receipts or more (it acks faster than round trips carry them), nobody
    /// waits on its queue (a durable ack, a flush), and less than a full request is queued.
    static func lingers(lastSent: Int, queued: Int, waitedOn: Bool) -> Bool {
        lastSent >= lingerAfter && !waitedOn && queued < maxReceipts
    }

    /// Members whose next request is lingering now.
    var lingeringMembers: Int { lingering.count }

    private func endLinger(_ member: Member) {
        guard let l = lingering.removeValue(forKey: member) else { return }
        l.timer.cancel()
        l.wake.resume()
    }

    private func enqueue(_ receipt: WireReceipt, waiter: CheckedContinuation<Void, any Error>?, for member: Member) {
        queues[member, default: Queue()].receipts.append(receipt)
        queues[member]!.waiters.append(waiter)
        if waiter != nil { queues[member]!.waiting += 1 }
        if waiter != nil || queues[member]!.receipts.count >= Self.maxReceipts { endLinger(member) }
        if !queues[member]!.busy {
            queues[member]!.busy = true
            Task { await self.drain(member) }
        }
    }

    private func drain(_ member: Member) async {
        var lingered = false
        // After a request of `lingerAfter` or more, the next waits for the linger even when
        // nothing is queued yet: acks arriving meanwhile go in it; none, and the drain ends.
        while let q = queues[member] {
            if !lingered, linger > .zero,
                Self.lingers(lastSent: q.lastSent, queued: q.receipts.count, waitedOn: q.waiting > 0 || waitingForIdle[member] != nil)
            {
                lingered = true
                await withCheckedContinuation { wake in
                    let timer = Task { [linger] in
                        // Cancelled: the linger already ended (and another may have begun).
                        do { try await Task.sleep(for: linger) } catch { return }
                        self.endLinger(member)
                    }
                    lingering[member] = (wake, timer)
                }
                continue
            }
            guard !q.receipts.isEmpty else { break }
            lingered = false
            let n = min(q.receipts.count, Self.maxReceipts)
            let receipts = Array(q.receipts.prefix(n))
            var waiters = Array(q.waiters.prefix(n))
            queues[member]!.receipts.removeFirst(n)
            queues[member]!.waiters.removeFirst(n)
            queues[member]!.waiting -= waiters.reduce(0) { $0 + ($1 == nil ? 0 : 1) }
            queues[member]!.inFlight = n
            queues[member]!.lastSent = 0
            var results: [Result<Void, any Error>]
            var connectionLost = false
            do {
                let reply = try await client.call(
                    .ack, Settle(group: member.group, memberID: member.memberID, receipts: receipts), as: SettleReply.self)
                if reply.results.count == n {
                    results = reply.results.map { refused in refused.map { .failure(ClientError($0)) } ?? .success(()) }
                    // Answered: the member's rate decides whether the next request lingers.
                    // (After a failed request it does not: the broker may be back, or down.)
                    queues[member]!.lastSent = n
                } else {
                    let e = ClientError.protocolViolation("the broker answered \(reply.results.count) results for \(n) acks")
                    results = Array(repeating: .failure(e), count: n)
                }
            } catch {
                results = Array(repeating: .failure(error), count: n)
                connectionLost = (error as? ClientError)?.isDisconnected == true
            }
            if connectionLost, let rest = queues[member], !rest.receipts.isEmpty {
                // The broker is out of reach (the client already tried to connect again):
                // what queued behind fails with it now, rather than a request at a time.
                waiters.append(contentsOf: rest.waiters)
                results.append(contentsOf: Array(repeating: results[0], count: rest.receipts.count))
                queues[member]!.receipts.removeAll()
                queues[member]!.waiters.removeAll()
                queues[member]!.waiting = 0
            }
            var refused = 0
            for (waiter, result) in zip(waiters, results) {
                if let waiter {
                    waiter.resume(with: result)
                } else if case .failure(let error) = result {
                    refused += 1
                    failures.record(error)
                }
            }
            if refused > 0 {
                logger.warning(
                    "acks not accepted; those messages will be delivered again",
                    metadata: ["group": "\(member.group)", "acks": "\(refused)", "error": "\(failures.last.map { "\($0)" } ?? "")"])
            }
            queues[member]!.inFlight = 0
            for c in waitingForRoom.removeValue(forKey: member) ?? [] { c.resume() }
        }
        queues[member] = nil
        for c in waitingForRoom.removeValue(forKey: member) ?? [] { c.resume() }
        for c in waitingForIdle.removeValue(forKey: member) ?? [] { c.resume() }
    }
}

/// Acks queued without waiting (`ConsumedMessage.ack()`) that the broker did not accept:
/// the lease had ended, the member was gone, the connection failed. Each such message is
/// delivered again, as if it had not been acked.
public struct AckFailures: Sendable {
    public private(set) var count = 0
    /// The last error.
    public private(set) var last: (any Error)?

    mutating func record(_ error: any Error) {
        count += 1
        last = error
    }
}
