import ChimeBroker
import ChimeSchedule
import ChimeServer
import ChimeTestSupport
import Foundation
import Testing

/// `/metrics` after a workload that touches every metric, checked by Prometheus's own
/// linter (`promtool check metrics`, Debian's prometheus package, installed by `make
/// test-deps`): no metric without help, no bad name or type. And a deleted topic's series
/// leave the page.
@Suite struct MetricsLintTests {
    @Test func promtoolFindsNothingToSayAndADeletedTopicsSeriesGo() async throws {
        guard let promtool = ["/usr/bin/promtool", "/usr/local/bin/promtool"].first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            Issue.record("promtool is not installed: run `make test-deps` (Debian's prometheus package)")
            return
        }
        let f = try await AdminV2Tests.Fixture(tokens: ["root"], metrics: true)
        let topic = "lint-\(UInt32.random(in: 0...UInt32.max))"
        _ = try f.broker.createTopic(topic, settings: TopicSettings(partitions: 2))
        // Publish now and due at once (fired), consume and ack, a lock, a schedule.
        _ = try await f.broker.publish(topic: topic, (0..<10).map { OutgoingMessage(body: Array("m\($0)".utf8)) })
        _ = try await f.broker.publish(topic: topic, [OutgoingMessage(body: Array("later".utf8), due: .after(0))])
        _ = try await f.broker.fireDue()
        let member = try await f.broker.join(group: topic + "-g", member: "m", topics: [topic])
        var acked = 0
        for _ in 0..<100 where acked < 11 {
            let got = try await f.broker.fetch(group: topic + "-g", member: member.memberID, max: 100)
            _ = try await f.broker.ack(group: topic + "-g", member: member.memberID, got.map(\.receipt))
            acked += got.count
            if got.isEmpty { try await Task.sleep(for: .milliseconds(20)) }
        }
        _ = try await f.broker.acquireLock(topic, holder: "h", ttlMilliseconds: 60_000, waitMilliseconds: 0)
        _ = try await f.broker.writeSchedule(
            Schedule(name: topic, spec: .every(intervalMs: 1_000, anchorMs: 0), target: ScheduleTarget(topic: topic, body: [])), .create)

        let page = try await f.call("GET", "/metrics", token: "root")
        #expect(page.status == 200)
        for name in ["chime_published_messages_total", "chime_acked_messages_total", "chime_fired_messages_total", "chime_fsync_seconds"] {
            #expect(page.body.contains("# HELP \(name) "), "\(name) has help")
        }
        #expect(page.body.contains("topic=\"\(topic)\""))
        let file = f.dir.path + "/metrics.txt"
        try page.body.write(toFile: file, atomically: true, encoding: .utf8)
        let (status, output) = await runCapturingOutput("/bin/sh", ["-c", "\"$0\" check metrics < \"$1\" 2>&1", promtool, file])
        #expect(status == 0 && output.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty, "promtool check metrics:\n\(output)")

        // The topic goes (its group's positions with it): so do its series.
        try await f.broker.leave(group: topic + "-g", member: member.memberID)
        try await f.broker.controlSchedule(topic, .delete)
        try await f.broker.deleteTopic(topic)
        let after = try await f.call("GET", "/metrics", token: "root")
        let left = after.body.split(separator: "\n").filter { $0.contains("\"\(topic)\"") }
        #expect(left.isEmpty, "series of the deleted topic remain:\n\(left.joined(separator: "\n"))")
        await f.shutdown()
    }
}
