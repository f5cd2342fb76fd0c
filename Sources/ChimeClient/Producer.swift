import ChimeProtocol
import Logging

/// How the client batches and stamps what it publishes.
public struct ProducerOptions: Sendable {
    /// Stamp every batch with this client's producer id and a per-partition sequence, so a
    /// batch sent again after a lost connection is stored once (the broker answers the
    /// repeat with the first ids). Off: a publish cut off by a lost connection fails, and
    /// sending it again may store it twice.
    public var idempotent: Bool
    /// How long a batch waits for more messages before it goes. Zero sends at once what has
    /// queued up while the previous batch to that partition was in flight.
    public var linger: Duration
    /// A batch closes at this many records or bytes (whole publish calls, never split).
    /// Keep the bytes well below the broker's frame limit (`max_frame_bytes`, 16 MiB by
    /// default): a frame over it closes the connection, and the batch fails as lost.
    public var maxBatchRecords: Int
    public var maxBatchBytes: Int
    /// Times a batch is sent before a lost connection is reported to its callers
    /// (idempotent only).
    public var maxAttempts: Int

    public init(idempotent: Bool = true, linger: Duration = .zero, maxBatchRecords: Int = 20_000, maxBatchBytes: Int = 4 << 20, maxAttempts: Int = 5) {
        self.idempotent = idempotent
        self.linger = linger
        self.maxBatchRecords = maxBatchRecords
        self.maxBatchBytes = maxBatchBytes
        self.maxAttempts = maxAttempts
    }
}

