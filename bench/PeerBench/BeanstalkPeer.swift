import ChimeProtocol
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
        // "<WORD>[ <a>[ <b>]]\r\n": the word is matched in place, the numbers read in place.
        let (word, a, b) = buffer.withUnsafeReadableBytes { p -> (Word, UInt64, UInt64) in
            let end = eol - 2
            var i = 0
            while i < end && p[i] != 32 { i += 1 }
            let word = Word(p, length: i)
            var numbers: (UInt64, UInt64) = (0, 0)
            var n = 0
            while i < end && n < 2 {
                i += 1
                var v: UInt64 = 0
                while i < end && p[i] >= 48 && p[i] <= 57 {
                    v = v &* 10 &+ UInt64(p[i] - 48)
                    i += 1
                }
                if n == 0 { numbers.0 = v } else { numbers.1 = v }
                n += 1
            }
            return (word, numbers.0, numbers.1)
        }
        switch word {
        case .inserted:
            buffer.moveReaderIndex(forwardBy: eol)
            return .inserted(a)
        case .deleted:
            buffer.moveReaderIndex(forwardBy: eol)
            return .deleted
        case .timedOut:
            buffer.moveReaderIndex(forwardBy: eol)
            return .timedOut
        case .reserved, .ok:
            let size = Int(word == .ok ? a : b)
            guard buffer.readableBytes >= eol + size + 2 else { return nil }
            buffer.moveReaderIndex(forwardBy: eol)
            let body = buffer.readBytes(length: size)!
            buffer.moveReaderIndex(forwardBy: 2)
            return word == .ok ? .ok(body) : .reserved(id: a, body: body)
        case .other:
            let text = buffer.text(0..<(eol - 2))
            buffer.moveReaderIndex(forwardBy: eol)
            return .other(text)
        }
    }

    /// The first word of a reply line, for the replies the suite reads.
    enum Word {
        case inserted, deleted, timedOut, reserved, ok, other

        init(_ p: UnsafeRawBufferPointer, length: Int) {
            func matches(_ s: StaticString) -> Bool {
                guard s.utf8CodeUnitCount == length else { return false }
                let u = s.utf8Start
                for k in 0..<length where p[k] != u[k] { return false }
                return true
            }
            switch length > 0 ? p[0] : 0 {
            case UInt8(ascii: "I"): self = matches("INSERTED") ? .inserted : .other
            case UInt8(ascii: "D"): self = matches("DELETED") ? .deleted : .other
            case UInt8(ascii: "T"): self = matches("TIMED_OUT") ? .timedOut : .other
            case UInt8(ascii: "R"): self = matches("RESERVED") ? .reserved : .other
            case UInt8(ascii: "O"): self = matches("OK") ? .ok : .other
            default: self = .other
            }
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
                out.writeStaticString("put 0 ")
                out.writeDecimal(UInt64(delay))
                out.writeStaticString(" 60 ")
                out.writeDecimal(UInt64(bodySize))
                out.writeStaticString("\r\n")
                Body.write(size: bodySize, dueAt: due ?? now, into: &out)
                out.writeStaticString("\r\n")
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
            for id in ids {
                out.writeStaticString("delete ")
                out.writeDecimal(id)
                out.writeStaticString("\r\n")
            }
            for reply in try await connection.send(out, replies: ids.count) {
                guard case .deleted = reply else { throw PeerProtocolError("delete: \(reply)") }
            }
            return ids.count
        }

        func close() async { await connection.close() }
    }
}
