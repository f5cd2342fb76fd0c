import ChimeBroker
import ChimeSchedule
import ChimeServer
import ChimeTestSupport
import Foundation
import Testing

/// The dashboard in a real browser (Debian's chromium, driven by Selenium from PyPI; both
/// installed by `make test-deps`) against a broker seeded with topics, scheduled messages,
/// a group with lag and a dead letter, a schedule and a lock: it logs in through the form,
/// loads every page and checks its content, takes screenshots, and re-drives the dead
/// letter with the page's button — which the group then consumes again. With
/// CHIME_SCREENSHOTS=<dir> the screenshots are kept there (`make screenshots`: docs/).
@Suite struct DashboardBrowserTests {
    @Test func everyPageShowsItsContentAndAReDriveFromThePageIsConsumed() async throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let python = root.appendingPathComponent(".venv-test/bin/python").path
        let script = root.appendingPathComponent("Tests/browser/dashboard.py").path
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/chromium"), FileManager.default.isExecutableFile(atPath: "/usr/bin/chromedriver"),
            FileManager.default.isExecutableFile(atPath: python)
        else {
            Issue.record("chromium, chromedriver or the test venv is missing: run `make test-deps`")
            return
        }
        let f = try await AdminV2Tests.Fixture(tokens: ["dashboard-secret"], metrics: true)
        let b = f.broker
        _ = try b.createTopic("orders", settings: TopicSettings(partitions: 2))
        _ = try b.createTopic("emails", settings: TopicSettings(partitions: 1))
        _ = try await b.publish(topic: "orders", (0..<40).map { OutgoingMessage(key: Array("customer-\($0 % 7)".utf8), body: Array(#"{"order":\#($0)}"#.utf8)) })
        let scheduled = try await b.publish(topic: "emails", [OutgoingMessage(body: Array("reminder".utf8), due: .after(3_600_000))])
        let job = try #require(scheduled.first?.id).description
        // A group with lag, and one message of it dead-lettered with a reason.
        _ = try b.createTopic("payments", settings: TopicSettings(partitions: 1))
        _ = try await b.publish(topic: "payments", [OutgoingMessage(body: Array("charge 42".utf8))])
        let member = try await b.join(group: "billing", member: "worker-1", topics: ["payments", "orders"])
        var bad: Delivery?
        for _ in 0..<100 where bad == nil {
            bad = try await b.fetch(group: "billing", member: member.memberID, max: 100).first { $0.body == Array("charge 42".utf8) }
            if bad == nil { try await Task.sleep(for: .milliseconds(20)) }
        }
        let letter = try #require(bad)
        _ = try await b.term(group: "billing", member: member.memberID, [letter.receipt], reason: "card declined")
        try await b.leave(group: "billing", member: member.memberID)
        _ = try await b.writeSchedule(
            Schedule(name: "nightly-report", spec: .cron(expression: "0 3 * * *", zone: "Europe/Berlin"), target: ScheduleTarget(topic: "orders", body: Array("report".utf8))),
            .create)
        _ = try await b.acquireLock("report-leader", holder: "worker-2", ttlMilliseconds: 600_000, waitMilliseconds: 0)
        _ = try await b.fireDue()  // the wheels catch up to now, as a running server's do

        let kept = ProcessInfo.processInfo.environment["CHIME_SCREENSHOTS"]
        let shots = kept ?? (f.dir.path + "/screenshots")
        if kept != nil {
            // For the README's pictures: a minute of traffic, so that the charts have a line.
            let workload = try await b.join(group: "shipping", member: "screenshots", topics: ["orders"])
            for second in 0..<60 {
                _ = try await b.publish(topic: "orders", (0..<(20 + second % 15 * 4)).map { OutgoingMessage(body: Array("o\($0)".utf8)) })
                _ = try await b.publish(topic: "emails", (0..<10).map { _ in OutgoingMessage(body: Array("r".utf8), due: .after(500)) })
                for _ in 0..<20 {
                    try await Task.sleep(for: .milliseconds(50))
                    f.clock.advance(by: 50)
                    _ = try await b.fireDue()
                }
                let got = try await b.fetch(group: "shipping", member: workload.memberID, max: 200)
                _ = try await b.ack(group: "shipping", member: workload.memberID, got.map(\.receipt))
            }
            try await b.leave(group: "shipping", member: workload.memberID)
        }
        let arguments = [script, "http://127.0.0.1:\(f.port)", "dashboard-secret", shots, "orders", "billing", "nightly-report", "report-leader", job]
        let (status, output) = await runCapturingOutput(python, arguments)
        #expect(status == 0, "the browser's checks:\n\(output.suffix(4_000))")
        for page in ["login", "overview", "topics", "topic", "groups", "group", "dead-letters", "schedules", "jobs", "locks"] {
            let size = (try? FileManager.default.attributesOfItem(atPath: "\(shots)/\(page).png")[.size] as? Int) ?? 0
            #expect(size > 5_000, "screenshot of \(page): \(size) bytes")
        }

        // The re-driven letter comes back to the group, and is consumed.
        let again = try await b.join(group: "billing", member: "worker-1", topics: ["payments", "orders"])
        var redelivered: Delivery?
        for _ in 0..<200 where redelivered == nil {
            _ = try await b.fireDue()  // a re-drive goes through the group's retry path, the wheel
            let got = try await b.fetch(group: "billing", member: again.memberID, max: 100)
            redelivered = got.first { $0.body == Array("charge 42".utf8) }
            _ = try await b.ack(group: "billing", member: again.memberID, got.map(\.receipt))
            if redelivered == nil { try await Task.sleep(for: .milliseconds(20)) }
        }
        #expect(redelivered != nil, "the re-driven dead letter was delivered to its group again")
        let stats = try await b.groupStats("billing")
        #expect(stats.partitions.first { $0.topic == "payments" }?.lag == 0, "consumed: \(stats.partitions)")
        let letters = try await f.call("GET", "/v2/groups/billing/dead-letters", token: "dashboard-secret")
        #expect((letters.json["deadLetters"] as? [Any])?.isEmpty == true, "\(letters.body)")
        await f.shutdown()
    }
}
