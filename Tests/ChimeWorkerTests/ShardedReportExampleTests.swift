import ChimeTestSupport
import Foundation
import Testing

/// Examples/ShardedReport, the README's sharded flow, as its binary against a real broker:
/// the splitter, 64 shards over the workers and the reducer, once.
@Suite struct ShardedReportExampleTests {
    @Test(.timeLimit(.minutes(3))) func theExampleSplitsShardsAndReducesOnce() throws {
        let dir = TemporaryDirectory("chime-sharded-example")
        let server = try ServeProcess(data: dir.path + "/data", port: 0)
        defer { server.stop() }
        let result = try run(builtProduct("ShardedReport"), ["--now", "--port", "\(server.port)"])
        #expect(result.status == 0, "\(result.output)")
        let lines = result.output.split(separator: "\n").filter { $0.hasPrefix("report ") }
        #expect(lines.count == 1, "the reducer ran once: \(result.output)")
        #expect(lines.first?.hasSuffix(": 64 shards, 0 failed, total 191997") == true, "\(result.output)")
    }
}
