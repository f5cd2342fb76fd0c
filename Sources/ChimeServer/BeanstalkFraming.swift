/// The byte stream of a beanstalkd connection cut into inputs, as beanstalkd 1.12 cuts it:
/// command lines end in `\r\n`; a `put` line is followed by its job and `\r\n`. Pure: bytes
/// in, inputs out, whatever pieces the bytes arrive in.
///
/// - A line ends at `\r\n`; a lone `\n` is a byte of it (and makes it BAD_FORMAT).
/// - A line of more than 224 bytes (`\r\n` included) is BAD_FORMAT; what follows of it, up
///   to its `\n`, is dropped, and the next line is read.
/// - A job that does not end in `\r\n` is EXPECTED_CRLF; the bytes after the job's length
///   and two more are read as the next command (as beanstalkd does).
/// - A job over the size limit is JOB_TOO_BIG, answered once its bytes and two more have
///   gone by; they are counted, never held.
struct BeanstalkFraming {
    private enum State {
        case line
        /// Dropping the rest of an overlong line.
        case overlong
        case body(BeanstalkCommand, need: Int)
        case skip(remaining: Int)
    }

    let maxJobBytes: Int
    private var state = State.line
    private var line: [UInt8] = []
    private var body: [UInt8] = []

    init(maxJobBytes: Int) {
        self.maxJobBytes = maxJobBytes
    }

    /// Bytes held for an input not yet complete (at most a line, or a job and its `\r\n`).
    var heldBytes: Int { line.count + body.count }

    mutating func feed(_ bytes: UnsafeRawBufferPointer, into out: inout [BeanstalkEngine.Input]) {
        var i = 0
        let n = bytes.count
        while i < n {
            switch state {
            case .line:
                // Up to the next "\n"; the line ends at a "\r\n" (a lone "\n" is part of it).
                var j = i
                while j < n && bytes[j] != 0x0A { j += 1 }
                let end = j < n ? j + 1 : n
                let room = BeanstalkCommand.maxLineBytes - line.count
                if end - i > room {
                    // Over the limit before its end: refused, and the rest of it dropped.
                    out.append(.refused(.badFormat))
                    line.removeAll(keepingCapacity: true)
                    state = .overlong
                    i += room
                    continue
                }
                line.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[i..<end]))
                i = end
                if line.count >= 2 && line[line.count - 2] == 0x0D && line[line.count - 1] == 0x0A {
                    line.removeLast(2)
                    lineEnded(into: &out)
                }
            case .overlong:
                while i < n && bytes[i] != 0x0A { i += 1 }
                if i < n {
                    i += 1
                    state = .line
                }
            case .body(let command, let need):
                let take = min(need - body.count, n - i)
                body.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[i..<i + take]))
                i += take
                if body.count == need {
                    state = .line
                    if body[need - 2] == 0x0D && body[need - 1] == 0x0A {
                        body.removeLast(2)
                        out.append(.command(command, body: body))
                    } else {
                        out.append(.refusedPut(.expectedCRLF))
                    }
                    body = []
                }
            case .skip(let remaining):
                let take = min(remaining, n - i)
                i += take
                if take == remaining {
                    state = .line
                    out.append(.refusedPut(.jobTooBig))
                } else {
                    state = .skip(remaining: remaining - take)
                }
            }
        }
    }

    /// A whole line arrived (without its `\r\n`).
    private mutating func lineEnded(into out: inout [BeanstalkEngine.Input]) {
        defer { line.removeAll(keepingCapacity: true) }
        let command: BeanstalkCommand
        do {
            command = try BeanstalkCommand.parse(line)
        } catch {
            if error == .badFormat && BeanstalkCommand.isPutWithTrailingBytes(line) {
                out.append(.refusedPut(.badFormat))
            } else {
                out.append(.refused(error == .badFormat ? .badFormat : .unknownCommand))
            }
            return
        }
        if case .put(_, _, _, let bytes) = command {
            if Int(bytes) > maxJobBytes {
                state = .skip(remaining: Int(bytes) + 2)
            } else {
                body.reserveCapacity(Int(bytes) + 2)
                state = .body(command, need: Int(bytes) + 2)
            }
            return
        }
        out.append(.command(command, body: []))
    }
}
