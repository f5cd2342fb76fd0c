import ChimeProtocol

/// Acks from many messages of one member go to the broker together: each `ack()` queues
/// its receipt, and one request carries everything that queued while the previous one
/// was in flight. A consumer acking every message as it finishes it costs one round trip
/// per batch, not per message; each caller still gets its own result.
actor AckBatcher {
    private struct Member: Hashable {
        let group: String
        let memberID: UInt64
    }

    private struct Waiting {
        var receipts: [WireReceipt] = []
        var continuations: [CheckedContinuation<Void, any Error>] = []
        var busy = false
    }

    /// Most receipts one ack request carries.
    static let maxReceipts = 10_000

    private let client: ChimeClient
    private var waiting: [Member: Waiting] = [:]

    init(client: ChimeClient) { self.client = client }

    func ack(group: String, memberID: UInt64, receipt: WireReceipt) async throws {
        let member = Member(group: group, memberID: memberID)
        try await withCheckedThrowingContinuation { (c: CheckedContinuation<Void, any Error>) in
            waiting[member, default: Waiting()].receipts.append(receipt)
            waiting[member]!.continuations.append(c)
            if !waiting[member]!.busy {
                waiting[member]!.busy = true
                Task { await self.drain(member) }
            }
        }
    }

    private func drain(_ member: Member) async {
        while let w = waiting[member], !w.receipts.isEmpty {
            let n = min(w.receipts.count, Self.maxReceipts)
            let receipts = Array(w.receipts.prefix(n))
            let continuations = Array(w.continuations.prefix(n))
            waiting[member]!.receipts.removeFirst(n)
            waiting[member]!.continuations.removeFirst(n)
            do {
                let reply = try await client.call(
                    .ack, Settle(group: member.group, memberID: member.memberID, receipts: receipts), as: SettleReply.self)
                guard reply.results.count == n else {
                    let e = ClientError.protocolViolation("the broker answered \(reply.results.count) results for \(n) acks")
                    for c in continuations { c.resume(throwing: e) }
                    continue
                }
                for (c, refused) in zip(continuations, reply.results) {
                    if let refused { c.resume(throwing: ClientError(refused)) } else { c.resume() }
                }
            } catch {
                for c in continuations { c.resume(throwing: error) }
            }
        }
        waiting[member] = nil
    }
}
