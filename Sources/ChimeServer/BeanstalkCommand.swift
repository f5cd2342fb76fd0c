/// One command line of beanstalkd's text protocol (beanstalkd 1.12's protocol.txt), read
/// from the bytes before its `\r\n`: the first step of the beanstalkd listener (issue 20).
/// Pure: no I/O, no state. A line that is not a command gets beanstalkd's own errors —
/// `UNKNOWN_COMMAND` for a word it does not know, `BAD_FORMAT` for a known one with
/// arguments that are extra, not decimal, out of range, or a bad tube name.
enum BeanstalkCommand: Equatable, Sendable {
    case put(priority: UInt32, delay: UInt32, ttr: UInt32, bytes: UInt32)
    case use(tube: String)
    case reserve
    case reserveWithTimeout(seconds: UInt32)
    case reserveJob(id: UInt64)
    case delete(id: UInt64)
    case release(id: UInt64, priority: UInt32, delay: UInt32)
    case bury(id: UInt64, priority: UInt32)
    case touch(id: UInt64)
    case watch(tube: String)
    case ignore(tube: String)
    case peek(id: UInt64)
    case peekReady
    case peekDelayed
    case peekBuried
    case kick(bound: UInt32)
    case kickJob(id: UInt64)
    case statsJob(id: UInt64)
    case statsTube(tube: String)
    case stats
    case listTubes
    case listTubeUsed
    case listTubesWatched
    case pauseTube(tube: String, delay: UInt32)
    case quit

    /// The job a command names, if any.
    var jobID: UInt64? {
        switch self {
        case .reserveJob(let id), .delete(let id), .release(let id, _, _), .bury(let id, _), .touch(let id), .peek(let id), .kickJob(let id),
            .statsJob(let id):
            id
        default: nil
        }
    }

    /// Whether the command only shows jobs (a cold job read for it may go cold again).
    var onlyReads: Bool {
        switch self {
        case .peek, .statsJob, .peekDelayed: true
        default: false
        }
    }

    /// The reply that refuses a line.
    enum Refusal: String, Error, Equatable, Sendable {
        case badFormat = "BAD_FORMAT"
        case unknownCommand = "UNKNOWN_COMMAND"
    }

    /// The longest command line, `\r\n` included (protocol.txt: longer is BAD_FORMAT).
    static let maxLineBytes = 224
    /// The longest tube name.
    static let maxNameBytes = 200

    /// Reads `line` (without its `\r\n`) the way beanstalkd 1.12 does, quirks included
    /// (checked against Debian's beanstalkd): a command with arguments is known by its word
    /// and a space (`delete` alone is UNKNOWN_COMMAND); one without is known by its word
    /// as a prefix and then must be the whole line (`reserves`, `stats now`: BAD_FORMAT),
    /// except `quit`; numbers may have spaces before them but nothing after the last
    /// (`kick` ignores what follows its bound).
    static func parse(_ line: [UInt8]) throws(Refusal) -> BeanstalkCommand {
        guard line.count + 2 <= maxLineBytes else { throw .badFormat }
        guard line.allSatisfy({ $0 >= 0x20 && $0 < 0x7F }) else { throw .badFormat }
        let space = UInt8(ascii: " ")

        // Commands with arguments, longest words first where one prefixes another. Read
        // as bytes: a put line is read hundreds of thousands of times a second.
        for (verb, word) in Self.withArgumentsBytes where line.count > word.count && line[word.count] == space && line.starts(with: word) {
            var at = word.count + 1
            func number<T: FixedWidthInteger & UnsignedInteger>(_: T.Type, last: Bool, lenient: Bool = false) throws(Refusal) -> T {
                while at < line.count && line[at] == space { at += 1 }
                let start = at
                var v: T = 0
                while at < line.count, line[at] >= 0x30 && line[at] <= 0x39 {
                    let (times, o1) = v.multipliedReportingOverflow(by: 10)
                    let (sum, o2) = times.addingReportingOverflow(T(line[at] - 0x30))
                    guard !o1 && !o2 else { throw .badFormat }
                    v = sum
                    at += 1
                }
                guard at > start else { throw .badFormat }
                if last && !lenient && at < line.count { throw .badFormat }
                if !last && (at == line.count || line[at] != space) { throw .badFormat }
                return v
            }
            func name(last: Bool) throws(Refusal) -> String {
                let start = at
                while at < line.count && line[at] != space { at += 1 }
                let n = line[start..<at]
                guard isValidName(n) else { throw .badFormat }
                if last && at < line.count { throw .badFormat }
                if !last && (at == line.count || line[at] != space) { throw .badFormat }
                return String(decoding: n, as: UTF8.self)
            }
            switch verb {
            case "put":
                return .put(
                    priority: try number(UInt32.self, last: false), delay: try number(UInt32.self, last: false), ttr: try number(UInt32.self, last: false),
                    bytes: try number(UInt32.self, last: true))
            case "use": return .use(tube: try name(last: true))
            case "reserve-with-timeout": return .reserveWithTimeout(seconds: try number(UInt32.self, last: true))
            case "reserve-job": return .reserveJob(id: try number(UInt64.self, last: true))
            case "delete": return .delete(id: try number(UInt64.self, last: true))
            case "release":
                return .release(id: try number(UInt64.self, last: false), priority: try number(UInt32.self, last: false), delay: try number(UInt32.self, last: true))
            case "bury": return .bury(id: try number(UInt64.self, last: false), priority: try number(UInt32.self, last: true))
            case "touch": return .touch(id: try number(UInt64.self, last: true))
            case "watch": return .watch(tube: try name(last: true))
            case "ignore": return .ignore(tube: try name(last: true))
            case "peek": return .peek(id: try number(UInt64.self, last: true))
            case "kick": return .kick(bound: try number(UInt32.self, last: true, lenient: true))
            case "kick-job": return .kickJob(id: try number(UInt64.self, last: true))
            case "stats-job": return .statsJob(id: try number(UInt64.self, last: true))
            case "stats-tube": return .statsTube(tube: try name(last: true))
            case "pause-tube": return .pauseTube(tube: try name(last: false), delay: try number(UInt32.self, last: true))
            default: preconditionFailure("a verb with arguments without a reading: \(verb)")
            }
        }
        for (verb, command) in Self.withoutArguments where line.starts(with: verb.utf8) {
            guard line.count == verb.utf8.count || command == .quit else { throw .badFormat }
            return command
        }
        throw .unknownCommand
    }

