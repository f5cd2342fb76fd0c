import ChimeBroker
import ChimeStore
import ChimeTestSupport
import ChimeWheel
import Foundation
import Glibc
import Testing

/// `chime serve` as a child process: it opens the broker's data directory (recovering what
/// a crash left), says what it found, refuses a second broker on the same directory, and on
/// SIGTERM closes cleanly.
@Suite struct ServeCommandTests {
    @Test func opensTheBrokerRecoversATornLogAndStopsCleanlyOnSIGTERM() async throws {
        let dir = TemporaryDirectory()
        let clock = ManualClock(SystemWheelClock().now())
        var broker = try await Broker.open(BrokerFixture.options(dir.path, clock: clock), logger: BrokerFixture.logger)
        try broker.createTopic("orders", settings: TopicSettings(partitions: 1))
        for i in 0..<5 { _ = try await broker.publish(topic: "orders", [.text("m\(i)")]) }
        let later = try await broker.publish(topic: "orders", [.text("in a day", at: clock.now() + 86_400_000)])
        await broker.close()
        // Tear the last ready batch, and drop the index, as a crash mid-write would.
        let segment = dir.path + "/topics/orders/0/ready/00000000000000000000.log"
        truncateFile(segment, to: fileSize(segment) - 3)
        try? FileManager.default.removeItem(atPath: dir.path + "/topics/orders/0/ready/00000000000000000000.index")

        let process = Process()
        process.executableURL = URL(fileURLWithPath: builtProduct("chime"))
        process.arguments = ["serve", "--data", dir.path, "--port", "0", "--admin-port", "0"]
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = FileHandle.nullDevice
        try process.run()
        var output = ""
        let reader = pipe.fileHandleForReading
        while !output.contains("Ctrl-C to stop") {
            let chunk = reader.availableData
            if chunk.isEmpty { break }
            output += String(decoding: chunk, as: UTF8.self)
        }
        #expect(output.contains("1 topic(s), 1 partition(s), 1 scheduled message(s) pending"))
        #expect(output.contains("serving the broker protocol on 127.0.0.1:"))
        let second = try run(builtProduct("chime"), ["serve", "--data", dir.path, "--port", "0", "--admin-port", "0"])
        #expect(second.status != 0, "a second broker on the same directory is refused")

        kill(process.processIdentifier, SIGTERM)
        process.waitUntilExit()
        output += String(decoding: reader.readDataToEndOfFile(), as: UTF8.self)
        #expect(process.terminationReason == .exit)
        #expect(process.terminationStatus == 0)
        #expect(output.contains("stopped cleanly"))

        broker = try await Broker.open(BrokerFixture.options(dir.path, clock: clock), logger: BrokerFixture.logger)
        let member = try await broker.join(group: "g", member: "m", topics: ["orders"]).memberID
        let got = try await broker.fetch(group: "g", member: member, max: 10)
        #expect(got.map(\.text) == ["m0", "m1", "m2", "m3"], "the torn fifth publish was cut, the rest kept")
        #expect(try await broker.partitionStats(topic: "orders").first?.scheduled == 1)
        try await broker.cancel(later[0].id!)
        await broker.close()
    }

    /// `chime --version`, the banner of `serve` and the hello name one version.
    @Test func theVersionIsTheSameEverywhere() throws {
        let chime = builtProduct("chime")
        let printed = try run(chime, ["--version"]).output.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(printed.range(of: #"^chime \d+\.\d+\.\d+$"#, options: .regularExpression) != nil, "\(printed)")
        let dir = TemporaryDirectory()
        let server = try ServeProcess(data: dir.path, port: 0)
        defer { server.stop() }
        #expect(server.banner.contains("\(printed): serving the broker protocol on"))
    }

    @Test func badOptionsAreRefusedWithAMessage() throws {
        #expect(try run(builtProduct("chime"), ["serve", "--durability", "sometimes"]).status != 0)
        #expect(try run(builtProduct("chime"), ["serve", "--partitions", "0"]).status != 0)
        #expect(try run(builtProduct("chime"), ["serve", "--admin-max-connections", "0"]).status != 0)
        #expect(try run(builtProduct("chime"), ["serve", "--admin-idle-timeout-seconds", "0"]).status != 0)
    }
}
