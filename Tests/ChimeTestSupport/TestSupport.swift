import ChimeStore
import Foundation
import Glibc
import Logging

// Helpers every test target shares: real temporary directories, real processes, and byte
// surgery on real files. Nothing here fakes the store.

/// A fresh directory under the system temp dir, removed when the test ends.
public final class TemporaryDirectory {
    public let path: String

    public init(_ label: String = "chime-test") {
        let base = (ProcessInfo.processInfo.environment["TMPDIR"] ?? "/tmp") + "/\(label)-\(getpid())-\(UUID().uuidString.prefix(8))"
        try! FileManager.default.createDirectory(atPath: base, withIntermediateDirectories: true)
        path = base
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }

    public func file(_ name: String) -> String { path + "/" + name }
}

/// A built executable of this package (the test binary sits beside them).
public func builtProduct(_ name: String) -> String {
    let me = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    var dir = URL(fileURLWithPath: me).deletingLastPathComponent()
    // The test binary may sit inside a .xctest bundle directory.
    while !FileManager.default.isExecutableFile(atPath: dir.appendingPathComponent(name).path) && dir.path != "/" {
        dir = dir.deletingLastPathComponent()
    }
    return dir.appendingPathComponent(name).path
}

/// Runs a program to completion, returning exit status and standard output (with
/// standard error mixed in when `withErrors`); `input` is its standard input.
public func run(_ executable: String, _ arguments: [String], withErrors: Bool = false, input: String? = nil) throws -> (status: Int32, output: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = withErrors ? pipe : FileHandle.nullDevice
    let stdin = Pipe()
    process.standardInput = input == nil ? FileHandle.nullDevice : stdin
    try process.run()
    if let input {
        stdin.fileHandleForWriting.write(Data(input.utf8))
        try stdin.fileHandleForWriting.close()
    }
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: data, as: UTF8.self))
}

/// Flips one bit of a file in place.
public func flipBit(_ path: String, at position: Int64, bit: UInt8 = 0) throws {
    let handle = try FileHandle(forUpdating: URL(fileURLWithPath: path))
    defer { try? handle.close() }
    try handle.seek(toOffset: UInt64(position))
    var byte = try handle.read(upToCount: 1)!
    byte[0] ^= 1 << bit
    try handle.seek(toOffset: UInt64(position))
    try handle.write(contentsOf: byte)
}

public func fileSize(_ path: String) -> Int64 {
    ((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? NSNumber)?.int64Value ?? -1
}

public func truncateFile(_ path: String, to size: Int64) {
    precondition(truncate(path, off_t(size)) == 0)
}

/// Tests assert on `recovery` reports and typed errors, not on log lines, so the store's
/// (deliberately loud) damage logs are silenced here to keep test output readable.
public let testLogger: Logger = {
    var logger = Logger(label: "chime.test")
    logger.logLevel = .critical
    return logger
}()

/// Runs the crash agent (a built product of this package) with `arguments`; kills it with
/// SIGKILL after `killAfter` when given, else lets it exit. Returns what it printed, its
/// status, and whether a signal ended it.
public func runCrashAgent(_ arguments: [String], killAfter: Duration?) async throws -> (text: String, status: Int32, signalled: Bool) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: builtProduct("CrashAgent"))
    process.arguments = arguments
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = FileHandle.nullDevice
    try process.run()
    if let killAfter {
        try await Task.sleep(for: killAfter)
        kill(process.processIdentifier, SIGKILL)
    }
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (String(decoding: data, as: UTF8.self), process.terminationStatus, process.terminationReason == .uncaughtSignal)
}

/// The store's SplitMix64 under the name tests use: a random test is the same on every
/// run of its seed.
public typealias SeededRandom = SplitMix64
