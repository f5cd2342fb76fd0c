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
        var pending: Int { receipts.count + inFlight }
    }

    /// Most receipts one ack request carries.
    static let maxReceipts = 10_000
    /// Receipts of one member queued or in flight before `ack()` waits for room.
    static let maxQueued = 20_000

    private let client: ChimeClient
    private let logger: Logger
    private var queues: [Member: Queue] = [:]
    private var waitingForRoom: [Member: [CheckedContinuation<Void, Never>]] = [:]
    private var waitingForIdle: [Member: [CheckedContinuation<Void, Never>]] = [:]
    private(set) var failures = AckFailures()

    init(client: ChimeClient, logger: Logger) {
        self.client = client
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
        await withCheckedContinuation { waitingForIdle[member, default: []].append($0) }
    }

    /// Waits until every ack queued so far, of every member, has been answered.
    func flushAll() async {
        for member in Array(queues.keys) { await flush(group: member.group, memberID: member.memberID) }
    }

    private func enqueue(_ receipt: WireReceipt, waiter: CheckedContinuation<Void, any Error>?, for member: Member) {
        queues[member, default: Queue()].receipts.append(receipt)
        queues[member]!.waiters.append(waiter)
        if !queues[member]!.busy {
            queues[member]!.busy = true
            Task { await self.drain(member) }
        }
    }

    private func drain(_ member: Member) async {
        while let q = queues[member], !q.receipts.isEmpty {
            let n = min(q.receipts.count, Self.maxReceipts)
            let receipts = Array(q.receipts.prefix(n))
            var waiters = Array(q.waiters.prefix(n))
            queues[member]!.receipts.removeFirst(n)
            queues[member]!.waiters.removeFirst(n)
            queues[member]!.inFlight = n
            var results: [Result<Void, any Error>]
            var connectionLost = false
            do {
                let reply = try await client.call(
                    .ack, Settle(group: member.group, memberID: member.memberID, receipts: receipts), as: SettleReply.self)
                if reply.results.count == n {
                    results = reply.results.map { refused in refused.map { .failure(ClientError($0)) } ?? .success(()) }
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
