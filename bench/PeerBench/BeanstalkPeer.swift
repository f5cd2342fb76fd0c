import Foundation
import NIOCore

/// beanstalkd's text protocol, the replies the suite uses.
enum BeanstalkReply: Sendable {
    case inserted(UInt64)
    case reserved(id: UInt64, body: [UInt8])
    case timedOut
    case deleted
    case ok([UInt8])
    case other(String)
}

struct BeanstalkParser: ReplyParser {
    static func parse(_ buffer: inout ByteBuffer) throws -> BeanstalkReply? {
        guard let eol = buffer.endOfLine(from: 0) else { return nil }
        let (word, a, b) = buffer.withUnsafeReadableBytes { p -> (UInt8, UInt64, Int) in
            // "<WORD> <a> <b>": the first letter tells the replies apart; numbers follow.
            var numbers: [UInt64] = []
            var i = 0
            while i < eol - 2 && p[i] != 32 { i += 1 }
            while i < eol - 2 {
                i += 1
                var v: UInt64 = 0
                while i < eol - 2 && p[i] >= 48 && p[i] <= 57 {
                    v = v * 10 + UInt64(p[i] - 48)
                    i += 1
                }
                numbers.append(v)
            }
            return (p[0], numbers.first ?? 0, numbers.count > 1 ? Int(numbers[1]) : (numbers.first.map(Int.init) ?? 0))
        }
        func line() -> String { buffer.text(0..<(eol - 2)) }
        switch word {
        case UInt8(ascii: "I") where line().hasPrefix("INSERTED "):
            buffer.moveReaderIndex(forwardBy: eol)
            return .inserted(a)
        case UInt8(ascii: "D") where eol == 9 && line() == "DELETED":
            buffer.moveReaderIndex(forwardBy: eol)
            return .deleted
        case UInt8(ascii: "T") where line() == "TIMED_OUT":
            buffer.moveReaderIndex(forwardBy: eol)
            return .timedOut
        case UInt8(ascii: "R") where line().hasPrefix("RESERVED "), UInt8(ascii: "O") where line().hasPrefix("OK "):
            let isOK = word == UInt8(ascii: "O")
            let size = isOK ? Int(a) : b
            guard buffer.readableBytes >= eol + size + 2 else { return nil }
            buffer.moveReaderIndex(forwardBy: eol)
            let body = buffer.readBytes(length: size)!
            buffer.moveReaderIndex(forwardBy: 2)
            return isOK ? .ok(body) : .reserved(id: a, body: body)
        default:
            let text = line()
            buffer.moveReaderIndex(forwardBy: eol)
            return .other(text)
        }
    }
}

/// beanstalkd with its binlog in the data directory: `-f 0` fsyncs every write before
/// answering; `-f 50` (its default) fsyncs at most every 50 ms. Delays are whole seconds:
/// a message due at T is put with the delay rounded up, so it is never early.
///
/// With `chime` set, the same client code drives `chime beanstalkd` (the executable given)
/// instead, at its default: every change journaled and synced before its answer.
struct BeanstalkPeer: Peer {
    let fsyncMilliseconds: Int
    let bodySize: Int
    var chime: String? = nil
    var system: String { chime == nil ? "beanstalkd" : "chime beanstalkd" }
    var durability: String {
        if chime != nil { return "default (journal synced before each answer)" }
        return fsyncMilliseconds == 0 ? "-f 0 (fsync every write)" : "-f \(fsyncMilliseconds) (fsync at most every \(fsyncMilliseconds) ms, its default)"
    }

    func command(data: String, port: Int) -> (executable: String, arguments: [String]) {
        if let chime { return (chime, ["beanstalkd", "-l", "127.0.0.1", "-p", "\(port)", "-b", data]) }
        return ("beanstalkd", ["-l", "127.0.0.1", "-p", "\(port)", "-b", data, "-f", "\(fsyncMilliseconds)"])
    }

    typealias Connection = PipelinedConnection<BeanstalkParser>