    /// Whether a line refused as BAD_FORMAT is a `put` whose four numbers read well with
    /// something after them: beanstalkd counts such a line as a put (`cmd-put`) before it
    /// refuses the rest.
    static func isPutWithTrailingBytes(_ line: [UInt8]) -> Bool {
        guard line.starts(with: Array("put ".utf8)) else { return false }
        var i = 4
        for n in 0..<4 {
            while i < line.count && line[i] == UInt8(ascii: " ") { i += 1 }
            let start = i
            var value: UInt64 = 0
            while i < line.count, (0x30...0x39).contains(line[i]) {
                value = value * 10 + UInt64(line[i] - 0x30)
                guard value <= UInt32.max else { return false }
                i += 1
            }
            guard i > start else { return false }
            if n < 3 && (i == line.count || line[i] != UInt8(ascii: " ")) { return false }
        }
        return i < line.count
    }

    /// Words of commands with arguments, in the order beanstalkd tries them.
    static let withArguments = [
        "put", "peek", "reserve-with-timeout", "reserve-job", "delete", "release", "bury", "kick-job", "kick", "touch", "stats-job",
        "stats-tube", "use", "watch", "ignore", "pause-tube",
    ]
    static let withArgumentsBytes = withArguments.map { ($0, Array($0.utf8)) }
    /// Commands without arguments, a word that prefixes another after it.
    static let withoutArguments: [(String, BeanstalkCommand)] = [
        ("peek-ready", .peekReady), ("peek-delayed", .peekDelayed), ("peek-buried", .peekBuried), ("reserve", .reserve),
        ("list-tubes-watched", .listTubesWatched), ("list-tube-used", .listTubeUsed), ("list-tubes", .listTubes), ("stats", .stats), ("quit", .quit),
    ]

    /// A tube name as protocol.txt allows it: 1–200 bytes of letters, digits and
    /// `- + / ; . $ _ ( )`, not starting with a hyphen.
    static func isValidName(_ name: String) -> Bool { isValidName(Array(name.utf8)[...]) }

    static func isValidName(_ bytes: ArraySlice<UInt8>) -> Bool {
        guard (1...maxNameBytes).contains(bytes.count), bytes.first != UInt8(ascii: "-") else { return false }
        return bytes.allSatisfy { b in
            (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || nameSymbols.contains(b)
        }
    }

    private static let nameSymbols = Array("-+/;.$_()".utf8)
}
