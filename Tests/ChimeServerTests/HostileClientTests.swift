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
    static func eventually(within deadline: Duration = .seconds(60), _ condition: () async throws -> Bool) async rethrows -> Bool {
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
            ServerOptions(port: 0, maxConnections: 2, maxUnauthenticatedConnections: 3, helloTimeoutMilliseconds: 20_000))
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
        // The test sends no heartbeats: an hour's session keeps the member through a slow machine.
        _ = try await gone.call(.createGroup, CreateGroup(name: "g", settings: WireGroupSettings(sessionTimeoutMilliseconds: 3_600_000)), as: WireGroupSettings.self)
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
