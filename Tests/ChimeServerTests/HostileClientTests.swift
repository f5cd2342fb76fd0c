import ChimeBroker
import ChimeProtocol
import ChimeServer
import Foundation
import NIOCore
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Clients that misbehave on purpose: none of them may crash, exhaust or starve the server.
@Suite struct HostileClientTests {
    /// Waits until `condition` holds, looking every 10 ms; false if `deadline` passes first.
    static func eventually(within deadline: Duration = .seconds(20), _ condition: () async throws -> Bool) async rethrows -> Bool {
        let end = ContinuousClock.now + deadline
        while ContinuousClock.now < end {
            if try await condition() { return true }
            try? await Task.sleep(for: .milliseconds(10))
        }
        return try await condition()
    }

    /// A publish and a fetch on a fresh client: the server still serves good clients.
    static func publishAndConsume(_ c: RawClient, topic: String, group: String) async throws -> [String] {
        _ = try await c.call(.publish, Publish(topic: topic, partition: 0, records: [OutgoingRecord(body: Array("hi".utf8))]), as: PublishReply.self)
        let m = try await c.call(.join, Join(group: group, member: "good", topics: [topic]), as: WireMembership.self)
        let got = try await c.call(.fetch, Fetch(group: group, memberID: m.memberID, max: 10, waitMilliseconds: 5_000), as: Deliveries.self)
        return got.deliveries.map { String(decoding: $0.body, as: UTF8.self) }
    }

    // Disabled in the shared run: its 12,000 pipelined requests keep the process's two
    // cooperative threads busy for tens of seconds, and tests beside it (a hello, a 30 s
    // schedule) missed their deadlines. To run alone until it moves into a process of its
    // own: swift test --filter repliesToAClientThatNeverReads (with CHIME_HOSTILE_FLOOD=1).
    @Test(.enabled(if: ProcessInfo.processInfo.environment["CHIME_HOSTILE_FLOOD"] == "1", "floods the shared cooperative pool"))
    func repliesToAClientThatNeverReadsStayWithinTheConnectionBudget() async throws {
        let budget = 2 << 20
        let inFlight = 16
        let f = try await ServerFixture(ServerOptions(port: 0, maxInFlightPerConnection: inFlight, maxBufferedBytesPerConnection: budget))
        let good = try await f.client()
        // Stats of a 64-partition topic: a reply of a few KB for a request of 30 bytes.
        _ = try await good.call(
            .createTopic,
            CreateTopic(name: "wide", settings: WireTopicSettings(partitions: 64, retentionMilliseconds: nil, retentionBytes: nil, maxMessageBytes: 1 << 20, maxAttempts: 3, dedupWindowMilliseconds: 0)),
            as: WireTopic.self)
        _ = try await good.call(.createTopic, CreateTopic(name: "jobs", settings: nil), as: WireTopic.self)
        let statsReply = try await good.call(.stats, StatsRequest(topics: ["wide"], groups: [], includeMembers: false), as: StatsReply.self)
        let replyBytes = Frame.headerSize + statsReply.payload().readableBytes

        // The hostile client: hello, then 12,000 pipelined requests (tens of MB of
        // replies), sent from a thread of its own, and never a byte read.
        let hostile = try PlainSocket(port: f.server.port, receiveBuffer: 4_096)
        var bytes = ByteBuffer()
        Frame(opcode: .hello, correlationID: 1, payload: Hello(client: "hostile").payload()).write(to: &bytes)
        for i in 0..<12_000 {
            let id = UInt32(i + 2)
            switch i % 3 {
            case 0: Frame(opcode: .stats, correlationID: id, payload: StatsRequest(topics: ["wide"], groups: [], includeMembers: false).payload()).write(to: &bytes)
            case 1: Frame(opcode: .fetch, correlationID: id, payload: Fetch(group: "nobody", memberID: 1, max: 1, waitMilliseconds: 0).payload()).write(to: &bytes)
            default: Frame(opcode: .stats, correlationID: id, payload: StatsRequest(topics: [], groups: [], includeMembers: false).payload()).write(to: &bytes)
            }
        }
        #expect(replyBytes * 8_000 > 8 * budget, "the replies asked for are far over the budget")
        let sender = hostile.sendInBackground(Array(bytes.readableBytesView))

        // The socket backs up, replies wait unwritten, and the server, the connection's
        // budget full of them, starts nothing more and reads nothing more.
        // (Long bounds: in the full suite this test shares two cores with every other.)
        let backedUp = await Self.eventually(within: .seconds(90)) { f.server.unwrittenReplyBytes > 0 }
        #expect(backedUp, "the socket backed up (\(f.server.unwrittenReplyBytes) bytes unwritten)")
        let idle = await Self.eventually(within: .seconds(90)) { f.server.unwrittenReplyBytes > 0 && f.server.requestsRunning == 0 }
        #expect(idle, "with its budget full of unwritten replies the connection starts nothing more (\(f.server.requestsRunning) running)")
        let bound = budget + inFlight * replyBytes + ChimeServer.writeBufferWaterMark.high
        #expect(f.server.unwrittenReplyBytes <= bound, "at most the budget, one round of requests, and the high mark")

        // Meanwhile another client is served.
        #expect(try await Self.publishAndConsume(good, topic: "jobs", group: "g") == ["hi"])
        #expect(f.server.unwrittenReplyBytes <= bound, "and it stays there (\(f.server.unwrittenReplyBytes) of \(bound))")

        hostile.endBothWays()
        #expect(await Self.eventually { sender.finished }, "the sending thread ends")
        // A connection not read from does not see a close; a reset fails its writes.
        hostile.reset()
        #expect(await Self.eventually { f.server.unwrittenReplyBytes == 0 && f.server.connectionCount == 1 }, "its replies are released with it")
        await f.shutdown()
    }

