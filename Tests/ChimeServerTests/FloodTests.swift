import ChimeProtocol
import ChimeServer
import ChimeTestSupport
import Foundation
import NIOCore
import Testing

/// `chime serve` in a process of its own, flooded on both ports at once — connections that
/// never speak, connections that drip a hello or a request line, connections that pipeline
/// requests and never read a reply — while a good client publishes and consumes. The floods
/// must cost the server bounded memory and connections that expire, and the good client is
/// served throughout. (A process of its own also keeps the floods' work off the test
/// process's cooperative threads, which the tests beside this one need.)
@Suite struct FloodTests {
    static let token = "tok"
    static let budgetMiB = 2
    static let unreadConnections = 8
    static let requestsPerUnread = 24_000
    static let silentPerPort = 1_000

    @Test func floodsOnBothPortsLeaveAGoodClientServedAndTheServerBounded() async throws {
        let dir = TemporaryDirectory("chime-flood")
        var env = ProcessInfo.processInfo.environment
        env["CHIME_CONNECTION_BUFFER_MIB"] = "\(Self.budgetMiB)"
        env["CHIME_HELLO_TIMEOUT_SECONDS"] = "3"
        env["CHIME_MAX_UNAUTHENTICATED_CONNECTIONS"] = "64"
        env["CHIME_ADMIN_MAX_CONNECTIONS"] = "32"
        env["CHIME_ADMIN_IDLE_TIMEOUT_SECONDS"] = "3"
        let data = dir.file("data")
        let environment = env
        let started = await offThePool {
            Result { try ServeProcess(data: data, port: 0, extra: ["--token", Self.token], environment: environment, waitForAdmin: true) }
        }
        let server = try started.get()
        let adminPort = try #require(server.adminPort)
        #expect(server.port > 0)

        // The good client, and a 64-partition topic whose stats answer a 30-byte request
        // with a few KB: what a client that never reads makes the server hold.
        let good = try await RawClient.authenticated(port: server.port, token: Self.token)
        _ = try await good.call(
            .createTopic,
            CreateTopic(name: "wide", settings: WireTopicSettings(partitions: 64, retentionMilliseconds: nil, retentionBytes: nil, maxMessageBytes: 1 << 20, maxAttempts: 3, dedupWindowMilliseconds: 0)),
            as: WireTopic.self)
        _ = try await good.call(.createTopic, CreateTopic(name: "jobs", settings: nil), as: WireTopic.self)
        let statsRequest = StatsRequest(topics: ["wide"], groups: [], includeMembers: false)
        let replyBytes = Frame.headerSize + (try await good.call(.stats, statsRequest, as: StatsReply.self)).payload().readableBytes
        let residentBefore = try #require(server.residentKiB)

        // Never read: a hello, then requests pipelined from a thread per connection.
        var pipelined = ByteBuffer()
        Frame(opcode: .hello, correlationID: 1, payload: Hello(client: "unread", token: Array(Self.token.utf8)).payload()).write(to: &pipelined)
        for i in 0..<Self.requestsPerUnread {
            Frame(opcode: .stats, correlationID: UInt32(i + 2), payload: statsRequest.payload()).write(to: &pipelined)
        }
        let flood = Array(pipelined.readableBytesView)
        let port = server.port
        let unread = try await offThePool { Result { try (0..<Self.unreadConnections).map { _ in try PlainSocket(port: port, receiveBuffer: 4_096) } } }.get()
        let senders = unread.map { $0.sendInBackground(flood) }
        let perConnection = (Self.budgetMiB << 20) + 256 * replyBytes + ChimeServer.writeBufferWaterMark.high
        let bound = Self.unreadConnections * perConnection
        #expect(Self.unreadConnections * Self.requestsPerUnread * replyBytes > 8 * bound, "the replies asked for are far over what may be held")

        // Silent connections on both ports, then drippers: hellos and request lines that
        // never end. Most of the silent ones are past the limits and closed as accepted.
        let silent = await offThePool {
            (0..<Self.silentPerPort).compactMap { _ in try? PlainSocket(port: port, receiveBuffer: 4_096) }
                + (0..<Self.silentPerPort).compactMap { _ in try? PlainSocket(port: adminPort, receiveBuffer: 4_096) }
        }
        var hello = ByteBuffer()
        Frame(opcode: .hello, correlationID: 1, payload: Hello(client: "drip", token: Array(Self.token.utf8)).payload()).write(to: &hello)
        let helloDrippers = await offThePool { (0..<32).compactMap { _ in try? PlainSocket(port: port, receiveBuffer: 4_096) } }
        let helloDrip = Drip(helloDrippers, sending: Array(hello.readableBytesView.dropLast()), every: .milliseconds(100))
        let httpDrippers = await offThePool { (0..<16).compactMap { _ in try? PlainSocket(port: adminPort, receiveBuffer: 4_096) } }
        let httpDrip = Drip(httpDrippers, sending: Array("GET /v1/topics HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ".utf8), every: .milliseconds(100))

        // All the while, the good client publishes and consumes, round after round (joining
        // in each, and leaving at its end so that no member of an earlier round holds the
        // partition the next message goes to: a loaded machine may stretch the rounds past
        // the session timeout).
        for round in 0..<10 {
            let member = try await good.call(.join, Join(group: "g", member: "good", topics: ["jobs"]), as: WireMembership.self).memberID
            let body = Array("round \(round)".utf8)
            _ = try await good.call(.publish, Publish(topic: "jobs", partition: -1, records: [OutgoingRecord(body: body)]), as: PublishReply.self)
            let got = try await good.call(.fetch, Fetch(group: "g", memberID: member, max: 10, waitMilliseconds: 10_000), as: Deliveries.self)
            #expect(got.deliveries.map(\.body) == [body], "round \(round): the good client gets its message")
            _ = try await good.call(.ack, Settle(group: "g", memberID: member, receipts: got.deliveries.map(\.receipt)), as: SettleReply.self)
            _ = try? await good.call(.leave, MemberRef(group: "g", memberID: member), as: Empty.self)
            try await Task.sleep(for: .milliseconds(500))
        }

        // The admin port answers once its idle connections have been closed.
        func metrics() async -> [String: Double]? {
            guard let reply = try? await httpGet(port: adminPort, "/metrics", authorization: "Bearer \(Self.token)"), reply.status == 200 else { return nil }
            return reply.samples
        }
        var last: [String: Double] = [:]
        let backedUp = await HostileClientTests.eventually(within: .seconds(60)) {
            guard let m = await metrics() else { return false }
            last = m
            return (m["chime_unwritten_reply_bytes"] ?? 0) > 0 && m["chime_connections_unauthenticated"] == 0
        }
        #expect(backedUp, "the unread connections hold replies, the unauthenticated ones have gone (\(last))")
        let held = Int(last["chime_unwritten_reply_bytes"] ?? -1)
        #expect(held <= bound, "unwritten replies within the budgets: \(held) of \(bound)")
        #expect(last["chime_connections"] == Double(1 + Self.unreadConnections), "the good client and the unread ones; no silent one left")
        let grownKiB = (server.residentKiB ?? .max) - residentBefore
        print("FloodTests: \(held) reply bytes held unwritten (bound \(bound)); the server grew by \(grownKiB) KiB")
        #expect(grownKiB < (bound >> 10) + 128 << 10, "the server grew by \(grownKiB) KiB; the budgets allow \(bound >> 10) KiB")
        let drippers = helloDrippers + httpDrippers
        let dripsClosed = await HostileClientTests.eventually(within: .seconds(30)) { drippers.allSatisfy { $0.closedByPeer() } }
        #expect(dripsClosed, "the server closed every dripping connection (\(drippers.filter { !$0.closedByPeer() }.count) of \(drippers.count) open)")
        #expect(silent.allSatisfy { $0.closedByPeer() }, "and every silent one")

        // A crashed client's socket: its replies are released with it.
        for u in unread {
            u.endBothWays()
            u.reset()
        }
        let released = await HostileClientTests.eventually(within: .seconds(60)) {
            guard let m = await metrics() else { return false }
            last = m
            return m["chime_unwritten_reply_bytes"] == 0 && m["chime_connections"] == 1 && m["chime_requests_running"] == 0
        }
        #expect(released, "replies released with their connections (\(last))")
        #expect(await HostileClientTests.eventually { senders.allSatisfy(\.finished) }, "the sending threads end")
        helloDrip.stop()
        httpDrip.stop()
        _ = silent

        // And the good client is still served (its member, silent for longer than its
        // session timeout, joins again), and the server stops cleanly.
        let again = try await good.call(.join, Join(group: "g", member: "good", topics: ["jobs"]), as: WireMembership.self).memberID
        _ = try await good.call(.publish, Publish(topic: "jobs", partition: -1, records: [OutgoingRecord(body: Array("last".utf8))]), as: PublishReply.self)
        let got = try await good.call(.fetch, Fetch(group: "g", memberID: again, max: 10, waitMilliseconds: 10_000), as: Deliveries.self)
        #expect(got.deliveries.map(\.body) == [Array("last".utf8)])
        await good.close()
        let (status, _) = await offThePool { server.stop() }
        #expect(status == 0)
    }
}