/// The client's publishing side. Messages for one partition queue in a lane; a lane has at
/// most one batch in flight, and everything that queued meanwhile goes as the next batch.
/// So a lone caller waits one round trip per publish, and many concurrent callers share
/// round trips, with no timer to tune. One batch in flight per lane is also what keeps
/// sequences simple: a refused batch stores nothing, so the next one reuses its sequence.
///
/// Routing matches the broker's: by key (FNV-1a-64 of the key, else of the dedup key,
/// modulo the partition count), else all keyless records of one call to the next partition
/// in turn. The partition count comes from the broker's topic list and is cached.
actor Producer {
    private struct Pending {
        let records: [OutgoingRecord]
        let bytes: Int
        let continuation: CheckedContinuation<[PublishReply.Outcome], any Error>
        /// Sent on its own: it was part of a batch the broker refused as a whole.
        var alone = false
    }

    private struct Lane {
        var producerID: Int64
        var sequence: Int32 = 0
        var queue: [Pending] = []
        var busy = false
    }

    private struct LaneKey: Hashable {
        let topic: String
        let partition: Int32
    }

    private struct Route {
        let partitions: Int
        var turn: Int
    }

    private let client: ChimeClient
    private let options: ProducerOptions
    private let logger: Logger
    private var routes: [String: Route] = [:]
    private var lanes: [LaneKey: Lane] = [:]
    private var random = SystemRandomNumberGenerator()
    /// `flush()` callers, resumed when no lane is busy.
    private var idleWaiters: [CheckedContinuation<Void, Never>] = []

    init(client: ChimeClient, options: ProducerOptions, logger: Logger) {
        self.client = client
        self.options = options
        self.logger = logger
    }

    /// Publishes `records` (to `partition`, or routed); one outcome per record, in order.
    func publish(_ records: [OutgoingRecord], to topic: String, partition: Int32?) async throws -> [PublishReply.Outcome] {
        guard !records.isEmpty else { return [] }
        let parts: [(partition: Int32, indices: [Int])]
        if let partition {
            parts = [(partition, Array(records.indices))]
        } else if let split = try await split(records, topic: topic) {
            parts = split
        } else {
            // A topic the broker has not told us about yet: one plain publish lets it route
            // (and create the topic when it creates topics on first use); later calls know
            // its partitions. This first call is not idempotent.
            let outcomes = try await client.send(Publish(topic: topic, records: records))
            routes[topic] = nil
            return outcomes
        }
        if parts.count == 1 {
            return try await enqueue(records, lane: LaneKey(topic: topic, partition: parts[0].partition))
        }
        var out = [PublishReply.Outcome?](repeating: nil, count: records.count)
        try await withThrowingTaskGroup(of: ([Int], [PublishReply.Outcome]).self) { group in
            for part in parts {
                let subset = part.indices.map { records[$0] }
                let lane = LaneKey(topic: topic, partition: part.partition)
                group.addTask { (part.indices, try await self.enqueue(subset, lane: lane)) }
            }
            for try await (indices, outcomes) in group {
                for (k, i) in indices.enumerated() { out[i] = outcomes[k] }
            }
        }
        return out.map { $0! }
    }

    /// Forgets what it knows of `topic` (after the broker said it changed or went away).
    func forget(_ topic: String) {
        routes[topic] = nil
    }

    // MARK: - Routing

    /// FNV-1a, 64 bits: the broker's key hash (ChimeBroker's `Broker.partition(forKey:)`).
    static func partition(forKey key: [UInt8], partitions: Int) -> Int32 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in key {
            h ^= UInt64(b)
            h = h &* 0x0000_0100_0000_01b3
        }
        return Int32(h % UInt64(partitions))
    }

    private func split(_ records: [OutgoingRecord], topic: String) async throws -> [(partition: Int32, indices: [Int])]? {
        if routes[topic] == nil {
            // Another call may have filled it in while this one waited for the list.
            let listed = try await client.topics()
            for t in listed where routes[t.name] == nil {
                routes[t.name] = Route(partitions: Int(t.settings.partitions), turn: Int.random(in: 0..<Int(max(1, t.settings.partitions))))
            }
        }
        guard var route = routes[topic], route.partitions > 0 else { return nil }
        route.turn &+= 1
        routes[topic] = route
        let turn = Int32(route.turn % route.partitions)
        var byPartition: [Int32: [Int]] = [:]
        for (i, r) in records.enumerated() {
            let p = (r.key ?? r.dedupKey).map { Self.partition(forKey: $0, partitions: route.partitions) } ?? turn
            byPartition[p, default: []].append(i)
        }
        return byPartition.map { ($0.key, $0.value) }
    }

    // MARK: - Lanes

    private func enqueue(_ records: [OutgoingRecord], lane key: LaneKey) async throws -> [PublishReply.Outcome] {
        var bytes = 0
        for r in records { bytes += r.body.count + (r.key?.count ?? 0) + (r.dedupKey?.count ?? 0) + 32 }
        return try await withCheckedThrowingContinuation { continuation in
            if lanes[key] == nil { lanes[key] = Lane(producerID: newProducerID()) }
            lanes[key]!.queue.append(Pending(records: records, bytes: bytes, continuation: continuation))
            if !lanes[key]!.busy {
                lanes[key]!.busy = true
                // A task of its own: callers already queued on this actor get into the batch.
                Task { await self.drain(key) }
            }
        }
    }

    private func newProducerID() -> Int64 { Int64.random(in: 1...Int64.max, using: &random) }

    /// Sends the lane's queue batch after batch until it is empty.
    private func drain(_ key: LaneKey) async {
        if options.linger > .zero { try? await Task.sleep(for: options.linger) }
        while let batch = takeBatch(key) {
            await send(batch, lane: key)
        }
        lanes[key]?.busy = false
        if !idleWaiters.isEmpty && !lanes.values.contains(where: \.busy) {
            let waiters = idleWaiters
            idleWaiters = []
            for w in waiters { w.resume() }
        }
    }

    /// Returns once every lane has sent what it holds (answered or failed).
    func flush() async {
        guard lanes.values.contains(where: \.busy) else { return }
        await withCheckedContinuation { idleWaiters.append($0) }
    }

    private func takeBatch(_ key: LaneKey) -> [Pending]? {
        guard var lane = lanes[key], !lane.queue.isEmpty else { return nil }
        var n = 1
        if !lane.queue[0].alone {
            var records = lane.queue[0].records.count
            var bytes = lane.queue[0].bytes
            while n < lane.queue.count, !lane.queue[n].alone {
                let next = lane.queue[n]
                guard records + next.records.count <= options.maxBatchRecords, bytes + next.bytes <= options.maxBatchBytes,
                    records + next.records.count <= Publish.maxRecords
                else { break }
                records += next.records.count
                bytes += next.bytes
                n += 1
            }
        }
        let batch = Array(lane.queue.prefix(n))
        lane.queue.removeFirst(n)
        lanes[key] = lane
        return batch
    }

    private func send(_ batch: [Pending], lane key: LaneKey) async {
        let records = batch.count == 1 ? batch[0].records : batch.flatMap(\.records)
        var attempt = 0
        var regained = false
        while true {
            attempt += 1
            let lane = lanes[key]!
            let stamp = options.idempotent ? (lane.producerID, lane.sequence) : (-1, -1)
            do {
                let outcomes = try await client.send(
                    Publish(topic: key.topic, partition: key.partition, producerID: stamp.0, sequence: stamp.1, records: records))
                if options.idempotent { advance(key, by: records.count) }
                var at = 0
                for p in batch {
                    p.continuation.resume(returning: Array(outcomes[at..<at + p.records.count]))
                    at += p.records.count
                }
                return
            } catch let error as ClientError where error.isDisconnected && options.idempotent && attempt < options.maxAttempts {
                // Sent again with the same stamp: stored once whichever way the first went.
                logger.debug("publish batch sent again after a lost connection", metadata: ["attempt": "\(attempt)"])
                continue
            } catch let error as ClientError where error.wireCode == .sequenceGap && options.idempotent && !regained {
                // The broker does not know this producer's sequence (its data was replaced,
                // or the topic made again). Nothing of this batch was stored: a new
                // producer id starts again at 0.
                logger.warning("producer sequence unknown to the broker; continuing under a new producer id", metadata: ["topic": "\(key.topic)"])
                lanes[key]!.producerID = newProducerID()
                lanes[key]!.sequence = 0
                regained = true
                continue
            } catch {
                if let e = error as? ClientError, e.wireCode == .unknownTopic || e.wireCode == .badPartition { routes[key.topic] = nil }
                // Only the broker's own refusal says nothing was stored. A lost connection
                // (or an answer that makes no sense) leaves it unknown: sending any part
                // again could store it twice.
                let refused = (error as? ClientError).map { !$0.isDisconnected } ?? false
                if refused && batch.count > 1 {
                    // Refused as a whole (one caller's bad message?): each caller's part goes
                    // again on its own, so only the bad one fails. Nothing was stored.
                    var parts = batch
                    for i in parts.indices { parts[i].alone = true }
                    lanes[key]!.queue.insert(contentsOf: parts, at: 0)
                } else {
                    if !refused && options.idempotent {
                        // The broker may hold this batch under the lane's stamp: the next
                        // batch sent with the same stamp would be taken for its repeat and
                        // dropped. A new producer id starts clean.
                        lanes[key]!.producerID = newProducerID()
                        lanes[key]!.sequence = 0
                    }
                    for p in batch { p.continuation.resume(throwing: error) }
                }
                return
            }
        }
    }

    private func advance(_ key: LaneKey, by count: Int) {
        let next = Int64(lanes[key]!.sequence) + Int64(count)
        if next > Int64(Int32.max) - Int64(Publish.maxRecords) {
            // Sequences are 31 bits: a fresh producer id before they run out.
            lanes[key]!.producerID = newProducerID()
            lanes[key]!.sequence = 0
        } else {
            lanes[key]!.sequence = Int32(next)
        }
    }
}
