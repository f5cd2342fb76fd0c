import ChimeClient
import ChimeProtocol
import ChimeSchedule
import ChimeTestSupport
import Foundation
import Logging
import Testing

/// Exactly once per occurrence across SIGKILLs: a real `chime serve` fires 1,000 schedules
/// every second and is killed three times at random moments (the next start catches up
/// what fell due while it was down). Read back by their `chime-occurrence` headers, every
/// schedule's occurrences are whole seconds one after another, none twice, none missing.
/// The topic keeps no dedup keys: nothing here rests on dedup.
@Suite struct ScheduleKillTests {
    @Test func everyOccurrenceIsPublishedOnceAcrossKillsOfTheServer() async throws {
        var logger = Logger(label: "schedule-kill")
        logger.logLevel = .critical
        let dir = TemporaryDirectory("chime-schedule-kill")
        let data = dir.path + "/data"
        var server = try ServeProcess(data: data, port: 0)
        let port = server.port
        let client = ChimeClient(ClientOptions(port: port, name: "schedules", connectAttempts: 60), logger: logger)
        try await client.createTopic(
            "ticks",
            settings: WireTopicSettings(partitions: 4, retentionMilliseconds: nil, retentionBytes: nil, maxMessageBytes: 1 << 20, maxAttempts: 5, dedupWindowMilliseconds: 0))
        let count = 1_000
        for n in 0..<count {
            let s = Schedule(
                name: "tick-\(n)", spec: .every(intervalMs: 1_000, anchorMs: 0), target: ScheduleTarget(topic: "ticks", body: Array("\(n)".utf8)),
                options: ScheduleOptions(misfire: .all))
            _ = try await client.schedule(s)
        }
        var random = SystemRandomNumberGenerator()
        for _ in 0..<3 {
            try await Task.sleep(for: .milliseconds(Int.random(in: 1_500...3_000, using: &random)))
            server.kill9()
            server = try await Task.detached { try ServeProcess(data: data, port: port) }.value
        }
        try await Task.sleep(for: .seconds(2))
        _ = server.stop()  // a clean stop: nothing more fires while the topic is read
        server = try await Task.detached { try ServeProcess(data: data, port: port) }.value
        defer { _ = server.stop() }
        // Everything published, read without leasing it (the schedules fire on meanwhile:
        // only the occurrences up to the clean stop are judged).
        var seen: [String: [Int64]] = [:]
        var early = 0
        for p in 0..<4 {
            var from: Int64 = 0
            while true {
                let got = try await client.peek(topic: "ticks", partition: p, from: from, max: 5_000)
                guard let last = got.last else { break }
                for d in got {
                    guard let name = d.headers.first(where: { $0.name == "chime-schedule" }).map({ String(decoding: $0.value, as: UTF8.self) }),
                        let at = d.headers.first(where: { $0.name == "chime-occurrence" }).flatMap({ Int64(String(decoding: $0.value, as: UTF8.self)) })
                    else { continue }
                    if d.dueAt < at { early += 1 }
                    seen[name, default: []].append(at)
                }
                from = last.offset + 1
            }
        }
        await client.close()
        #expect(seen.count == count, "\(seen.count) of \(count) schedules fired")
        #expect(early == 0, "\(early) occurrences fired before their time")
        var duplicated = 0
        var gaps = 0
        var total = 0
        for (_, occurrences) in seen {
            let sorted = occurrences.sorted()
            total += sorted.count
            duplicated += sorted.count - Set(sorted).count
            let distinct = Array(Set(sorted)).sorted()
            for (a, b) in zip(distinct, distinct.dropFirst()) where b - a != 1_000 { gaps += Int((b - a) / 1_000) - 1 }
        }
        print("ScheduleKillTests: \(total) occurrences of \(seen.count) schedules, \(duplicated) twice, \(gaps) missing")
        #expect(duplicated == 0)
        #expect(gaps == 0)
        #expect(total >= count * 6, "about ten seconds of firing: \(total)")
    }
}
