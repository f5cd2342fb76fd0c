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

    var bytes: [UInt8] {
        func line(_ text: String) -> [UInt8] { Array((text + "\r\n").utf8) }
        func chunk(_ head: String, _ body: [UInt8]) -> [UInt8] { line("\(head) \(body.count)") + body + [13, 10] }
        switch self {
        case .inserted(let id): return line("INSERTED \(id)")
        case .buriedNew(let id): return line("BURIED \(id)")
        case .expectedCRLF: return line("EXPECTED_CRLF")
        case .jobTooBig: return line("JOB_TOO_BIG")
        case .draining: return line("DRAINING")
        case .using(let tube): return line("USING \(tube)")
        case .deadlineSoon: return line("DEADLINE_SOON")
        case .timedOut: return line("TIMED_OUT")
        case .reserved(let id, let body): return chunk("RESERVED \(id)", body)
        case .deleted: return line("DELETED")
        case .notFound: return line("NOT_FOUND")
        case .released: return line("RELEASED")
        case .buried: return line("BURIED")
        case .touched: return line("TOUCHED")
        case .watching(let count): return line("WATCHING \(count)")
        case .notIgnored: return line("NOT_IGNORED")
        case .found(let id, let body): return chunk("FOUND \(id)", body)
        case .kicked(let count): return line("KICKED \(count)")
        case .kickedJob: return line("KICKED")
        case .paused: return line("PAUSED")
        case .ok(let yaml): return chunk("OK", Array(yaml.utf8))
        case .badFormat: return line("BAD_FORMAT")
        case .unknownCommand: return line("UNKNOWN_COMMAND")
        case .outOfMemory: return line("OUT_OF_MEMORY")
        case .internalError: return line("INTERNAL_ERROR")
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
