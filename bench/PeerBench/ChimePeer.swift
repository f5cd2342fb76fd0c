import Foundation
import ChimeClient
import ChimeProtocol
import Logging

/// Chime through its own Swift client: `chime serve` with the default durability
/// (`always`: every publish acknowledged after its fsync, syncs shared by concurrent
/// publishes), one topic of 4 partitions, one consumer group.
struct ChimePeer: Peer {
    let executable: String
    let bodySize: Int
    let system = "chime"
    let durability = "always (fsync before ack, group commit)"
    static let topic = "suite"
    static let group = "suite-workers"

    func command(data: String, port: Int) -> (executable: String, arguments: [String]) {
        let environment = ProcessInfo.processInfo.environment
        let admin = environment["CHIME_BENCH_ADMIN"].map { ["--admin-port", $0] } ?? ["--no-admin"]
        // Extra `serve` options for an experiment (space-separated), never set by the suite.
        let extra = environment["CHIME_BENCH_SERVE_ARGS"].map { $0.split(separator: " ").map(String.init) } ?? []
        return (executable, ["serve", "--data", data, "--port", "\(port)"] + admin + extra)
    }

    private func client(port: Int, name: String) -> ChimeClient {
        var logger = Logger(label: "peer-bench")
        logger.logLevel = .critical
        return ChimeClient(ClientOptions(port: port, name: name, connectAttempts: 1), logger: logger)
    }

    func isServing(port: Int) async -> Bool {
        let c = client(port: port, name: "peer-bench-probe")
        defer { Task { await c.close() } }
        return (try? await c.topics()) != nil
    }

    func setUp(port: Int) async throws {
        let c = client(port: port, name: "peer-bench-setup")
        _ = try await c.createTopic(
            Self.topic,
            settings: WireTopicSettings(
                partitions: 4, retentionMilliseconds: nil, retentionBytes: nil, maxMessageBytes: 1 << 20, maxAttempts: 5,
                dedupWindowMilliseconds: 60_000))
        await c.close()
    }

    func producer(port: Int) async throws -> any PeerProducer {
        let c = client(port: port, name: "peer-bench-producer")
        _ = try await c.topics()  // connected, partitions known, before any clock starts
        return ChimeProducer(client: c, body: [UInt8](repeating: 0x61, count: bodySize))
    }

    func consumer(port: Int, index: Int) async throws -> any PeerConsumer {
        ChimeConsumer(client: client(port: port, name: "peer-bench-consumer-\(index)"))
    }

    func scheduledCount(port: Int) async throws -> Int {
        let c = client(port: port, name: "peer-bench-stats")
        defer { Task { await c.close() } }
        let stats = try await c.stats(topics: [Self.topic])
        return stats.topics.flatMap(\.partitions).reduce(0) { $0 + Int($1.scheduled) }
    }

    func mover(port: Int) async throws -> (any PeerMover)? { nil }

    struct ChimeProducer: PeerProducer {
        let client: ChimeClient
        let body: [UInt8]
        func publish(_ dueTimes: [Int64?]) async throws {
            _ = try await client.publish(dueTimes.map { OutgoingRecord(due: $0.map(WireDue.at), body: body) }, to: ChimePeer.topic)
        }
        func close() async { await client.close() }
    }

    /// One group member; a batch is whatever one fetch brought, acked in one request.
    final class ChimeConsumer: PeerConsumer, @unchecked Sendable {
        let client: ChimeClient
        // Used by one task at a time (the consumer's loop).
        private var iterator: Consumer.Iterator

        init(client: ChimeClient, group: String = ChimePeer.group, topic: String = ChimePeer.topic) {
            self.client = client
            iterator = client.consume(group: group, topics: [topic], prefetch: 5_000).makeAsyncIterator()
        }

        func take(max: Int) async throws -> Taken {
            let batch = try await iterator.nextBatch()
            return Taken(dueTimes: batch.map(\.delivery.dueAt), token: batch)
        }

        func ack(_ taken: Taken) async throws -> Int {
            let batch = taken.token as! [ConsumedMessage]
            var done = 0
            for result in try await client.ack(batch) {
                guard let refused = result else {
                    done += 1
                    continue
                }
                // Fenced by a rebalance (members joining), or the lease gone: delivered again.
                guard [111, 112, 114].contains(refused.code) else { throw refused }
            }
            return done
        }

        func close() async {
            await iterator.leave()
            await client.close()
        }
    }
}
