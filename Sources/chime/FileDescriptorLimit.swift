#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The process's open-file limit. A server raises its soft limit to the hard one at start,
/// as most servers do: the soft default (1,024 on many systems) is a guard for interactive
/// programs, and the store's descriptor cache and the connection limits are what bound
/// the broker's files.
enum FileDescriptorLimit {
    /// Raises the soft limit to the hard limit where allowed; returns both as they are now.
    @discardableResult
    static func raiseSoftLimitToHard() -> (soft: Int, hard: Int) {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return (1_024, 1_024) }
        if limit.rlim_cur < limit.rlim_max {
            var raised = limit
            raised.rlim_cur = limit.rlim_max
            if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &raised) == 0 { limit = raised }
        }
        return (Int(clamping: limit.rlim_cur), Int(clamping: limit.rlim_max))
    }
}