    @Test func aHelloOverTheHelloLimitIsRefusedFromItsLengthAndTheConnectionClosed() async throws {
        let f = try await ServerFixture(ServerOptions(port: 0, maxHelloBytes: 4_096))
        let c = try await RawClient(port: f.server.port)
        // The header of a 1 MiB hello, and nothing more: the length alone is refused.
        var header = ByteBuffer()
        header.writeInteger(UInt32(1 << 20), endianness: .little)
        header.writeInteger(Opcode.hello.rawValue)
        header.writeInteger(UInt8(0))
        header.writeInteger(UInt16(0), endianness: .little)
        header.writeInteger(UInt32(1), endianness: .little)
        await c.send(Array(header.readableBytesView))
        let answer = try #require(await c.readFrame())
        #expect(answer.isError && answer.opcode == .hello)
        #expect(try ErrorReply(payload: answer.payload).wireCode == .frameTooLarge)
        #expect(await c.isClosedByServer())

        // Once the hello is accepted, frames up to maxFrameBytes are taken.
        let good = try await f.client()
        let body = [UInt8](repeating: 7, count: 64 << 10)
        let published = try await good.call(.publish, Publish(topic: "big", partition: 0, records: [OutgoingRecord(body: body)]), as: PublishReply.self)
        #expect(published.outcomes.count == 1)
        await f.shutdown()
    }

    @Test func connectionsThatNeverSayHelloCannotTakeTheSlotsOfAuthenticatedOnes() async throws {
        let f = try await ServerFixture(
            ServerOptions(port: 0, maxConnections: 2, maxUnauthenticatedConnections: 3, helloTimeoutMilliseconds: 9_000))
        let good = try await f.client()
        // One silent connection, two that drip a valid hello's first bytes one at a time.
        let silent = try await RawClient(port: f.server.port)
        let drippers = [try await RawClient(port: f.server.port), try await RawClient(port: f.server.port)]
        var hello = ByteBuffer()
        Frame(opcode: .hello, correlationID: 1, payload: Hello(client: "slow").payload()).write(to: &hello)
        let helloBytes = Array(hello.readableBytesView)
        let drip = Task {
            for byte in helloBytes.dropLast() {
                for d in drippers { await d.send([byte]) }
                try? await Task.sleep(for: .milliseconds(50))
                if Task.isCancelled { return }
            }
        }
        #expect(await Self.eventually { f.server.unauthenticatedConnectionCount == 3 }, "the unauthenticated slots are full")
        let extra = try await RawClient(port: f.server.port)
        await extra.send(.hello, Hello(client: "extra"))
        #expect(await extra.readFrame() == nil, "over the unauthenticated limit: closed as accepted")

        // The authenticated client is served all the while.
        #expect(try await Self.publishAndConsume(good, topic: "jobs", group: "g") == ["hi"])

        // At the hello deadline each gets an error and is closed, however it drips.
        for c in [silent] + drippers {
            let answer = try #require(await c.readFrame())
            #expect(answer.isError && (try? ErrorReply(payload: answer.payload).wireCode) == .unauthenticated)
            #expect(await c.isClosedByServer())
        }
        drip.cancel()
        #expect(await Self.eventually { f.server.unauthenticatedConnectionCount == 0 })
        // And a new client connects in their place.
        let another = try await f.client()
        #expect(try await Self.publishAndConsume(another, topic: "later", group: "g2") == ["hi"])
        await f.shutdown()
    }

