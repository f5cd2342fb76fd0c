import Foundation
import Glibc

/// `chime serve` as a child process on 127.0.0.1, started and waited for until it says it
/// serves; its port is read from that line (so port 0 works).
public final class ServeProcess: @unchecked Sendable {
    public let process = Process()
    public let port: Int
    private let pipe = Pipe()
    /// The admin port it announced (nil with `--no-admin`, or before the announcement when
    /// `waitForAdmin` was false).
    public let adminPort: Int?
    /// Everything it printed up to "Ctrl-C to stop" (and the admin port's line, when waited for).
    public let banner: String

    /// `launcher`: a command that runs the server (its path and arguments follow), such as
    /// a shell that `exec`s it.
    public init(
        data: String, port: Int, extra: [String] = [], environment: [String: String]? = nil, waitForAdmin: Bool = false,
        launcher: [String] = []
    ) throws {
        // The admin port on any free port: tests run side by side.
        let command = [builtProduct("chime"), "serve", "--data", data, "--port", "\(port)", "--admin-port", "0"] + extra
        let full = launcher + command
        process.executableURL = URL(fileURLWithPath: full[0])
        process.arguments = Array(full.dropFirst())
        if let environment { process.environment = environment }
        process.standardOutput = pipe
        process.standardError = FileHandle.nullDevice
        try process.run()
        var output = ""
        while !output.contains("Ctrl-C to stop") || (waitForAdmin && !output.contains("/metrics)")) {
            let chunk = pipe.fileHandleForReading.availableData
            if chunk.isEmpty { break }
            output += String(decoding: chunk, as: UTF8.self)
        }
        banner = output
        // "… serving the broker protocol on 127.0.0.1:7420[ over TLS][ (token required)]. Ctrl-C to stop."
        let line = output.split(separator: "\n").first { $0.contains("serving the broker protocol on") } ?? ""
        let address = line.components(separatedBy: "protocol on ").last?.split(separator: " ").first ?? ""
        self.port = Int(address.split(separator: ":").last?.prefix { $0.isNumber } ?? "") ?? -1
        // "chime: admin HTTP on 127.0.0.1:7421 (/health, …, /metrics)"
        let adminLine = output.split(separator: "\n").first { $0.contains("admin HTTP on") } ?? ""
        let adminAddress = adminLine.components(separatedBy: "HTTP on ").last?.split(separator: " ").first ?? ""
        adminPort = Int(adminAddress.split(separator: ":").last ?? "")
    }

    public func kill9() {
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    /// SIGTERM; returns the exit status and what it printed after the banner.
    @discardableResult
    public func stop() -> (status: Int32, output: String) {
        kill(process.processIdentifier, SIGTERM)
        let rest = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: rest, as: UTF8.self))
    }

    /// The process's resident set, from /proc (kB); nil once it has gone.
    public var residentKiB: Int? {
        guard let status = try? String(contentsOfFile: "/proc/\(process.processIdentifier)/status", encoding: .utf8) else { return nil }
        let line = status.split(separator: "\n").first { $0.hasPrefix("VmRSS:") }
        return line.flatMap { Int($0.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "") }
    }
}
