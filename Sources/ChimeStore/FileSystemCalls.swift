#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The system calls through which the store writes and syncs. Production uses `.system`;
/// fault-injection tests replace a call to make it fail the way a full or broken disk does.
/// Each returns a byte count or 0 on success, and `-errno` on failure.
public struct FileSystemCalls: Sendable {
    public var pwritev: @Sendable (_ fd: Int32, _ iov: UnsafePointer<iovec>, _ count: Int32, _ offset: Int64) -> Int
    public var fdatasync: @Sendable (_ fd: Int32) -> Int32
    public var ftruncate: @Sendable (_ fd: Int32, _ length: Int64) -> Int32

    public init(
        pwritev: @escaping @Sendable (Int32, UnsafePointer<iovec>, Int32, Int64) -> Int,
        fdatasync: @escaping @Sendable (Int32) -> Int32,
        ftruncate: @escaping @Sendable (Int32, Int64) -> Int32
    ) {
        self.pwritev = pwritev
        self.fdatasync = fdatasync
        self.ftruncate = ftruncate
    }

    public static let system = FileSystemCalls(
        pwritev: { fd, iov, count, offset in
            let n = Glibc.pwritev(fd, iov, count, off_t(offset))
            return n < 0 ? -Int(errno) : n
        },
        fdatasync: { fd in
            while true {
                if Glibc.fdatasync(fd) == 0 { return 0 }
                if errno != EINTR { return -errno }
            }
        },
        ftruncate: { fd, length in
            Glibc.ftruncate(fd, off_t(length)) == 0 ? 0 : -errno
        }
    )
}
