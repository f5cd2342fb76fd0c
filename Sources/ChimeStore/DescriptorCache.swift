import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The open descriptors of the store's files, at most `limit` at once for the process.
/// A `DataFile` holds its descriptor only while it is in this cache; a call on a file
/// whose descriptor was closed opens it again (its path, its flags without `O_CREAT`).
/// When a new descriptor would pass the limit, the least recently used one that no call
/// is using is closed. So a broker with 10,000 partitions — two active segments each, more
/// with groups and sealed segments — stays within a small number of open files, and the
/// files used often stay open. A descriptor is held (pinned) only for the length of one
/// system call; when every open descriptor is pinned the cache goes over its limit rather
/// than wait, by at most the number of calls in progress.
public final class DescriptorCache: @unchecked Sendable, Equatable {
    public static func == (a: DescriptorCache, b: DescriptorCache) -> Bool { a === b }

    /// The cache of every store file of the process.
    public static let shared = DescriptorCache(limit: 512)

    private let lock = NSLock()
    private var limitValue: Int
    /// Files with a descriptor open, by identity; not retained (a file leaves in its deinit,
    /// which takes the lock: nothing done under the lock may release the last reference).
    private var open: [ObjectIdentifier: Unmanaged<DataFile>] = [:]
    private var clock: UInt64 = 0
    private var reopenedCount = 0
    private var closedCount = 0

    public init(limit: Int) {
        precondition(limit >= 1, "a cache holds at least one descriptor")
        limitValue = limit
    }

    /// Descriptors the cache keeps open at most (while none is pinned past it).
    public var limit: Int {
        get { lock.withLock { limitValue } }
        set {
            precondition(newValue >= 1, "a cache holds at least one descriptor")
            lock.withLock {
                limitValue = newValue
                evict(toMake: 0)
            }
        }
    }

    /// Descriptors open now.
    public var openCount: Int { lock.withLock { open.count } }
    /// Descriptors opened again after the cache had closed them.
    public var reopened: Int { lock.withLock { reopenedCount } }
    /// Descriptors the cache closed to stay within its limit.
    public var evicted: Int { lock.withLock { closedCount } }

    /// Registers a file just opened (descriptor `fd`), making room for it.
    func adopt(_ file: DataFile, fd: Int32) {
        lock.withLock {
            evict(toMake: 1)
            file.descriptor = fd
            clock += 1
            file.lastUse = clock
            open[ObjectIdentifier(file)] = Unmanaged.passUnretained(file)
        }
    }

    /// The file's descriptor, opened again if the cache had closed it, pinned until
    /// `release`.
    func acquire(_ file: DataFile) throws -> Int32 {
        lock.lock()
        defer { lock.unlock() }
        clock += 1
        file.lastUse = clock
        if file.descriptor >= 0 {
            file.pins += 1
            return file.descriptor
        }
        evict(toMake: 1)
        var fd = Glibc.open(file.path, file.reopenFlags)
        if fd < 0 && (errno == EMFILE || errno == ENFILE) {
            // The process is out of descriptors (sockets, other files): give back every
            // unpinned one this cache holds, then try once more.
            evict(toMake: limitValue)
            fd = Glibc.open(file.path, file.reopenFlags)
        }
        guard fd >= 0 else { throw StoreError.system("open", errno: errno, file: file.path) }
        reopenedCount += 1
        file.descriptor = fd
        file.pins = 1
        open[ObjectIdentifier(file)] = Unmanaged.passUnretained(file)
        return fd
    }

    func release(_ file: DataFile) {
        lock.withLock {
            assert(file.pins > 0, "released more than acquired")
            file.pins -= 1
        }
    }

    /// Keeps the file's descriptor open until the file goes (a segment about to be
    /// deleted: readers holding it keep reading it through the descriptor).
    func keepOpen(_ file: DataFile) throws {
        _ = try acquire(file)
    }

    /// The file is going: its descriptor closes.
    func forget(_ file: DataFile) {
        lock.withLock {
            if file.descriptor >= 0 {
                close(file.descriptor)
                file.descriptor = -1
            }
            open[ObjectIdentifier(file)] = nil
        }
    }

    /// Closes least recently used unpinned descriptors until `count` more fit under the
    /// limit (or none is left to close), and an eighth of the limit more: one sort of the
    /// open files serves many opens. Called with the lock held.
    private func evict(toMake count: Int) {
        guard open.count + count > limitValue else { return }
        var excess = open.count + count - limitValue + limitValue / 8
        // Unretained throughout: retaining a file here could make this the last reference,
        // and its deinit (which takes this lock) would run inside it.
        var candidates: [(use: UInt64, key: ObjectIdentifier, file: Unmanaged<DataFile>)] = []
        for (key, file) in open {
            let (pins, use) = file._withUnsafeGuaranteedRef { ($0.pins, $0.lastUse) }
            if pins == 0 { candidates.append((use, key, file)) }
        }
        guard !candidates.isEmpty else { return }
        if excess < candidates.count {
            candidates.sort { $0.use < $1.use }
        }
        for c in candidates where excess > 0 {
            c.file._withUnsafeGuaranteedRef {
                close($0.descriptor)
                $0.descriptor = -1
            }
            open[c.key] = nil
            closedCount += 1
            excess -= 1
        }
    }
}
