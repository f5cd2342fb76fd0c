import Foundation
import Glibc
import Testing

@testable import ChimeStore

/// `chime serve` as a child process: it recovers what a crash left, says so, and on
/// SIGTERM closes cleanly so the next open needs no scan.
@Suite struct ServeCommandTests {
    @Test func recoversATornLogAndStopsCleanlyOnSIGTERM() async throws {
        let dir = TemporaryDirectory()
        let logDir = dir.path + "/orders/0/ready"
        let log = try RecordLog.open(directory: logDir, configuration: LogConfiguration(durability: .never), logger: testLogger)
        for i in 0..<5 { try log.append(try smallBatch("m\(i)")) }
        // No close: no index for the active segment, as after a crash; then tear the tail.
        let segment = logDir + "/00000000000000000000.log"
        truncateFile(segment, to: fileSize(segment) - 3)

        let process = Process()
        process.executableURL = URL(fileURLWithPath: builtProduct("chime"))
        process.arguments = ["serve", "--data", dir.path]
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = FileHandle.nullDevice
        try process.run()
        var output = ""
        let reader = pipe.fileHandleForReading
        while !output.contains("ready") {
            let chunk = reader.availableData
            if chunk.isEmpty { break }
            output += String(decoding: chunk, as: UTF8.self)
        }
        #expect(output.contains("1 log(s), 1 segment(s)"))
        // A second broker on the same directory is refused while this one runs.
        let second = try run(builtProduct("chime"), ["serve", "--data", dir.path])
        #expect(second.status != 0)

        kill(process.processIdentifier, SIGTERM)
        process.waitUntilExit()
        output += String(decoding: reader.readDataToEndOfFile(), as: UTF8.self)
        #expect(process.terminationReason == .exit)
        #expect(process.terminationStatus == 0)
        #expect(output.contains("stopped cleanly"))

        let reopened = try RecordLog.open(directory: logDir, configuration: LogConfiguration(durability: .never), logger: testLogger)
        #expect(reopened.recovery.segments.allSatisfy { !$0.scanned }, "clean stop wrote the index")
        #expect(reopened.endOffset == 4, "the torn fifth batch was cut")
        #expect(try readAll(reopened).map { String(decoding: $0.record.body, as: UTF8.self) } == ["m0", "m1", "m2", "m3"])
        try reopened.close()
        _ = log
    }

    @Test func badOptionsAreRefusedWithAMessage() throws {
        let (status, _) = try run(builtProduct("chime"), ["serve", "--durability", "sometimes"])
        #expect(status != 0)
    }
}
