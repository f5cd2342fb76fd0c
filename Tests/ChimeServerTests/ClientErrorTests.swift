import ChimeClient
import ChimeProtocol
import Testing

/// A client error says which of three things happened: the broker refused (with a code), the
/// connection was lost (worth a retry), or the broker's answer broke the protocol (not
/// worth one: it used to read as a lost connection, and idempotent publishes retried it).
@Suite struct ClientErrorTests {
    @Test func aRefusalALostConnectionAndAProtocolViolationAreToldApart() {
        let refused = ClientError(code: WireErrorCode.unknownMember.rawValue, message: "gone")
        #expect(refused.kind == .refused && refused.wireCode == .unknownMember && !refused.isDisconnected)
        let lost = ClientError.disconnected("reset by peer")
        #expect(lost.kind == .disconnected && lost.isDisconnected && !lost.isProtocolViolation)
        let broken = ClientError.protocolViolation("the broker answered 0 results for 3 acks")
        #expect(broken.kind == .protocolViolation && broken.isProtocolViolation && !broken.isDisconnected)
        #expect(broken != lost, "same code 0, different errors")
        #expect("\(broken)" == "protocol violation: the broker answered 0 results for 3 acks")
        #expect(ClientError(code: 0, message: "x").isDisconnected, "code 0 from the old initializer still means a lost connection")
    }
}
