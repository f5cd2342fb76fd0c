#if canImport(Glibc)
import Glibc
#endif
import Logging

/// A broker's data directory: held by one process at a time (an exclusive lock on
/// `.lock`), with every segment log under it opened and recovered.
public final class DataDirectory: @unchecked Sendable {
    public let path: String
    public let logs: [RecordLog]
    private let lockFD: Int32

    private init(path: String, logs: [RecordLog], lockFD: Int32) {
        self.path = path
        self.logs = logs
        self.lockFD = lockFD
    }

    public static func open(_ path: String, configuration: LogConfiguration, logger: Logger) throws -> DataDirectory {
        try Directory.create(path)
        let lockPath = path + "/.lock"
        let fd = Glibc.open(lockPath, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw StoreError.system("open", errno: errno, file: lockPath) }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            Glibc.close(fd)
            throw StoreError(.locked, "another Chime process is using \(path)", file: lockPath)
        }
        do {
            let logs = try logDirectories(under: path).map {
                try RecordLog.open(directory: $0, configuration: configuration, logger: logger)
            }
            return DataDirectory(path: path, logs: logs, lockFD: fd)
        } catch {
            Glibc.close(fd)
            throw error
        }
    }

    /// Directories below `root` that hold segment files.
    static func logDirectories(under root: String) throws -> [String] {
        var found: [String] = []
        var pending = [root]
        while let dir = pending.popLast() {
            var hasSegments = false
            for name in try Directory.entries(dir).sorted() {
                let child = dir + "/" + name
                if LogSegment<RecordBatchFormat>.baseOffset(fromFileName: name) != nil { hasSegments = true }
                else if !name.hasPrefix("."), Directory.isDirectory(child) { pending.append(child) }
            }
            if hasSegments { found.append(dir) }
        }
        return found.sorted()
    }

    /// Closes every log cleanly, then releases the lock.
    public func close() throws {
        defer { Glibc.close(lockFD) }
        var first: Error?
        for log in logs {
            do { try log.close() } catch { first = first ?? error }
        }
        if let first { throw first }
    }
}
