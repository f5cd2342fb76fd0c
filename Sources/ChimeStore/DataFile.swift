#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A file of the store: positional reads and writes, sync, truncate.
/// pread/pwrite are safe from several threads; the owner serialises writes.
/// Its descriptor is held by a `DescriptorCache`, which may close it while the file is not
/// in a call and opens it again for the next one. A file about to be deleted is kept open
/// (`keepOpen`) until the last reference goes, so a reader that still holds a segment
/// deleted by retention keeps reading valid bytes.
final class DataFile: @unchecked Sendable {
    let path: String
    let calls: FileSystemCalls
    private let cache: DescriptorCache
    /// `open`'s flags for opening the file again: it exists, so no `O_CREAT`.
    let reopenFlags: Int32
    // Guarded by the cache's lock.
    var descriptor: Int32 = -1
    var pins = 0
    var lastUse: UInt64 = 0

    private init(path: String, flags: Int32, calls: FileSystemCalls, cache: DescriptorCache) {
        self.path = path
        self.calls = calls
        self.cache = cache
        reopenFlags = flags & ~O_CREAT
    }

    deinit { cache.forget(self) }

    static func open(
        _ path: String, create: Bool, readOnly: Bool = false, calls: FileSystemCalls, cache: DescriptorCache = .shared
    ) throws -> DataFile {
        var flags = readOnly ? O_RDONLY : O_RDWR
        flags |= O_CLOEXEC
        if create { flags |= O_CREAT }
        let fd = Glibc.open(path, flags, 0o644)
        guard fd >= 0 else { throw StoreError.system("open", errno: errno, file: path) }
        let file = DataFile(path: path, flags: flags, calls: calls, cache: cache)
        cache.adopt(file, fd: fd)
        return file
    }

    /// Runs `body` with the file's descriptor, open (again) and pinned for its length.
    func withDescriptor<R>(_ body: (Int32) throws -> R) throws -> R {
        let fd = try cache.acquire(self)
        defer { cache.release(self) }
        return try body(fd)
    }

    /// Keeps the descriptor open until the file goes: for a file about to be unlinked.
    func keepOpen() throws {
        try cache.keepOpen(self)
    }

    func size() throws -> Int64 { try status().size }

    func status() throws -> FileStatus {
        var st = stat()
        let r = try withDescriptor { fstat($0, &st) }
        guard r == 0 else { throw StoreError.system("fstat", errno: errno, file: path) }
        return FileStatus(size: Int64(st.st_size), changeTime: Int64(st.st_ctim.tv_sec) * 1_000_000_000 + Int64(st.st_ctim.tv_nsec))
    }

    /// Writes all of `iov` at `offset`, retrying short writes. On failure nothing is
    /// promised about how much landed: the caller truncates back.
    func writeAll(_ buffers: [UnsafeRawBufferPointer], at offset: Int64) throws {
        var iov = buffers.filter { $0.count > 0 }.map {
            iovec(iov_base: UnsafeMutableRawPointer(mutating: $0.baseAddress!), iov_len: $0.count)
        }
        var first = 0  // iov[first...] remains to be written
        var position = offset
        while first < iov.count {
            let count = min(iov.count - first, 1024)
            let written = try withDescriptor { fd in
                iov.withUnsafeBufferPointer { calls.pwritev(fd, $0.baseAddress! + first, Int32(count), position) }
            }
            if written < 0 {
                if Int32(-written) == EINTR { continue }
                throw StoreError.system("write", errno: Int32(-written), file: path, position: position)
            }
            guard written > 0 else { throw StoreError(.io, "write made no progress", file: path, position: position) }
            position += Int64(written)
            // Skip what was written; a partly written buffer keeps its rest.
            var skip = written
            while skip > 0 {
                if iov[first].iov_len <= skip {
                    skip -= iov[first].iov_len
                    first += 1
                } else {
                    iov[first].iov_base += skip
                    iov[first].iov_len -= skip
                    skip = 0
                }
            }
        }
    }

    func write(_ bytes: [UInt8], at offset: Int64) throws {
        try bytes.withUnsafeBytes { try writeAll([$0], at: offset) }
    }

    /// Reads up to `buffer.count` bytes at `offset`; fewer only at end of file.
    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: Int64) throws -> Int {
        try withDescriptor { fd in
            var done = 0
            while done < buffer.count {
                let n = pread(fd, buffer.baseAddress! + done, buffer.count - done, off_t(offset + Int64(done)))
                if n < 0 {
                    if errno == EINTR { continue }
                    throw StoreError.system("read", errno: errno, file: path, position: offset + Int64(done))
                }
                if n == 0 { break }
                done += n
            }
            return done
        }
    }

    /// Reads exactly `count` bytes at `offset` (fewer only if the file ends first).
    func read(count: Int, at offset: Int64) throws -> [UInt8] {
        var got = 0
        let bytes = try [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
            got = try read(into: UnsafeMutableRawBufferPointer(buffer), at: offset)
            initialized = got
        }
        return bytes
    }

    func sync() throws {
        let r = try withDescriptor { calls.fdatasync($0) }
        if r != 0 { throw StoreError.system("fdatasync", errno: -r, file: path) }
    }

    func truncate(to length: Int64) throws {
        let r = try withDescriptor { calls.ftruncate($0, length) }
        if r != 0 { throw StoreError.system("ftruncate", errno: -r, file: path, position: length) }
    }
}

