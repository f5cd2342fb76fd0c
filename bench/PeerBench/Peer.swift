import Foundation
import NIOCore

/// One system under test with one durability setting: how to start it, and clients for
/// the suite's workloads. Chime, beanstalkd and a Redis delayed queue each implement it.
protocol Peer: Sendable {
    /// "chime", "beanstalkd" or "redis".
    var system: String { get }
    /// The setting as the table states it, e.g. "always (group commit)" or "-f 0".
    var durability: String { get }
    /// The server process to start on an empty (or existing) data directory.
    func command(data: String, port: Int) -> (executable: String, arguments: [String])
    /// One request answered (a server still loading its data does not count).
    func isServing(port: Int) async -> Bool
    /// Prepares an empty server (a topic, scripts).
    func setUp(port: Int) async throws
    func producer(port: Int) async throws -> any PeerProducer
    func consumer(port: Int, index: Int) async throws -> any PeerConsumer
    /// Messages waiting for their due time.
    func scheduledCount(port: Int) async throws -> Int
    /// A task that moves due messages to the ready queue, for systems where the client
    /// side does that (the Redis pattern); nil where the server does it itself.
    func mover(port: Int) async throws -> (any PeerMover)?
}

extension Peer {
    var label: String { "\(system) \(durability)" }
}

protocol PeerProducer: Sendable {
    /// Publishes one batch, pipelined or batched as the system allows: each message due at
    /// its time (ms since the epoch), or now when nil. Returns once every message is
    /// acknowledged by the server.
    func publish(_ dueTimes: [Int64?]) async throws
    func close() async
}

/// What a consumer took: the messages' due times and how to ack them.
struct Taken: @unchecked Sendable {
    var dueTimes: [Int64]
    var token: Any
}

protocol PeerConsumer: Sendable {
    /// At most `max` messages, waiting (without spinning) for the first one; may return
    /// none after a wait.
    func take(max: Int) async throws -> Taken
    /// Acks what `take` gave; returns how many the server took (the rest will come again).
    func ack(_ taken: Taken) async throws -> Int
    func close() async
}

protocol PeerMover: Sendable {
    func stop() async
}

/// Message bodies for the peers that carry no due time of their own: the due time in the
/// first 8 bytes (little-endian ms), then filler up to the body size.
enum Body {
    /// Writes the body for `dueAt` into `buffer`: no array per message.
    static func write(size: Int, dueAt: Int64, into buffer: inout ByteBuffer) {
        buffer.writeInteger(dueAt, endianness: .little)
        buffer.writeRepeatingByte(0x61, count: max(size, 8) - 8)
    }

    static func dueAt<C: Collection>(_ body: C) -> Int64 where C.Element == UInt8 {
        var v: UInt64 = 0
        var shift: UInt64 = 0
        for byte in body.prefix(8) {
            v |= UInt64(byte) << shift
            shift += 8
        }
        return Int64(bitPattern: v)
    }
}

func nowMilliseconds() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return Int64(ts.tv_sec) * 1_000 + Int64(ts.tv_nsec) / 1_000_000
}

func nowMicroseconds() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return Int64(ts.tv_sec) * 1_000_000 + Int64(ts.tv_nsec) / 1_000
}

/// A number in `range` drawn from message number `i`: SplitMix64 of it, so the harness
/// spends no system call (SystemRandomNumberGenerator's getrandom) and no lock per message.
func spread(_ i: Int, seed: UInt64 = 0x9E37_79B9_7F4A_7C15, in range: ClosedRange<Int64>) -> Int64 {
    var z = UInt64(truncatingIfNeeded: i) &+ seed &* 0x9E37_79B9_7F4A_7C15
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    z ^= z >> 31
    return range.lowerBound + Int64(z % UInt64(range.upperBound - range.lowerBound + 1))
}
