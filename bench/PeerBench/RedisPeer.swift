import Foundation
import NIOCore

/// A RESP2 value.
indirect enum RESP: Sendable {
    case simple(String)
    case error(String)
    case integer(Int64)
    case bulk([UInt8]?)
    case array([RESP]?)
}

struct RESPParser: ReplyParser {
    static func parse(_ buffer: inout ByteBuffer) throws -> RESP? {
        var index = 0
        guard let value = try buffer.withUnsafeReadableBytes({ try Self.value($0, &index) }) else { return nil }
        buffer.moveReaderIndex(forwardBy: index)
        return value
    }

    /// The value starting at `i`, `i` moved past it; nil when the bytes end first.
    private static func value(_ p: UnsafeRawBufferPointer, _ i: inout Int) throws -> RESP? {
        guard i < p.count else { return nil }
        var end = i + 1
        while end + 1 < p.count && !(p[end] == 13 && p[end + 1] == 10) { end += 1 }
        guard end + 1 < p.count else { return nil }
        let line = UnsafeRawBufferPointer(rebasing: p[(i + 1)..<end])
        func number() throws -> Int64 {
            guard let n = Int64(String(decoding: line, as: UTF8.self)) else { throw PeerProtocolError("RESP: bad number") }
            return n
        }
        let type = p[i]
        let next = end + 2
        switch type {
        case UInt8(ascii: "+"):
            i = next
            return .simple(String(decoding: line, as: UTF8.self))
        case UInt8(ascii: "-"):
            i = next
            return .error(String(decoding: line, as: UTF8.self))
        case UInt8(ascii: ":"):
            let n = try number()
            i = next
            return .integer(n)
        case UInt8(ascii: "$"):
            let n = Int(try number())
            if n < 0 {
                i = next
                return .bulk(nil)
            }
            guard next + n + 2 <= p.count else { return nil }
            let bytes = [UInt8](UnsafeRawBufferPointer(rebasing: p[next..<(next + n)]))
            i = next + n + 2
            return .bulk(bytes)
        case UInt8(ascii: "*"):
            let n = Int(try number())
            var j = next
            guard n >= 0 else {
                i = next
                return .array(nil)
            }
            var items: [RESP] = []
            items.reserveCapacity(n)
            for _ in 0..<n {
                guard let item = try value(p, &j) else { return nil }
                items.append(item)
            }
            i = j
            return .array(items)
        default:
            throw PeerProtocolError("RESP: unknown type byte \(type)")
        }
    }
}

extension ByteBuffer {
    /// One command in RESP: an array of bulk strings.
    mutating func writeCommand(_ args: [[UInt8]]) {
        writeString("*\(args.count)\r\n")
        for a in args {
            writeString("$\(a.count)\r\n")
            writeBytes(a)
            writeString("\r\n")
        }
    }

    mutating func writeCommand(_ args: String...) {
        writeCommand(args.map { Array($0.utf8) })
    }
}

/// The Redis delayed-queue pattern of Sidekiq and BullMQ: each job's payload under
/// `job:<id>`, ready ids in the list `ready`, scheduled ids in the sorted set `delayed`
/// scored by due time (ms). A mover (client side, as in those libraries) promotes due ids
/// to `ready` with a Lua script and sleeps until the next due time; workers move ids to
/// `active` with their payloads (a script), block on `BLMOVE` when nothing is ready, and ack
/// by removing the id from `active` and deleting the payload (a script). AOF on, RDB
/// snapshots off; `appendfsync always` fsyncs before answering, `everysec` once a second.
struct RedisPeer: Peer {
    let appendfsync: String
    let bodySize: Int
    let system = "redis"
    var durability: String {
        appendfsync == "always" ? "appendfsync always (fsync before ack)" : "appendfsync \(appendfsync)"
    }

    func command(data: String, port: Int) -> (executable: String, arguments: [String]) {
        (
            "redis-server",
            [
                "--port", "\(port)", "--bind", "127.0.0.1", "--dir", data, "--appendonly", "yes", "--appendfsync", appendfsync,
                "--save", "", "--protected-mode", "no", "--daemonize", "no",
            ]
        )
    }

