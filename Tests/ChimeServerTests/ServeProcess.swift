import ChimeTestSupport
import Foundation
import Glibc

/// `chime serve` as a child process on 127.0.0.1, started and waited for until it says it
/// serves; its port is read from that line (so port 0 works).
final class ServeProcess: @unchecked Sendable {
    let process = Process()
    let port: Int
    private let pipe = Pipe()
    /// Everything it printed up to "Ctrl-C to stop".
    let banner: String

    init(data: String, port: Int, extra: [String] = [], environment: [String: String]? = nil) throws {
        process.executableURL = URL(fileURLWithPath: builtProduct("chime"))
        // The admin port on any free port: tests run side by side.
        process.arguments = ["serve", "--data", data, "--port", "\(port)", "--admin-port", "0"] + extra
        if let environment { process.environment = environment }
        process.standardOutput = pipe
        process.standardError = FileHandle.nullDevice
        try process.run()
        var output = ""
        while !output.contains("Ctrl-C to stop") {
            let chunk = pipe.fileHandleForReading.availableData
            if chunk.isEmpty { break }
            output += String(decoding: chunk, as: UTF8.self)
        }
        banner = output
        self.port = output.split(separator: "\n").first { $0.contains("serving the broker protocol on") }?
            .split(separator: ":").last?.split(separator: ".").first.flatMap { Int($0) } ?? -1
    }

    func kill9() {
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    /// SIGTERM; returns the exit status and what it printed after the banner.
    @discardableResult
    func stop() -> (status: Int32, output: String) {
        kill(process.processIdentifier, SIGTERM)
        let rest = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: rest, as: UTF8.self))
    }
}
