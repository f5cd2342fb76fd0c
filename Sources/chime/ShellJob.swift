import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// One run of `chime work`'s command for one message: a child process in a process group
/// of its own (so a timeout can kill everything it started), the body on its standard
/// input, metadata in its environment, its output read line by line as it comes.
final class ShellJob: @unchecked Sendable {
    struct Outcome {
        /// The exit status, or nil when a signal ended it.
        var status: Int32?
        var signal: Int32?
        /// The last bytes it wrote to standard error (for a dead letter's reason).
        var stderrTail: String
    }

    let pid: pid_t
    private let stdinFD: Int32
    private let stdoutFD: Int32
    private let stderrFD: Int32

    /// Starts `command` (resolved through PATH) with `arguments` and `environment` added to
    /// this process's.
    init(command: String, arguments: [String], environment: [String: String]) throws {
        // Arguments and environment are made before any pipe exists.
        var env = Self.inherited
        for (k, v) in environment { env[k] = v }
        let argv = ([command] + arguments).map { strdup($0) } + [nil]
        let envp = env.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            for p in argv { free(p) }
            for p in envp { free(p) }
        }
        let (child, fds): (pid_t, (stdin: Int32, stdout: Int32, stderr: Int32))
        if Self.pipe2 != nil {
            (child, fds) = try Self.spawn(command, argv, envp)
        } else {
            // Without pipe2, pipes are made and marked close-on-exec in two steps: children
            // are spawned under one lock so that a pipe of one job cannot leak into another
            // job's child spawned in between (it would hold it open, and its job would never
            // see the end of its output).
            (child, fds) = try Self.spawnLock.withLock { _ in try Self.spawn(command, argv, envp) }
        }
        pid = child
        stdinFD = fds.stdin
        stdoutFD = fds.stdout
        stderrFD = fds.stderr
    }

    /// This process's environment, read once.
    private static let inherited = ProcessInfo.processInfo.environment
    private static let spawnLock = Mutex(())
    /// pipe2(2), which makes both ends close-on-exec at once (looked up at run time: the C
    /// module does not declare it).
    private static let pipe2: (@convention(c) (UnsafeMutablePointer<Int32>, Int32) -> Int32)? = {
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "pipe2") else { return nil }
        return unsafeBitCast(symbol, to: (@convention(c) (UnsafeMutablePointer<Int32>, Int32) -> Int32).self)
    }()

    private static func spawn(
        _ command: String, _ argv: [UnsafeMutablePointer<CChar>?], _ envp: [UnsafeMutablePointer<CChar>?]
    ) throws -> (pid_t, (stdin: Int32, stdout: Int32, stderr: Int32)) {
        var pipes: [[Int32]] = []
        for _ in 0..<3 {
            var fds: [Int32] = [0, 0]
            let made: Int32
            if let pipe2 {
                made = pipe2(&fds, O_CLOEXEC)
            } else {
                made = pipe(&fds)
                if made == 0 { for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) } }
            }
            guard made == 0 else {
                for p in pipes {
                    close(p[0])
                    close(p[1])
                }
                throw CommandFailure(description: "cannot make a pipe: \(String(cString: strerror(errno)))")
            }
            pipes.append(fds)
        }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, pipes[0][0], 0)
        posix_spawn_file_actions_adddup2(&actions, pipes[1][1], 1)
        posix_spawn_file_actions_adddup2(&actions, pipes[2][1], 2)
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        // Its own process group (pgid = its pid), and default signal handling.
        posix_spawnattr_setpgroup(&attributes, 0)
        var defaults = sigset_t()
        sigfillset(&defaults)
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        var none = sigset_t()
        sigemptyset(&none)
        posix_spawnattr_setsigmask(&attributes, &none)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK))
        var child: pid_t = 0
        let rc = posix_spawnp(&child, command, &actions, &attributes, argv, envp)
        close(pipes[0][0])
        close(pipes[1][1])
        close(pipes[2][1])
        guard rc == 0 else {
            close(pipes[0][1])
            close(pipes[1][0])
            close(pipes[2][0])
            throw CommandFailure(description: "cannot start \(command): \(String(cString: strerror(rc)))")
        }
        return (child, (pipes[0][1], pipes[1][0], pipes[2][0]))
    }

    /// Kills the whole process group.
    func kill() { _ = Glibc.kill(-pid, SIGKILL) }

    /// Writes `input` to the child's standard input and closes it, hands each line of
    /// output to `line` (false: standard output, true: standard error) as it comes, and
    /// returns once the child has exited and its output is read. Blocks a thread of its
    /// own, not the caller's.
    func finish(input: [UInt8], line: @escaping @Sendable (String, Bool) -> Void) async -> Outcome {
        await withCheckedContinuation { (c: CheckedContinuation<Outcome, Never>) in
            Thread.detachNewThread { [self] in
                c.resume(returning: self.pump(input: input, line: line))
            }
        }
    }

    private func pump(input: [UInt8], line: (String, Bool) -> Void) -> Outcome {
        // One poll over the three pipes: the input goes in as the child takes it while its
        // output is read, so a child that writes a lot before it reads cannot stall on a
        // full pipe while this thread waits to write (and the reverse).
        var sent = 0
        var inputOpen = true
        if input.isEmpty {
            close(stdinFD)
            inputOpen = false
        } else {
            _ = fcntl(stdinFD, F_SETFL, fcntl(stdinFD, F_GETFL) | O_NONBLOCK)
        }
        var pending: [Int32: [UInt8]] = [stdoutFD: [], stderrFD: []]
        var tail: [UInt8] = []
        var open: Set<Int32> = [stdoutFD, stderrFD]
        var buffer = [UInt8](repeating: 0, count: 65_536)
        while !open.isEmpty || inputOpen {
            var fds = open.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
            if inputOpen { fds.append(pollfd(fd: stdinFD, events: Int16(POLLOUT), revents: 0)) }
            guard poll(&fds, nfds_t(fds.count), -1) >= 0 else {
                if errno == EINTR { continue }
                break
            }
            for p in fds where p.revents != 0 {
                if p.fd == stdinFD {
                    let n = input.withUnsafeBytes { raw in write(stdinFD, raw.baseAddress! + sent, raw.count - sent) }
                    if n > 0 { sent += n }
                    // Done, or the child closed its input (EPIPE): it does not want the rest.
                    if sent == input.count || (n < 0 && errno != EAGAIN && errno != EINTR) || p.revents & Int16(POLLERR | POLLHUP) != 0 {
                        close(stdinFD)
                        inputOpen = false
                    }
                    continue
                }
                let n = read(p.fd, &buffer, buffer.count)
                if n <= 0 {
                    open.remove(p.fd)
                    close(p.fd)
                    continue
                }
                let chunk = buffer[0..<n]
                if p.fd == stderrFD {
                    tail.append(contentsOf: chunk)
                    if tail.count > 2_048 { tail.removeFirst(tail.count - 2_048) }
                }
                pending[p.fd]!.append(contentsOf: chunk)
                while let nl = pending[p.fd]!.firstIndex(of: 0x0A) {
                    line(String(decoding: pending[p.fd]![..<nl], as: UTF8.self), p.fd == stderrFD)
                    pending[p.fd]!.removeSubrange(...nl)
                }
                // A line longer than 64 KiB is handed on in pieces.
                if pending[p.fd]!.count > 65_536 {
                    line(String(decoding: pending[p.fd]!, as: UTF8.self), p.fd == stderrFD)
                    pending[p.fd] = []
                }
            }
        }
        for (fd, rest) in pending where !rest.isEmpty { line(String(decoding: rest, as: UTF8.self), fd == stderrFD) }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let exited = status & 0x7F == 0
        return Outcome(
            status: exited ? (status >> 8) & 0xFF : nil, signal: exited ? nil : status & 0x7F,
            stderrTail: String(decoding: tail, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))
    }
}
