import Foundation

/// A peer's server as a child process on 127.0.0.1, its output in `<data>.log`.
///
/// Started with posix_spawn and an empty signal mask, default dispositions: a child
/// started from a thread of this process would otherwise inherit that thread's blocked
/// signals, and a server that never sees SIGTERM cannot be stopped cleanly.
final class ServerProcess: @unchecked Sendable {
    let peer: any Peer
    let data: String
    let port: Int
    let pid: pid_t
    private var exited = false
    private var status: Int32 = 0
    /// From launch to the first answered request.
    private(set) var startup: Duration = .zero

    private init(peer: any Peer, data: String, port: Int, pid: pid_t) {
        self.peer = peer
        self.data = data
        self.port = port
        self.pid = pid
    }

    /// Starts the server on `data` (created if missing) and waits until it answers, for at
    /// most `timeout`.
    static func start(_ peer: any Peer, data: String, port: Int, timeout: Duration = .seconds(600)) async throws -> ServerProcess {
        try FileManager.default.createDirectory(atPath: data, withIntermediateDirectories: true)
        let (executable, arguments) = peer.command(data: data, port: port)
        let path = try Self.resolve(executable)
        let launched = ContinuousClock.now
        let pid = try spawn(path, arguments, log: data + ".log")
        let server = ServerProcess(peer: peer, data: data, port: port, pid: pid)
        while !(await peer.isServing(port: port)) {
            guard server.isRunning else {
                throw PeerProtocolError("\(peer.label) exited (status \(server.status)) before serving; see \(data).log")
            }
            guard launched.duration(to: .now) < timeout else {
                server.kill()
                throw PeerProtocolError("\(peer.label) did not answer within \(timeout); see \(data).log")
            }
            try await Task.sleep(for: .milliseconds(5))
        }
        server.startup = launched.duration(to: .now)
        return server
    }

    static func spawn(_ path: String, _ arguments: [String], log: String) throws -> pid_t {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 1, log, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var none = sigset_t()
        sigemptyset(&none)
        var all = sigset_t()
        sigfillset(&all)
        posix_spawnattr_setsigmask(&attributes, &none)
        posix_spawnattr_setsigdefault(&attributes, &all)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        let argv: [UnsafeMutablePointer<CChar>?] = ([path] + arguments).map { strdup($0) } + [nil]
        defer { for a in argv { free(a) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, path, &actions, &attributes, argv, environ)
        guard rc == 0 else { throw PeerProtocolError("cannot start \(path): \(String(cString: strerror(rc)))") }
        return pid
    }

    var isRunning: Bool {
        guard !exited else { return false }
        var s: Int32 = 0
        if waitpid(pid, &s, WNOHANG) == pid {
            exited = true
            status = s
            return false
        }
        return true
    }

    private func waitForExit() {
        guard !exited else { return }
        var s: Int32 = 0
        while waitpid(pid, &s, 0) == -1 && errno == EINTR {}
        exited = true
        status = s
    }

    /// The resident set of the server process, in bytes (VmRSS).
    func residentBytes() -> Int {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return 0 }
        for line in status.split(separator: "\n") where line.hasPrefix("VmRSS:") {
            let kb = line.split(separator: " ").compactMap { Int($0) }.first ?? 0
            return kb * 1024
        }
        return 0
    }

    /// CPU time the server process has used so far, user and system, in seconds
    /// (`/proc/<pid>/stat` fields 14 and 15, in clock ticks); 0 when it cannot be read.
    func cpuSeconds() -> Double {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        else { return 0 }
        // After the command name (which may hold spaces) come the fields from the 3rd on.
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) else { return 0 }
        return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    /// SIGTERM, then waits for the process to exit (each peer's clean stop).
    func stop() {
        guard isRunning else { return }
        Foundation.kill(pid, SIGTERM)
        waitForExit()
    }

    /// SIGKILL: no chance to flush or write anything.
    func kill() {
        guard isRunning else { return }
        Foundation.kill(pid, SIGKILL)
        waitForExit()
    }

    /// An executable named without a slash is looked up in PATH.
    static func resolve(_ name: String) throws -> String {
        if name.contains("/") { return name }
        for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":") {
            let path = "\(dir)/\(name)"
            if FileManager.default.isExecutableFile(atPath: path) { return path }
        }
        throw PeerProtocolError("\(name) is not installed (bench/suite.sh installs it with apt-get)")
    }

    /// A port nobody listens on now (bound and released).
    static func freePort() -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = 0
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) } }
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        return Int(UInt16(bigEndian: addr.sin_port))
    }
}
