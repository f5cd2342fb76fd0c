import ChimeProtocol
import NIOCore

/// One reply of beanstalkd's text protocol (beanstalkd 1.12's protocol.txt), as the bytes
/// that go on the wire: a line ending in `\r\n`, and for jobs and YAML documents the chunk
/// after it. Pure, like `BeanstalkCommand`.
enum BeanstalkReply: Equatable, Sendable {
    case inserted(id: UInt64)
    /// A put whose job could not be placed (beanstalkd: out of memory for its heap): buried.
    case buriedNew(id: UInt64)
    case expectedCRLF
    case jobTooBig
    case draining
    case using(tube: String)
    case deadlineSoon
    case timedOut
    case reserved(id: UInt64, body: [UInt8])
    case deleted
    case notFound
    case released
    case buried
    case touched
    case watching(count: Int)
    case notIgnored
    case found(id: UInt64, body: [UInt8])
    case kicked(count: Int)
    /// `kick-job`'s answer: no count.
    case kickedJob
    case paused
    /// A YAML document (stats, lists) as its chunk.
    case ok(yaml: String)
    case badFormat
    case unknownCommand
    case outOfMemory
    case internalError

    /// The reply's bytes on the wire.
    var bytes: [UInt8] {
        var out = ByteBuffer()
        write(into: &out)
        return Array(out.readableBytesView)
    }

    /// Appends the reply's bytes to `out`: no string or array made on the way.
    func write(into out: inout ByteBuffer) {
        func line(_ word: StaticString) {
            out.writeStaticString(word)
            out.writeStaticString("\r\n")
        }
        func line(_ word: StaticString, _ number: UInt64) {
            out.writeStaticString(word)
            out.writeDecimal(number)
            out.writeStaticString("\r\n")
        }
        func chunk<C: Collection>(_ word: StaticString, _ id: UInt64?, _ body: C) where C.Element == UInt8 {
            out.writeStaticString(word)
            if let id {
                out.writeDecimal(id)
                out.writeStaticString(" ")
            }
            out.writeDecimal(UInt64(body.count))
            out.writeStaticString("\r\n")
            out.writeBytes(body)
            out.writeStaticString("\r\n")
        }
        switch self {
        case .inserted(let id): line("INSERTED ", id)
        case .buriedNew(let id): line("BURIED ", id)
        case .expectedCRLF: line("EXPECTED_CRLF")
        case .jobTooBig: line("JOB_TOO_BIG")
        case .draining: line("DRAINING")
        case .using(let tube):
            out.writeStaticString("USING ")
            out.writeString(tube)
            out.writeStaticString("\r\n")
        case .deadlineSoon: line("DEADLINE_SOON")
        case .timedOut: line("TIMED_OUT")
        case .reserved(let id, let body): chunk("RESERVED ", id, body)
        case .deleted: line("DELETED")
        case .notFound: line("NOT_FOUND")
        case .released: line("RELEASED")
        case .buried: line("BURIED")
        case .touched: line("TOUCHED")
        case .watching(let count): line("WATCHING ", UInt64(count))
        case .notIgnored: line("NOT_IGNORED")
        case .found(let id, let body): chunk("FOUND ", id, body)
        case .kicked(let count): line("KICKED ", UInt64(count))
        case .kickedJob: line("KICKED")
        case .paused: line("PAUSED")
        case .ok(let yaml): chunk("OK ", nil, yaml.utf8)
        case .badFormat: line("BAD_FORMAT")
        case .unknownCommand: line("UNKNOWN_COMMAND")
        case .outOfMemory: line("OUT_OF_MEMORY")
        case .internalError: line("INTERNAL_ERROR")
        }
    }

    /// A YAML list, as `list-tubes` and `list-tubes-watched` answer it.
    static func yamlList(_ items: [String]) -> String {
        "---\n" + items.map { "- \($0)\n" }.joined()
    }

    /// A YAML dictionary in the given key order, as the stats commands answer it (values
    /// as beanstalkd writes them: numbers bare, names and states bare too).
    static func yamlDictionary(_ pairs: [(String, String)]) -> String {
        "---\n" + pairs.map { "\($0.0): \($0.1)\n" }.joined()
    }
}
