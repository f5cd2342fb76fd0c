@testable import ChimeServer
import Testing

/// beanstalkd's replies byte for byte, as Debian's beanstalkd 1.12 wrote them (2026-12-05).
@Suite struct BeanstalkReplyTests {
    @Test func repliesAreTheBytesBeanstalkdWrites() {
        let cases: [(BeanstalkReply, String)] = [
            (.ok(yaml: BeanstalkReply.yamlList(["default"])), "OK 14\r\n---\n- default\n\r\n"),
            (.inserted(id: 1), "INSERTED 1\r\n"), (.expectedCRLF, "EXPECTED_CRLF\r\n"),
            (.reserved(id: 1, body: Array("hello".utf8)), "RESERVED 1 5\r\nhello\r\n"), (.released, "RELEASED\r\n"),
            (.notFound, "NOT_FOUND\r\n"), (.watching(count: 2), "WATCHING 2\r\n"), (.notIgnored, "NOT_IGNORED\r\n"), (.paused, "PAUSED\r\n"),
            (.found(id: 7, body: []), "FOUND 7 0\r\n\r\n"), (.kicked(count: 3), "KICKED 3\r\n"), (.kickedJob, "KICKED\r\n"),
            (.using(tube: "emails"), "USING emails\r\n"), (.badFormat, "BAD_FORMAT\r\n"), (.unknownCommand, "UNKNOWN_COMMAND\r\n"),
        ]
        for (reply, wire) in cases {
            #expect(reply.bytes == Array(wire.utf8), "\(reply)")
        }
        #expect(BeanstalkReply.yamlDictionary([("id", "1"), ("tube", "default"), ("state", "ready")]) == "---\nid: 1\ntube: default\nstate: ready\n")
    }

    @Test func aBodyTravelsAsItCameWhateverItsBytes() {
        let body: [UInt8] = [0, 13, 10, 255, 32]
        #expect(BeanstalkReply.reserved(id: 42, body: body).bytes == Array("RESERVED 42 5\r\n".utf8) + body + [13, 10])
    }
}