    typealias Connection = PipelinedConnection<RESPParser>

    static let fetchScript = """
        local ids = redis.call('LPOP', KEYS[1], ARGV[1])
        if not ids then return {} end
        redis.call('RPUSH', KEYS[2], unpack(ids))
        local keys = {}
        for i, id in ipairs(ids) do keys[i] = 'job:' .. id end
        local bodies = redis.call('MGET', unpack(keys))
        local out = {}
        for i, id in ipairs(ids) do out[2 * i - 1] = id; out[2 * i] = bodies[i] end
        return out
        """
    static let ackScript = """
        local keys = {}
        for i, id in ipairs(ARGV) do
          redis.call('LREM', KEYS[1], 1, id)
          keys[i] = 'job:' .. id
        end
        redis.call('DEL', unpack(keys))
        return #ARGV
        """
    static let moveScript = """
        local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
        if #ids > 0 then
          redis.call('ZREM', KEYS[1], unpack(ids))
          redis.call('RPUSH', KEYS[2], unpack(ids))
        end
        local nxt = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
        local n = -1
        if nxt[2] then n = tonumber(nxt[2]) end
        return {#ids, n}
        """

    static func call(_ c: Connection, _ args: String...) async throws -> RESP {
        var out = ByteBuffer()
        out.writeCommand(args.map { Array($0.utf8) })
        let reply = try await c.send(out, replies: 1)[0]
        if case .error(let e) = reply { throw PeerProtocolError("redis \(args.first ?? ""): \(e)") }
        return reply
    }

    func isServing(port: Int) async -> Bool {
        guard let c = try? await Connection.connect(port: port) else { return false }
        defer { Task { await c.close() } }
        guard case .simple("PONG")? = try? await Self.call(c, "PING") else { return false }
        return true
    }

    func setUp(port: Int) async throws {}

    func producer(port: Int) async throws -> any PeerProducer {
        Producer(connection: try await Connection.connect(port: port), bodySize: bodySize, prefix: "\(UInt32.random(in: 0...UInt32.max))-")
    }

    func consumer(port: Int, index: Int) async throws -> any PeerConsumer {
        Consumer(connection: try await Connection.connect(port: port))
    }

    func scheduledCount(port: Int) async throws -> Int {
        let c = try await Connection.connect(port: port)
        defer { Task { await c.close() } }
        guard case .integer(let n) = try await Self.call(c, "ZCARD", "delayed") else { throw PeerProtocolError("ZCARD: unexpected reply") }
        return Int(n)
    }

    func mover(port: Int) async throws -> (any PeerMover)? {
        let c = try await Connection.connect(port: port)
        return Mover(task: Task {
            let limit = 1_000
            while !Task.isCancelled {
                let now = nowMilliseconds()
                guard case .array(let r?) = try await Self.call(c, "EVAL", Self.moveScript, "2", "delayed", "ready", "\(now)", "\(limit)"),
                    r.count == 2, case .integer(let moved) = r[0], case .integer(let next) = r[1]
                else { throw PeerProtocolError("mover: unexpected reply") }
                if moved == limit { continue }
                // Until the next due time, and no longer than 50 ms (jobs added meanwhile
                // may be due sooner).
                let wait = next < 0 ? 50 : min(50, max(0, next - nowMilliseconds()))
                if wait > 0 { try await Task.sleep(for: .milliseconds(wait)) }
            }
            await c.close()
        })
    }

    struct Mover: PeerMover {
        let task: Task<Void, any Error>
        func stop() async {
            task.cancel()
            _ = await task.result
        }
    }

    final class Producer: PeerProducer, @unchecked Sendable {
        let connection: Connection
        let bodySize: Int
        let prefix: String
        private let counter = Counter()

        init(connection: Connection, bodySize: Int, prefix: String) {
            self.connection = connection
            self.bodySize = bodySize
            self.prefix = prefix
        }

