import ChimeBroker
import ChimeSchedule
import ChimeServer
import ChimeTestSupport
import Foundation
import Testing

/// The served OpenAPI document against the server's real answers, checked by someone
/// else's tool: schemathesis (PyPI, installed by `make test-deps` into .venv-test) sends
/// every operation the document's examples and generated input, and fails on any answer
/// the document does not describe — a status it does not list, a body outside its schema,
/// a server error. A change of either the routes or the document alone fails this test.
@Suite struct OpenAPIConformanceTests {
    @Test func everyAnswerOfTheAdminAPIMatchesItsServedDocument() async throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let tool = root.appendingPathComponent(".venv-test/bin/schemathesis").path
        guard FileManager.default.isExecutableFile(atPath: tool) else {
            Issue.record("schemathesis is not installed: run `make test-deps` (it installs it into .venv-test)")
            return
        }
        let f = try await AdminV2Tests.Fixture(tokens: ["root"])
        // What the document's examples name: topic orders (its first message 1-0-r0),
        // group billing with a dead letter, schedule nightly, lock report.
        _ = try f.broker.createTopic("orders")
        _ = try await f.broker.publish(topic: "orders", [OutgoingMessage(body: Array("hello".utf8))], partition: 0)
        let member = try await f.broker.join(group: "billing", member: "m", topics: ["orders"])
        var leased: [Delivery] = []
        for _ in 0..<50 where leased.isEmpty {
            leased = try await f.broker.fetch(group: "billing", member: member.memberID, max: 10)
            if leased.isEmpty { try await Task.sleep(for: .milliseconds(20)) }
        }
        _ = try await f.broker.term(group: "billing", member: member.memberID, leased.map(\.receipt), reason: "declined")
        _ = try await f.broker.writeSchedule(
            Schedule(name: "nightly", spec: .every(intervalMs: 3_600_000, anchorMs: 0), target: ScheduleTarget(topic: "orders", body: Array("run".utf8))), .create)
        _ = try await f.broker.acquireLock("report", holder: "worker-1", ttlMilliseconds: 3_600_000, waitMilliseconds: 0)

        let (status, output) = await runCapturingOutput(
            tool,
            [
                "run", "http://127.0.0.1:\(f.port)/v2/openapi.json", "--header", "Authorization: Bearer root",
                "--checks", "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
                "--phases", "examples,coverage,fuzzing", "--max-examples", "25", "--workers", "1", "--seed", "7", "--no-color",
                "--suppress-health-check", "all",
            ], directory: f.dir.path)
        let summary = output.split(separator: "\n").filter { $0.contains("generated") || $0.contains("passed") || $0.contains("failed") }.joined(separator: "\n")
        print("OpenAPIConformanceTests: \(summary)")
        #expect(status == 0, "schemathesis found answers the document does not describe:\n\(output.suffix(6_000))")
        #expect(output.contains("passed"), "\(output.suffix(2_000))")
        await f.shutdown()
    }
}
