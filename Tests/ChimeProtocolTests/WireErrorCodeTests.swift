import ChimeProtocol
import Testing

/// The wire error codes are the numbers docs/formats.md gives, shared by name.
@Suite struct WireErrorCodeTests {
    @Test func protocolErrorsCarryTheNumbersTheFormatDocumentGives() {
        let codes: [(ProtocolError.Code, WireErrorCode, UInt16)] = [
            (.frameTooLarge, .frameTooLarge, 1), (.frameTooShort, .frameTooShort, 2), (.unknownOpcode, .unknownOpcode, 3),
            (.badFlags, .badFlags, 4), (.malformed, .malformed, 5), (.unsupportedVersion, .unsupportedVersion, 6),
            (.unauthenticated, .unauthenticated, 7), (.tooManyRecords, .tooManyRecords, 8),
        ]
        for (code, wire, number) in codes {
            #expect(code.wireCode == wire && wire.rawValue == number && code.wire == number, "\(code)")
            #expect(wire.isProtocolError)
            #expect(ErrorReply(ProtocolError(code, "x")).wireCode == wire)
        }
    }

    @Test func engineErrorsAreNumberedFrom100AndUnknownCodesPassThrough() {
        let engine: [WireErrorCode] = [
            .unknownTopic, .topicExists, .invalidName, .badPartition, .messageTooLarge, .malformedBatch, .corruptBatch, .sequenceGap,
            .unknownMessage, .unknownGroup, .unknownMember, .fenced, .unknownDelivery, .alreadyAcked, .leaseExpired, .invalidArgument,
            .storage, .closed, .limitReached,
        ]
        #expect(engine.map(\.rawValue) == Array(100...118))
        #expect(WireErrorCode.internalError.rawValue == 199 && !WireErrorCode.internalError.isProtocolError)
        #expect(ErrorReply(code: 150, message: "newer").wireCode == WireErrorCode(rawValue: 150))
    }
}
