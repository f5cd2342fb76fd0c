import ChimeBroker
import ChimeProtocol
import NIOCore
import Testing

@testable import ChimeServer

/// The connection's state machine alone: events in, actions out, no sockets.
@Suite struct ConnectionStateMachineTests {
    typealias Machine = ConnectionStateMachine

    static func limits(inFlight: Int = 4, bytes: Int = 1 << 20, tokens: [String] = []) -> Machine.Limits {
        Machine.Limits(maxHelloBytes: 4_096, maxFrameBytes: 16 << 20, maxInFlight: inFlight, maxBufferedBytes: bytes, tokens: try! TokenTable(parsing: tokens))
    }

    static func frame(_ opcode: Opcode, _ id: UInt32, bytes: Int = 0) -> Frame {
        Frame(opcode: opcode, correlationID: id, payload: ByteBuffer(repeating: 0, count: bytes))
    }

    static func hello(token: String? = nil, minVersion: UInt16 = ProtocolVersion.oldest, maxVersion: UInt16 = ProtocolVersion.current) -> Frame {
        Frame(
            opcode: .hello, correlationID: 1,
            payload: Hello(minVersion: minVersion, maxVersion: maxVersion, client: "test", token: token.map { Array($0.utf8) }).payload())
    }

    static func reply(_ id: UInt32, bytes: Int) -> Frame {
        Frame(opcode: .stats, flags: .response, correlationID: id, payload: ByteBuffer(repeating: 1, count: bytes))
    }

    /// A machine past its hello, on the given limits.
    static func open(_ limits: Machine.Limits = limits(), version: UInt16 = ProtocolVersion.current) -> Machine {
        var m = Machine(limits: limits)
        let action = m.frameRead(hello(maxVersion: version))
        guard case .acceptHello(let accepted) = action, accepted.version == version else {
            Issue.record("hello not accepted: \(String(describing: action))")
            return m
        }
        return m
    }

    static func started(_ action: Machine.Action?) -> Machine.Request? {
        if case .start(let r) = action { return r }
        return nil
    }

    @Test func onlyASmallHelloIsAcceptedBeforeTheHandshakeThenTheFullFrameLimit() {
        var m = Machine(limits: Self.limits())
        #expect(m.frameLimit == 4_096 && !m.isAuthenticated)
        let r48 = m.readRequested()
        #expect(r48)
        let r49 = m.frameRead(Self.hello())
        #expect(r49 == .acceptHello(.init(version: ProtocolVersion.current, correlationID: 1, client: "test", grant: .everything)))
        #expect(m.frameLimit == 16 << 20 && m.isAuthenticated)
    }

    @Test func anythingButAHelloFirstFailsAsUnauthenticated() {
        var m = Machine(limits: Self.limits())
        guard case .fail(let failure) = m.frameRead(Self.frame(.listTopics, 9)) else { Issue.record("not failed"); return }
        #expect(failure.code == .unauthenticated && failure.correlationID == 9 && failure.opcode == .listTopics)
        let r57 = m.frameRead(Self.frame(.listTopics, 10))
        #expect(r57 == nil, "nothing more once closing")
    }

    @Test func aWrongOrMissingTokenFailsAndARightOneIsAccepted() {
        for (token, accepted) in [(nil, false), ("wrong", false), ("s3cre", false), ("s3cret", true), ("other", true)] as [(String?, Bool)] {
            var m = Machine(limits: Self.limits(tokens: ["s3cret", "other"]))
            let action = m.frameRead(Self.hello(token: token))
            if accepted {
                #expect(m.isAuthenticated, "token \(token ?? "none")")
            } else {
                guard case .fail(let f) = action else { Issue.record("token \(token ?? "none") accepted"); continue }
                #expect(f.code == .unauthenticated)
            }
        }
    }