    func isServing(port: Int) async -> Bool {
        guard let c = try? await Connection.connect(port: port) else { return false }
        defer { Task { await c.close() } }
        return (try? await Self.stats(c)) != nil
    }

    static func stats(_ c: Connection) async throws -> [String: String] {
        guard case .ok(let yaml) = try await c.send(ByteBuffer(string: "stats\r\n"), replies: 1)[0] else {
            throw PeerProtocolError("stats: unexpected reply")
        }
        var out: [String: String] = [:]
        for line in String(decoding: yaml, as: UTF8.self).split(separator: "\n") {
            let parts = line.split(separator: ":", maxSplits: 1)
            if parts.count == 2 { out[String(parts[0])] = parts[1].trimmingCharacters(in: .whitespaces) }
        }
        return out
    }

    func setUp(port: Int) async throws {}

    func producer(port: Int) async throws -> any PeerProducer {
        Producer(connection: try await Connection.connect(port: port), bodySize: bodySize)
    }

    func consumer(port: Int, index: Int) async throws -> any PeerConsumer {
        Consumer(connection: try await Connection.connect(port: port))
    }

    func scheduledCount(port: Int) async throws -> Int {
        let c = try await Connection.connect(port: port)
        defer { Task { await c.close() } }
        return Int(try await Self.stats(c)["current-jobs-delayed"] ?? "") ?? -1
    }

    func mover(port: Int) async throws -> (any PeerMover)? { nil }

    struct Producer: PeerProducer {
        let connection: Connection
        let bodySize: Int
        func publish(_ dueTimes: [Int64?]) async throws {
            let now = nowMilliseconds()
            var out = ByteBuffer()
            out.reserveCapacity(dueTimes.count * (bodySize + 40))
            for due in dueTimes {
                let delay = due.map { max(0, ($0 - now + 999) / 1_000) } ?? 0
                out.writeString("put 0 \(delay) 60 \(bodySize)\r\n")
                Body.write(size: bodySize, dueAt: due ?? now, into: &out)
                out.writeString("\r\n")
            }
            for reply in try await connection.send(out, replies: dueTimes.count) {
                guard case .inserted = reply else { throw PeerProtocolError("put: \(reply)") }
            }
        }
        func close() async { await connection.close() }
    }

    /// Reserves with `reserve-with-timeout 0` pipelined (as many as the last round found,
    /// doubled), and when none is ready blocks in one `reserve-with-timeout 1`.
    final class Consumer: PeerConsumer, @unchecked Sendable {
        let connection: Connection
        private var ask = 1

        init(connection: Connection) { self.connection = connection }

        func take(max: Int) async throws -> Taken {
            var ids: [UInt64] = []
            var due: [Int64] = []
            func collect(_ replies: [BeanstalkReply]) throws {
                for r in replies {
                    switch r {
                    case .reserved(let id, let body):
                        ids.append(id)
                        due.append(Body.dueAt(body))
                    case .timedOut: break
                    default: throw PeerProtocolError("reserve: \(r)")
                    }
                }
            }
            let n = Swift.min(Swift.max(1, ask), max)
            try collect(try await connection.send(ByteBuffer(string: String(repeating: "reserve-with-timeout 0\r\n", count: n)), replies: n))
            if ids.isEmpty {
                try collect(try await connection.send(ByteBuffer(string: "reserve-with-timeout 1\r\n"), replies: 1))
                ask = 1
            } else {
                ask = ids.count == n ? n * 2 : ids.count + 1
            }
            return Taken(dueTimes: due, token: ids)
        }

        func ack(_ taken: Taken) async throws -> Int {
            let ids = taken.token as! [UInt64]
            guard !ids.isEmpty else { return 0 }
            var out = ByteBuffer()
            for id in ids { out.writeString("delete \(id)\r\n") }
            for reply in try await connection.send(out, replies: ids.count) {
                guard case .deleted = reply else { throw PeerProtocolError("delete: \(reply)") }
            }
            return ids.count
        }

        func close() async { await connection.close() }
    }
}
