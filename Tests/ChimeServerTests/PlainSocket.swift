import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A plain blocking TCP socket to 127.0.0.1, for a client below the protocol: one that
/// sends and never reads.
final class PlainSocket: @unchecked Sendable {
    private let fd: Int32
    private let closed = Atomic<Bool>(false)

    /// A small receive buffer makes the socket back up after little data.
    init(port: Int, receiveBuffer: Int32) throws {
        #if canImport(Glibc)
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        #else
        fd = socket(AF_INET, SOCK_STREAM, 0)
        #endif
        guard fd >= 0 else { throw POSIXError(.EMFILE) }
        var size = receiveBuffer
        _ = setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else {
            close(fd)
            throw POSIXError(.ECONNREFUSED)
        }
    }

    deinit { if !closed.load(ordering: .acquiring) { close(fd) } }

    /// Closes with a reset (linger 0), as a crashed client's socket is.
    func reset() {
        guard !closed.exchange(true, ordering: .acquiringAndReleasing) else { return }
        var option = linger(l_onoff: 1, l_linger: 0)
        _ = setsockopt(fd, SOL_SOCKET, SO_LINGER, &option, socklen_t(MemoryLayout<linger>.size))
        close(fd)
    }

    /// Ends both directions: a send blocked on a full socket returns.
    func endBothWays() {
        _ = shutdown(fd, Int32(SHUT_RDWR))
    }

    /// One blocking send of all of `bytes`; false once the peer has closed or reset.
    @discardableResult
    func sendNow(_ bytes: [UInt8]) -> Bool {
        bytes.withUnsafeBytes { raw in
            #if canImport(Glibc)
            send(fd, raw.baseAddress!, raw.count, Int32(MSG_NOSIGNAL)) == raw.count
            #else
            send(fd, raw.baseAddress!, raw.count, 0) == raw.count
            #endif
        }
    }

    /// True once the peer has closed or reset the connection (whatever it sent before is
    /// read and dropped); false while it is open and silent. Does not block.
    func closedByPeer() -> Bool {
        var scratch = [UInt8](repeating: 0, count: 4_096)
        while true {
            let n = scratch.withUnsafeMutableBytes { recv(fd, $0.baseAddress!, $0.count, Int32(MSG_DONTWAIT)) }
            if n > 0 { continue }
            return n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)
        }
    }

    final class Sending: Sendable {
        private let done = Atomic<Bool>(false)
        fileprivate func finish() { done.store(true, ordering: .releasing) }
        var finished: Bool { done.load(ordering: .acquiring) }
    }

    /// Sends everything with blocking calls on a thread of its own (not the test's).
    func sendInBackground(_ bytes: [UInt8]) -> Sending {
        let sending = Sending()
        let fd = self.fd
        Thread.detachNewThread {
            var sent = 0
            bytes.withUnsafeBytes { raw in
                while sent < raw.count {
                    #if canImport(Glibc)
                    let n = send(fd, raw.baseAddress! + sent, raw.count - sent, Int32(MSG_NOSIGNAL))
                    #else
                    let n = send(fd, raw.baseAddress! + sent, raw.count - sent, 0)
                    #endif
                    if n <= 0 { break }
                    sent += n
                }
            }
            sending.finish()
        }
        return sending
    }
}

/// Sockets that each send `bytes` one byte at a time, every `interval`, from a thread of
/// their own, then fall silent: clients that take their time over a hello or a request
/// line (give them all but the last byte to have them never finish).
final class Drip: Sendable {
    private let stopped = Atomic<Bool>(false)

    init(_ sockets: [PlainSocket], sending bytes: [UInt8], every interval: Duration) {
        let micros = UInt32(interval.components.seconds * 1_000_000 + interval.components.attoseconds / 1_000_000_000_000)
        Thread.detachNewThread { [self] in
            var open = sockets
            var next = 0
            while !stopped.load(ordering: .acquiring) && !open.isEmpty && next < bytes.count {
                // A socket whose peer closed it is dropped; the others keep dripping.
                open = open.filter { $0.sendNow([bytes[next]]) }
                next += 1
                usleep(micros)
            }
        }
    }

    func stop() { stopped.store(true, ordering: .releasing) }
}