    @Test func aWaitingFetchOfAClientThatHasGoneIsCancelledAndLeasesNothing() async throws {
        let f = try await ServerFixture()
        let gone = try await f.client()
        _ = try await gone.call(.createTopic, CreateTopic(name: "t", settings: nil), as: WireTopic.self)
        let m = try await gone.call(.join, Join(group: "g", member: "w", topics: ["t"]), as: WireMembership.self)
        await gone.send(.fetch, Fetch(group: "g", memberID: m.memberID, max: 10, waitMilliseconds: 60_000))
        #expect(await Self.eventually { f.server.requestsRunning == 1 }, "the fetch waits")
        await gone.close()
        #expect(await Self.eventually { f.server.requestsRunning == 0 }, "its fetch stops with the connection, long before its 60 s")

        // Published now, it is there for the member's next fetch (a reconnected client),
        // not leased to the connection that went.
        let back = try await f.client()
        _ = try await back.call(.publish, Publish(topic: "t", partition: -1, records: [OutgoingRecord(body: Array("job".utf8))]), as: PublishReply.self)
        let got = try await back.call(.fetch, Fetch(group: "g", memberID: m.memberID, max: 10, waitMilliseconds: 5_000), as: Deliveries.self)
        #expect(got.deliveries.map { String(decoding: $0.body, as: UTF8.self) } == ["job"])
        await f.shutdown()
    }
}

/// A plain blocking TCP socket to 127.0.0.1, for a client below the protocol: one that
/// sends and never reads.
final class PlainSocket: @unchecked Sendable {
    private let fd: Int32
    private let closed = Atomic<Bool>(false)

    /// A small receive buffer makes the socket back up after little data.
    init(port: Int, receiveBuffer: Int32) throws {
        #if canImport(Glibc)
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        #else
        fd = socket(AF_INET, SOCK_STREAM, 0)
        #endif
        guard fd >= 0 else { throw POSIXError(.EMFILE) }
        var size = receiveBuffer
        _ = setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else {
            close(fd)
            throw POSIXError(.ECONNREFUSED)
        }
    }

    deinit { if !closed.load(ordering: .acquiring) { close(fd) } }

    /// Closes with a reset (linger 0), as a crashed client's socket is.
    func reset() {
        guard !closed.exchange(true, ordering: .acquiringAndReleasing) else { return }
        var option = linger(l_onoff: 1, l_linger: 0)
        _ = setsockopt(fd, SOL_SOCKET, SO_LINGER, &option, socklen_t(MemoryLayout<linger>.size))
        close(fd)
    }

    /// Ends both directions: a send blocked on a full socket returns.
    func endBothWays() {
        _ = shutdown(fd, Int32(SHUT_RDWR))
    }

    final class Sending: Sendable {
        private let done = Atomic<Bool>(false)
        fileprivate func finish() { done.store(true, ordering: .releasing) }
        var finished: Bool { done.load(ordering: .acquiring) }
    }

    /// Sends everything with blocking calls on a thread of its own (not the test's).
    func sendInBackground(_ bytes: [UInt8]) -> Sending {
        let sending = Sending()
        let fd = self.fd
        Thread.detachNewThread {
            var sent = 0
            bytes.withUnsafeBytes { raw in
                while sent < raw.count {
                    #if canImport(Glibc)
                    let n = send(fd, raw.baseAddress! + sent, raw.count - sent, Int32(MSG_NOSIGNAL))
                    #else
                    let n = send(fd, raw.baseAddress! + sent, raw.count - sent, 0)
                    #endif
                    if n <= 0 { break }
                    sent += n
                }
            }
            sending.finish()
        }
        return sending
    }
}