    @Test func anAcceptedHelloCarriesWhatItsTokenGrants() {
        var m = Machine(limits: Self.limits(tokens: ["read@orders.*:r", "plain"]))
        guard case .acceptHello(let accepted) = m.frameRead(Self.hello(token: "r")) else { Issue.record("refused"); return }
        #expect(accepted.grant.scope == .read && accepted.grant.topics.map(\.text) == ["orders.*"])
        var open = Machine(limits: Self.limits())
        guard case .acceptHello(let everything) = open.frameRead(Self.hello(token: nil)) else { Issue.record("refused"); return }
        #expect(everything.grant == .everything, "a server without tokens grants everything")
    }

    @Test func aClientSpeakingNoCommonVersionIsRefused() {
        var m = Machine(limits: Self.limits())
        guard case .fail(let f) = m.frameRead(Self.hello(minVersion: ProtocolVersion.current + 1, maxVersion: ProtocolVersion.current + 2)) else {
            Issue.record("accepted"); return
        }
        #expect(f.code == .unsupportedVersion)
    }

    @Test func anOpcodeNewerThanTheChosenVersionFailsTheConnection() {
        var m = Self.open(version: 1)
        guard case .fail(let f) = m.frameRead(Self.frame(.publishRecords, 5)) else { Issue.record("started"); return }
        #expect(f.code == .unknownOpcode && f.correlationID == 5)
    }

    @Test func aRequestCountsAgainstTheConnectionUntilItsReplyIsWritten() throws {
        var m = Self.open(Self.limits(inFlight: 1))
        let a = try #require(Self.started(m.frameRead(Self.frame(.stats, 2))))
        let r90 = m.readRequested()
        #expect(!r90, "one in flight: the limit")
        let r91 = m.frameRead(Self.frame(.stats, 3))
        #expect(r91 == nil, "held: already read")
        let r92 = m.responseReady(a.id, Self.reply(2, bytes: 100))
        #expect(r92 == .write(a.id, Self.reply(2, bytes: 100)))
        #expect(m.unwrittenReplyBytes == Frame.headerSize + 100)
        let r94 = m.readRequested()
        #expect(!r94, "replied but not written: still counts")
        let next = m.writeCompleted(a.id)
        #expect(next.count == 1, "the held one starts; reading waits behind it")
        let b = try #require(Self.started(next.first))
        #expect(b.frame.correlationID == 3 && m.unwrittenReplyBytes == 0)
        _ = m.responseReady(b.id, Self.reply(3, bytes: 10))
        let r100 = m.writeCompleted(b.id)
        #expect(r100 == [.read], "the read held since the limit is passed on")
    }

    @Test func repliesNotYetWrittenCountAgainstTheByteBudget() throws {
        var m = Self.open(Self.limits(inFlight: 100, bytes: 1_000))
        let a = try #require(Self.started(m.frameRead(Self.frame(.stats, 2, bytes: 10))))
        let r106 = m.readRequested()
        #expect(r106, "10 of 1000 bytes")
        _ = m.responseReady(a.id, Self.reply(2, bytes: 2_000))
        let r108 = m.readRequested()
        #expect(!r108, "a 2 KB reply not written fills the budget")
        let r109 = m.frameRead(Self.frame(.stats, 3))
        #expect(r109 == nil, "held")
        let after = m.writeCompleted(a.id)
        #expect(after.count == 2 && Self.started(after[0])?.frame.correlationID == 3 && after[1] == .read)
    }

    @Test func readingStopsWhileTheSocketTakesNoMoreAndResumesWhenItDoes() throws {
        var m = Self.open()
        let r116 = m.writabilityChanged(false)
        #expect(r116.isEmpty)
        let r117 = m.readRequested()
        #expect(!r117, "not writable: the read is held")
        let r118 = m.frameRead(Self.frame(.stats, 2))
        #expect(r118 == nil, "a frame already read waits")
        let resumed = m.writabilityChanged(true)
        #expect(resumed.count == 2 && Self.started(resumed[0])?.frame.correlationID == 2 && resumed[1] == .read)
    }

    @Test func theHelloDeadlineClosesOnlyAConnectionWithoutAnAcceptedHello() {
        var waiting = Machine(limits: Self.limits())
        guard case .fail(let f) = waiting.helloDeadlinePassed(afterMilliseconds: 10) else { Issue.record("not failed"); return }
        #expect(f.code == .unauthenticated && f.opcode == .hello)
        var open = Self.open()
        let r128 = open.helloDeadlinePassed(afterMilliseconds: 10)
        #expect(r128 == nil)
        #expect(open.isAuthenticated)
    }

