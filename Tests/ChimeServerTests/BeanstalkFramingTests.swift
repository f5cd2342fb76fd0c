@testable import ChimeServer
import Testing

/// The byte stream of a beanstalkd connection cut into inputs as beanstalkd cuts it
/// (what Debian's beanstalkd answers is pinned by BeanstalkConformanceTests).
@Suite struct BeanstalkFramingTests {
    private func inputs(_ chunks: [[UInt8]], maxJob: Int = 100) -> ([BeanstalkEngine.Input], BeanstalkFraming) {
        var f = BeanstalkFraming(maxJobBytes: maxJob)
        var out: [BeanstalkEngine.Input] = []
        for c in chunks { c.withUnsafeBytes { f.feed($0, into: &out) } }
        return (out, f)
    }

    private static let stream = Array(
        ("put 1 0 60 5\r\nhello\r\nreserve\r\nput 0 0 1 3\r\nabcde\r\nnonsense\r\nlist-tube-used\nx\r\n"
            + "put 0 0 1 200\r\n" + String(repeating: "z", count: 200) + "\r\n" + String(repeating: "a", count: 300) + "\r\nstats\r\n").utf8)

    @Test func theSameInputsWhateverPiecesTheBytesArriveIn() {
        let (whole, _) = inputs([Self.stream])
        #expect(whole == [
            .command(.put(priority: 1, delay: 0, ttr: 60, bytes: 5), body: Array("hello".utf8)), .command(.reserve, body: []),
            .refusedPut(.expectedCRLF), .refused(.unknownCommand),  // "\r\n" after "abc" + "de": the empty line
            .refused(.unknownCommand),  // nonsense
            .refused(.badFormat),  // a lone "\n" is a byte of the line
            .refusedPut(.jobTooBig), .refused(.badFormat), .command(.stats, body: []),
        ])
        let (byteByByte, f) = inputs(Self.stream.map { [$0] })
        #expect(byteByByte == whole)
        #expect(f.heldBytes == 0)
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<50 {
            var chunks: [[UInt8]] = []
            var at = 0
            while at < Self.stream.count {
                let n = min(Int.random(in: 1...40, using: &rng), Self.stream.count - at)
                chunks.append(Array(Self.stream[at..<at + n]))
                at += n
            }
            #expect(inputs(chunks).0 == whole)
        }
    }

    @Test func aJobOverTheLimitIsCountedPastNeverHeld() {
        var f = BeanstalkFraming(maxJobBytes: 10)
        var out: [BeanstalkEngine.Input] = []
        Array("put 0 0 1 4294967295\r\n".utf8).withUnsafeBytes { f.feed($0, into: &out) }
        let mebibyte = [UInt8](repeating: 0x41, count: 1 << 20)
        for _ in 0..<8 { mebibyte.withUnsafeBytes { f.feed($0, into: &out) } }
        #expect(out.isEmpty, "answered once all of it has gone by")
        #expect(f.heldBytes == 0)
    }

    @Test func anOverlongLineIsRefusedOnceAndTheNextLineRead() {
        let long = [UInt8](repeating: 0x61, count: 5_000)
        let (out, f) = inputs([long, long, Array("\r\nlist-tubes\r\n".utf8)])
        #expect(out == [.refused(.badFormat), .command(.listTubes, body: [])])
        #expect(f.heldBytes == 0)
        // 224 bytes with the "\r\n" is still a line.
        let (edge, _) = inputs([Array(("peek " + String(repeating: "0", count: 217) + "\r\n").utf8)])
        #expect(edge == [.command(.peek(id: 0), body: [])])
    }

    @Test func aPutWithBytesAfterItsNumbersCountsAsAPutAndIsBadFormat() {
        #expect(inputs([Array("put 0 0 60 3 x\r\n".utf8)]).0 == [.refusedPut(.badFormat)])
        #expect(inputs([Array("put 0 0 60\r\n".utf8)]).0 == [.refused(.badFormat)])
        #expect(inputs([Array("put 0 0 60 4294967296 x\r\n".utf8)]).0 == [.refused(.badFormat)])
    }

    @Test func journalRecordsReadBackAsWrittenAndAnythingElseIsMalformed() throws {
        let events: [BeanstalkEvent] = [
            .put(id: .max, tube: String(repeating: "t", count: 200), priority: .max, ttr: 1, readyAt: 1_800_000_000_000, delay: .max, body: [0, 13, 10, 255]),
            .put(id: 1, tube: "default", priority: 0, ttr: 60, readyAt: 0, delay: 0, body: []),
            .put(id: 2, tube: "t", priority: 1, ttr: 1, readyAt: 1_800_000_000_000, delay: 5, body: [7], wakeup: true),
            .delete(id: 7), .release(id: 8, priority: 3, readyAt: -1), .bury(id: 9, priority: 4), .kick(id: 10), .ids(upTo: .max),
            .wake(second: .max),
        ]
        for e in events {
            #expect(try BeanstalkEvent(decoding: e.encoded) == e)
            #expect(BeanstalkEvent.putID(in: e.encoded) == { if case .put(let id, _, _, _, _, _, _, _) = e { id } else { nil } }())
        }
        // A put of the first builds (kind 1, no delay) still reads, its delay 0.
        let first: [UInt8] = [1, 1] + [UInt8](repeating: 0, count: 7) + [9] + [5, 0, 0, 0, 60, 0, 0, 0] + [UInt8](repeating: 0, count: 8) + [1, 65, 66]
        #expect(try BeanstalkEvent(decoding: first) == .put(id: 9 << 56, tube: "A", priority: 5, ttr: 60, readyAt: 0, delay: 0, body: [66]))
        for bad: [UInt8] in [[], [1], [4, 2, 0, 0, 0, 0, 0, 0, 0, 0], [1, 9], [2, 9, 1, 0, 0, 0], [1, 2, 1, 2, 3], [1, 2] + [UInt8](repeating: 0, count: 9), [1, 1] + [UInt8](repeating: 0, count: 24) + [5, 65]] {
            #expect(throws: BeanstalkEvent.Malformed.self) { try BeanstalkEvent(decoding: bad) }
        }
    }
}
