import ChimeClient
import ChimeProtocol
import ChimeTestSupport
import Foundation
import Glibc
import Logging
import Testing

/// A flow of 10,000 children run by `chime work` processes, one of them SIGKILLed and the
/// broker SIGKILLed and restarted during the run: the continuation is published exactly
/// once, with all 10,000 outcomes and each child's result.
@Suite struct FlowKillTests {
    @Test(.timeLimit(.minutes(6))) func tenThousandChildrenThroughKillsOfAWorkerAndTheBrokerEndInOneContinuation() async throws {
        let total = 10_000
        let dir = TemporaryDirectory("chime-flow-kill")
        let data = dir.path + "/data"
        var server = try ServeProcess(data: data, port: 0)
        let port = server.port
        defer { server.stop() }
        var logger = Logger(label: "flow-kill")
        logger.logLevel = .critical
        let client = ChimeClient(ClientOptions(port: port, name: "flow-kill", connectAttempts: 100), logger: logger)
        try await client.createTopic("split", settings: topicSettings(partitions: 1))
        try await client.createTopic("shards", settings: topicSettings(partitions: 4))
        try await client.createTopic("reduce", settings: topicSettings(partitions: 1))
        // Short leases: what a killed worker held comes back soon. Not shorter: on a loaded
        // machine a heartbeat 1.5 s late dropped this test's own consumer before its spawn.
        try await client.createGroup("g", settings: WireGroupSettings(mode: .shared, leaseMilliseconds: 5_000, sessionTimeoutMilliseconds: 5_000))

        // The split: this test's own consumer takes the parent job and spawns the children.
        _ = try await client.publish(Array("nightly report".utf8), to: "split")
        var parents = client.consume(group: "g", topics: ["split"]).makeAsyncIterator()
        let parent = try #require(try await parents.next())
        let flow = try await parent.spawn(
            (0..<total).map { OutgoingRecord(body: Array("shard \($0)".utf8)) }, on: "shards",
            then: OutgoingRecord(body: Array("reduce".utf8)), on: "reduce")
        await parents.leave()

        // Each child writes its result (three times its shard) and a line per run.
        let scratch = TemporaryDirectory("chime-flow-kill-scripts")
        let script = scratch.file("shard.sh")
        let runs = scratch.file("runs")
        try """
            cat > /dev/null
            printf '%s' $((CHIME_FLOW_INDEX * 3)) > "$CHIME_RESULT_FILE"
            printf '%s %s\\n' "$1" "$CHIME_FLOW_INDEX" >> "$2"
            """.write(toFile: script, atomically: true, encoding: .utf8)
        _ = FileManager.default.createFile(atPath: runs, contents: nil)
        func worker(_ name: String) throws -> WorkProcess {
            try WorkProcess(
                port: port, topic: "shards", group: "g",
                options: ["--concurrency", "8", "--timeout", "30s", "--max-attempts", "20", "--backoff", "100ms", "--grace", "5s", "--name", name],
                command: ["/bin/sh", script, name, runs], log: scratch.file("\(name).log"))
        }
        var workers = [try worker("A"), try worker("B")]
        defer { for w in workers { w.ensureStopped() } }
        func ran() -> Int { ((try? String(contentsOfFile: runs, encoding: .utf8)) ?? "").reduce(0) { $1 == "\n" ? $0 + 1 : $0 } }

        #expect(await eventually(within: .seconds(120)) { ran() >= total / 4 }, "a quarter ran; A's log:\n\(workers[0].log.suffix(1_000))")
        workers[0].kill9()
        workers.append(try worker("C"))
        #expect(await eventually(within: .seconds(120)) { ran() >= total / 2 })
        server.kill9()
        server = try await Task.detached { try ServeProcess(data: data, port: port) }.value

        // The continuation: once, with every outcome.
        var reducers = client.consume(group: "g", topics: ["reduce"]).makeAsyncIterator()
        let done = await eventually(within: .seconds(240)) { (try await client.flow(flow).state) == 1 }
        #expect(done, "the flow completed; B's log:\n\(workers[1].log.suffix(1_500))")
        let continuation = try #require(try await reducers.next())
        #expect(continuation.delivery.headers.first { $0.name == "chime-flow-done" }?.value == Array(flow.utf8))
        try await continuation.ack()
        let outcomes = try await client.flowOutcomes(flow)
        #expect(outcomes.count == total)
        #expect(Set(outcomes.map(\.index)) == Set((0..<total).map(UInt32.init)), "each child counted once")
        #expect(outcomes.allSatisfy { $0.succeeded && String(decoding: $0.detail, as: UTF8.self) == "\($0.index * 3)" }, "each with its result")
        let status = try await client.flow(flow)
        #expect(status.succeeded == UInt32(total) && status.failed == 0)

        // Nothing more comes: not a second continuation (a short wait for one that would).
        let more = try await client.peek(topic: "reduce", partition: 0)
        #expect(more.count == 1, "one continuation in the topic: \(more.count)")
        await reducers.leave()
        for w in workers.dropFirst() { _ = w.terminate() }
        await client.close()
    }
}