/// A read-only shared mapping of a file, unmapped when the last reference goes.
final class MappedRegion: @unchecked Sendable {
    let base: UnsafeRawPointer
    let length: Int

    init(file: DataFile, length: Int) throws {
        let mapped = try file.withDescriptor { mmap(nil, length, PROT_READ, MAP_SHARED, $0, 0) }
        guard let p = mapped, p != MAP_FAILED else {
            throw StoreError.system("mmap", errno: errno, file: file.path)
        }
        base = UnsafeRawPointer(p)
        self.length = length
    }

    deinit { munmap(UnsafeMutableRawPointer(mutating: base), length) }
}

/// Directory operations: entries are durable only once the directory itself is synced.
package enum Directory {
    package static func create(_ path: String) throws {
        var built = path.hasPrefix("/") ? "" : "."
        for part in path.split(separator: "/", omittingEmptySubsequences: true) {
            built += "/" + part
            if mkdir(built, 0o755) != 0 && errno != EEXIST {
                throw StoreError.system("mkdir", errno: errno, file: built)
            }
        }
    }

    /// Creates the directory `path` whose parent must exist (unlike `create`, which makes
    /// every missing parent): a directory moved away meanwhile is not made again.
    package static func createChild(_ path: String) throws {
        if mkdir(path, 0o755) != 0 && errno != EEXIST { throw StoreError.system("mkdir", errno: errno, file: path) }
    }

    package static func sync(_ path: String) throws {
        let fd = Glibc.open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw StoreError.system("open directory", errno: errno, file: path) }
        defer { close(fd) }
        if fsync(fd) != 0 { throw StoreError.system("fsync directory", errno: errno, file: path) }
    }

    package static func entries(_ path: String) throws -> [String] {
        guard let dir = opendir(path) else { throw StoreError.system("opendir", errno: errno, file: path) }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafePointer(to: entry.pointee.d_name) {
                $0.withMemoryRebound(to: CChar.self, capacity: Int(NAME_MAX) + 1) { String(cString: $0) }
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    package static func isDirectory(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
    }

    /// Removes `path` and everything below it (a deleted topic's directory); a missing
    /// path is not an error.
    package static func removeTree(_ path: String) throws {
        guard isDirectory(path) else { return try remove(path) }
        for name in try entries(path) { try removeTree(path + "/" + name) }
        if rmdir(path) != 0 && errno != ENOENT { throw StoreError.system("rmdir", errno: errno, file: path) }
    }

    package static func remove(_ path: String) throws {
        if unlink(path) != 0 && errno != ENOENT { throw StoreError.system("unlink", errno: errno, file: path) }
    }

    /// Renames a file or directory (atomic within one file system; durable once both
    /// parents are synced).
    package static func rename(_ from: String, to: String) throws {
        if Glibc.rename(from, to) != 0 { throw StoreError.system("rename", errno: errno, file: from) }
    }

    /// Writes a small file atomically: temp file, fsync, rename, fsync of the directory.
    package static func writeAtomically(_ bytes: [UInt8], to path: String, calls: FileSystemCalls) throws {
        try writeAtomically(bytes, to: path, calls: calls) { publish in try publish() }
    }

    /// `writeAtomically` whose rename runs inside `publishing`, which may decide not to
    /// call it (the temp file is then removed): a caller can check, under its own lock,
    /// that the file is still wanted and rename in the same critical section.
    package static func writeAtomically(
        _ bytes: [UInt8], to path: String, calls: FileSystemCalls, publishing: (_ publish: () throws -> Void) throws -> Void
    ) throws {
        let temp = path + ".tmp"
        do {
            let file = try DataFile.open(temp, create: true, calls: calls)
            try file.truncate(to: 0)
            try file.write(bytes, at: 0)
            try file.sync()
        } catch {
            // A temp file cut short by a full disk would hold on to what space it got.
            unlink(temp)
            throw error
        }
        var published = false
        try publishing {
            if Glibc.rename(temp, path) != 0 { throw StoreError.system("rename", errno: errno, file: temp) }
            published = true
        }
        if !published { unlink(temp) }
        try sync(parent(of: path))
    }

    static func parent(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }
}

/// What an index remembers of its segment file: its size, and when its content or
/// metadata last changed (`st_ctim`, ns since the epoch; writes and truncates move it, and
/// unlike the modification time no call can set it back).
struct FileStatus: Sendable, Equatable {
    var size: Int64
    var changeTime: Int64
}