    @Test func drainingAnswersTheRequestsReadThenCloses() throws {
        var m = Self.open(Self.limits(inFlight: 1))
        let a = try #require(Self.started(m.frameRead(Self.frame(.fetch, 2))))
        let r135 = m.frameRead(Self.frame(.stats, 3))
        #expect(r135 == nil, "held")
        let r136 = m.drain()
        #expect(r136.isEmpty, "still answering")
        let r137 = m.readRequested()
        #expect(!r137, "draining reads nothing more")
        let r138 = m.frameRead(Self.frame(.stats, 4))
        #expect(r138 == nil, "read after the drain began: not started")
        _ = m.responseReady(a.id, Self.reply(2, bytes: 1))
        let next = m.writeCompleted(a.id)
        let b = try #require(Self.started(next.first), "the held request is answered too")
        #expect(b.frame.correlationID == 3)
        _ = m.responseReady(b.id, Self.reply(3, bytes: 1))
        let r144 = m.writeCompleted(b.id)
        #expect(r144 == [.close])
        var idle = Self.open()
        let r146 = idle.drain()
        #expect(r146 == [.close], "nothing in progress: closed at once")
    }

    @Test func aConnectionGoneCancelsTheRequestsStillRunningAndDropsTheirReplies() throws {
        var m = Self.open()
        let a = try #require(Self.started(m.frameRead(Self.frame(.fetch, 2))))
        let b = try #require(Self.started(m.frameRead(Self.frame(.stats, 3))))
        _ = m.responseReady(b.id, Self.reply(3, bytes: 5))
        let r154 = m.channelInactive()
        #expect(r154 == .cancel([a.id]), "b's work is done; only a still runs")
        let r155 = m.responseReady(a.id, Self.reply(2, bytes: 5))
        #expect(r155 == nil, "nobody to answer")
        let r156 = m.writeCompleted(b.id)
        #expect(r156.isEmpty)
        #expect(m.unwrittenReplyBytes == 0)
    }

    @Test func aFramingErrorIsAnsweredOnTheHelloOpcodeAndCloses() {
        var m = Self.open()
        let action = m.decoderFailed(ProtocolError(.frameTooLarge, "too big"))
        #expect(action == .fail(.init(code: .frameTooLarge, message: "too big", opcode: .hello, correlationID: 0)))
        let r164 = m.decoderFailed(ProtocolError(.frameTooLarge, "again"))
        #expect(r164 == nil)
    }

    @Test func aHelloOverTheConnectionLimitClosesWithoutAnAnswer() {
        var m = Self.open()
        let r169 = m.connectionLimitReached()
        #expect(r169 == .close)
        let r170 = m.readRequested()
        #expect(!r170)
    }

    @Test func theTokenComparisonDependsOnTheLengthsOnly() {
        #expect(TokenTable.constantTimeEqual(Array("abc".utf8), Array("abc".utf8)))
        #expect(!TokenTable.constantTimeEqual(Array("abc".utf8), Array("abd".utf8)))
        #expect(!TokenTable.constantTimeEqual(Array("abc".utf8), Array("abcd".utf8)))
        #expect(!TokenTable.constantTimeEqual([], Array("a".utf8)))
    }
}

/// The server's table from engine errors to wire codes.
@Suite struct ErrorCodeMappingTests {
    @Test func everyEngineErrorHasItsOwnNamedWireCode() {
        let wire = ErrorCodes.table.map(\.1)
        #expect(Set(wire).count == wire.count, "no two engine errors share a code")
        #expect(wire.allSatisfy { (100...198).contains($0.rawValue) })
        #expect(ErrorCodes.reply(BrokerError(.sequenceGap, "x")).wireCode == .sequenceGap)
        #expect(ErrorCodes.reply(BrokerError(.unknownMember, "x")).wireCode == .unknownMember)
        #expect(ErrorCodes.reply(CancellationError()).wireCode == .internalError)
    }
}