        /// One MSET of the payloads and one RPUSH (due now) or ZADD (scheduled) of the ids,
        /// pipelined in one write, encoded straight into the buffer.
        func publish(_ dueTimes: [Int64?]) async throws {
            let now = nowMilliseconds()
            let first = counter.take(dueTimes.count)
            let ids = (0..<dueTimes.count).map { "\(prefix)\(first + $0)" }
            let size = max(bodySize, 8)
            var out = ByteBuffer()
            out.reserveCapacity(dueTimes.count * (size + 80))
            func bulk(_ s: String) {
                out.writeString("$\(s.utf8.count)\r\n")
                out.writeString(s)
                out.writeString("\r\n")
            }
            out.writeString("*\(1 + 2 * dueTimes.count)\r\n")
            bulk("MSET")
            for (k, due) in dueTimes.enumerated() {
                bulk("job:" + ids[k])
                out.writeString("$\(size)\r\n")
                Body.write(size: size, dueAt: due ?? now, into: &out)
                out.writeString("\r\n")
            }
            var commands = 1
            let ready = dueTimes.indices.filter { dueTimes[$0] == nil }
            if !ready.isEmpty {
                out.writeString("*\(2 + ready.count)\r\n")
                bulk("RPUSH")
                bulk("ready")
                for k in ready { bulk(ids[k]) }
                commands += 1
            }
            let later = dueTimes.indices.filter { dueTimes[$0] != nil }
            if !later.isEmpty {
                out.writeString("*\(2 + 2 * later.count)\r\n")
                bulk("ZADD")
                bulk("delayed")
                for k in later {
                    bulk("\(dueTimes[k]!)")
                    bulk(ids[k])
                }
                commands += 1
            }
            for reply in try await connection.send(out, replies: commands) {
                if case .error(let e) = reply { throw PeerProtocolError("publish: \(e)") }
            }
        }

        func close() async { await connection.close() }
    }

    final class Consumer: PeerConsumer, @unchecked Sendable {
        let connection: Connection
        init(connection: Connection) { self.connection = connection }

        func take(max: Int) async throws -> Taken {
            var ids: [[UInt8]] = []
            var due: [Int64] = []
            guard case .array(let items?) = try await RedisPeer.call(connection, "EVAL", RedisPeer.fetchScript, "2", "ready", "active", "\(max)") else {
                throw PeerProtocolError("fetch: unexpected reply")
            }
            var k = 0
            while k + 1 < items.count {
                if case .bulk(let id?) = items[k] { ids.append(id) }
                if case .bulk(let body?) = items[k + 1] { due.append(Body.dueAt(body)) }
                k += 2
            }
            if ids.isEmpty {
                // Nothing ready: block until an id arrives (at most 1 s), then its payload.
                if case .bulk(let id?) = try await RedisPeer.call(connection, "BLMOVE", "ready", "active", "LEFT", "RIGHT", "1"),
                    case .bulk(let body?) = try await RedisPeer.call(connection, "GET", "job:" + String(decoding: id, as: UTF8.self))
                {
                    ids.append(id)
                    due.append(Body.dueAt(body))
                }
            }
            return Taken(dueTimes: due, token: ids)
        }

        func ack(_ taken: Taken) async throws -> Int {
            let ids = taken.token as! [[UInt8]]
            guard !ids.isEmpty else { return 0 }
            var out = ByteBuffer()
            out.writeCommand([Array("EVAL".utf8), Array(RedisPeer.ackScript.utf8), Array("1".utf8), Array("active".utf8)] + ids)
            if case .error(let e) = try await connection.send(out, replies: 1)[0] { throw PeerProtocolError("ack: \(e)") }
            return ids.count
        }

        func close() async { await connection.close() }
    }
}

/// Hands out ranges of numbers, from any task.
final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var next = 0
    func take(_ n: Int) -> Int {
        lock.withLock {
            defer { next += n }
            return next
        }
    }
}
