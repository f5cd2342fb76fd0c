import ChimeProtocol
import NIOCore

/// A message handed to this consumer under a lease.
public struct ConsumedMessage: Sendable {
    public let delivery: WireDelivery
    let client: ChimeClient
    let group: String
    let memberID: UInt64

    public var body: [UInt8] { delivery.body }
    public var key: [UInt8]? { delivery.key }
    public var id: WireMessageID { delivery.id }
    public var attempt: Int { Int(delivery.attempt) }

    private func settle(_ opcode: Opcode, milliseconds: Int64 = 0, reason: String? = nil) async throws {
        let reply = try await client.call(
            opcode, Settle(group: group, memberID: memberID, receipts: [delivery.receipt], milliseconds: milliseconds, reason: reason),
            as: SettleReply.self)
        if let refused = reply.results.first ?? nil { throw ClientError(refused) }
    }

    /// Done: queues the ack and returns. Queued acks go to the broker in the background,
    /// together (one request per round trip), and the broker records them durably before
    /// answering. Until it has, a crash of this process or of the broker, or a lease that
    /// ran out meanwhile, means the message is delivered again: at least once, never lost.
    /// `ChimeClient.close()` and `Iterator.leave()` wait for the queued acks;
    /// `ChimeClient.ackFailures` counts the ones the broker refused. Waits only when
    /// 20,000 acks of this member are queued already.
    public func ack() async throws {
        try await client.acker.ack(group: group, memberID: memberID, receipt: delivery.receipt, waitForBroker: false)
    }
    /// Done, and returns only once the broker has recorded the ack durably; throws if it
    /// refused it (the lease had ended: the message is delivered again). Acks waiting this
    /// way still travel together with the others.
    public func ackDurably() async throws {
        try await client.acker.ack(group: group, memberID: memberID, receipt: delivery.receipt, waitForBroker: true)
    }
    /// Deliver again: at once, or after `delay` milliseconds (through the broker's wheel).
    public func nack(delay: Int64 = 0, reason: String? = nil) async throws { try await settle(.nack, milliseconds: delay, reason: reason) }
    /// Keep the lease `milliseconds` longer (a long task's heartbeat).
    public func extend(by milliseconds: Int64) async throws { try await settle(.extend, milliseconds: milliseconds) }
    /// Give up: to the group's dead-letter topic.
    public func term(reason: String) async throws { try await settle(.term, reason: reason) }
    /// Give it back unprocessed: delivered again at once, the delivery not counted as an
    /// attempt (protocol version 5).
    public func release() async throws { try await settle(.release) }
}

/// `for try await message in client.consume(group:topics:)`. Fetches wait on the broker
/// (long poll), so an idle consumer sends one request every few seconds.
public struct Consumer: AsyncSequence, Sendable {
    public typealias Element = ConsumedMessage
    let client: ChimeClient
    let group: String
    let topics: [String]
    let member: String
    let prefetch: Int
    /// Joining creates topics that do not exist; else the consumer waits for them.
    let createTopics: Bool

    public func makeAsyncIterator() -> Iterator {
        Iterator(consumer: self)
    }

    public struct Iterator: AsyncIteratorProtocol {
        let consumer: Consumer
        private var memberID: UInt64?
        private var buffered: [WireDelivery] = []
        private var index = 0
        /// The connection the buffered deliveries came on.
        private var fetchedOn = -1

        init(consumer: Consumer) { self.consumer = consumer }

        /// Messages already fetched and not handed out yet: `next()` returns the next one
        /// without a round trip (a consumer can write its output when this turns false).
        public var hasBuffered: Bool { index < buffered.count }

        /// Everything buffered (at least one message, at most `prefetch`), waiting for a fetch
        /// when nothing is: for consumers that work on batches and ack them with
        /// `ChimeClient.ack(_:)`, one request per batch.
        public mutating func nextBatch() async throws -> [ConsumedMessage] {
            guard let first = try await next() else { return [] }
            var batch = [first]
            batch.reserveCapacity(buffered.count - index + 1)
            while index < buffered.count {
                batch.append(ConsumedMessage(delivery: buffered[index], client: consumer.client, group: consumer.group, memberID: memberID!))
                index += 1
            }
            return batch
        }

        public mutating func next() async throws -> ConsumedMessage? {
            dropStale()
            while index >= buffered.count {
                try Task.checkCancellation()
                try await fetch()
            }
            defer { index += 1 }
            return ConsumedMessage(delivery: buffered[index], client: consumer.client, group: consumer.group, memberID: memberID!)
        }

        /// What is buffered, or else what one fetch brings (it waits up to 2 s on the broker
        /// for the first message): possibly nothing. For a caller that must look up between
        /// fetches (a worker pool noticing its shutdown).
        public mutating func fetchBatch() async throws -> [ConsumedMessage] {
            dropStale()
            if index >= buffered.count { try await fetch() }
            defer { index = buffered.count }
            return buffered[index...].map { ConsumedMessage(delivery: $0, client: consumer.client, group: consumer.group, memberID: memberID!) }
        }

        /// Tells the broker this member is alive (a member that neither fetches nor settles
        /// for its group's session timeout is dropped, and its leases released). Nothing if
        /// it has not joined; if the broker dropped it already, the next fetch joins again.
        public mutating func heartbeat() async throws {
            guard let member = memberID else { return }
            do {
                _ = try await consumer.client.call(.heartbeat, MemberRef(group: consumer.group, memberID: member), as: WireMembership.self)
            } catch let error as ClientError where error.wireCode == .unknownMember {
                memberID = nil
                buffered = []
                index = 0
            }
        }

        /// Deliveries fetched on a connection that has gone are stale: the broker may have
        /// restarted and handed them to someone else. They are dropped (and the member joins
        /// again: the broker may not know it any more).
        private mutating func dropStale() {
            if index < buffered.count, consumer.client.connector.liveGeneration() != fetchedOn {
                buffered = []
                index = 0
                memberID = nil
            }
        }

        /// One fetch (joining first if needed) into the buffer; nothing is fine.
        private mutating func fetch() async throws {
            let member = try await joined()
            do {
                // The connection the fetch goes out on, noted before: one opened while it was
                // out must not make what came over the old one look fresh.
                _ = try await consumer.client.connector.connection()
                let generation = consumer.client.connector.liveGeneration() ?? -1
                let deliveries = try await consumer.client.call(
                    .fetch, Fetch(group: consumer.group, memberID: member, max: UInt32(Swift.max(1, consumer.prefetch)), waitMilliseconds: 2_000),
                    as: Deliveries.self
                ).deliveries
                // Fetched over a connection that has gone: stale. (The member id is kept: the
                // broker says 110 if it no longer knows it, and the member joins again.)
                guard generation == consumer.client.connector.liveGeneration() else { return }
                buffered = deliveries
                index = 0
                fetchedOn = generation
            } catch let error as ClientError where error.wireCode == .unknownMember || error.isDisconnected {
                memberID = nil  // dropped by the broker, or the connection went: join again
                buffered = []
                index = 0
            }
        }

        /// Waits for this member's queued acks, then leaves the group (its partitions go to
        /// the other members at once, instead of after the session timeout). Call when done
        /// iterating by hand.
        public mutating func leave() async {
            guard let member = memberID else { return }
            memberID = nil
            await consumer.client.acker.flush(group: consumer.group, memberID: member)
            _ = try? await consumer.client.call(.leave, MemberRef(group: consumer.group, memberID: member), as: Empty.self)
        }

        /// Joins the group unless joined. A topic that does not exist yet is waited for
        /// (checked again every second) unless the consumer creates topics.
        private mutating func joined() async throws -> UInt64 {
            if let memberID { return memberID }
            while true {
                let connection = try await consumer.client.connector.connection()
                let join = Join(
                    group: consumer.group, member: consumer.member, topics: consumer.topics, createTopics: consumer.createTopics,
                    version: connection.version.withLock { $0 })
                do {
                    let m = try await connection.request(.join, join, as: WireMembership.self)
                    memberID = m.memberID
                    return m.memberID
                } catch let error as ClientError where error.wireCode == .unknownTopic && !consumer.createTopics {
                    try await Task.sleep(for: .seconds(1))
                }
            }
        }
    }
}
