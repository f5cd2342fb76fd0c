import ChimeClient
import ChimeProtocol
import ChimeTestSupport
import Foundation
import Glibc
import Logging
import Synchronization
import Testing

/// Locks over real sockets with real processes: fencing tokens across SIGKILLs of the
/// broker, a SIGKILLed holder's lock passing on at its expiry, and two clients contending
/// for 1,000 names with the skip-locked pattern.
@Suite struct LockKillTests {
    static func client(_ port: Int, _ name: String, connectAttempts: Int = 3) -> ChimeClient {
        var logger = Logger(label: "lock-kill")
        logger.logLevel = .critical
        return ChimeClient(ClientOptions(port: port, name: name, connectAttempts: connectAttempts), logger: logger)
    }

    @Test(.timeLimit(.minutes(3))) func tokensIncreaseStrictlyPerNameAcrossKillsOfTheBroker() async throws {
        let dir = TemporaryDirectory("chime-lock-kill")
        let data = dir.path + "/data"
        var server = try ServeProcess(data: data, port: 0)
        let port = server.port
        let keeper = Self.client(port, "keeper", connectAttempts: 50)
        let kept = try await keeper.acquire("kept", ttl: .seconds(600))
        var tokens: [String: [Int64]] = [:]
        for round in 0..<3 {
            // A client of its own per round: the kill cuts it off, and it does not wait long
            // to reconnect. Grants answered before the kill count; the rest are not judged.
            let contender = Self.client(port, "contender-\(round)")
            let got = Mutex<[(String, Int64)]>([])
            let work = Task {
                var n = 0
                while !Task.isCancelled {
                    let name = "name-\(n % 20)"
                    n += 1
                    guard let lease = try? await contender.tryAcquire(name, ttl: .seconds(5)) else { continue }
                    got.withLock { $0.append((name, lease.token)) }
                    _ = try? await contender.release(lease)
                }
            }
            // Killed in the middle of the traffic, once some grants went through (however
            // slow the machine), a different number each round.
            while got.withLock({ $0.count }) < 30 + 20 * round { try await Task.sleep(for: .milliseconds(10)) }
            server.kill9()
            work.cancel()
            await work.value
            for (name, token) in got.withLock({ $0 }) { tokens[name, default: []].append(token) }
            await contender.close()
            server = try await Task.detached { try ServeProcess(data: data, port: port) }.value
        }
        defer { server.stop() }
        for (name, list) in tokens {
            #expect(list == list.sorted() && Set(list).count == list.count, "\(name): tokens \(list.prefix(20))… not strictly increasing")
        }
        #expect(tokens.values.reduce(0) { $0 + $1.count } > 60, "too few grants between the kills to judge")
        // A grant made before the kills still holds, under its token.
        let info = try await keeper.inspectLock("kept")
        #expect(info.token == kept.token && info.holder == "keeper")
        _ = try await keeper.renew(kept, ttl: .seconds(600))
        await keeper.close()
    }

    @Test(.timeLimit(.minutes(2))) func aKilledHoldersLockPassesToTheNextHolderAfterItsExpiry() async throws {
        let dir = TemporaryDirectory("chime-lock-holder")
        let server = try ServeProcess(data: dir.path + "/data", port: 0)
        defer { server.stop() }
        // A real holder: `chime locks run` renewing every second while its command runs.
        let tokenFile = dir.path + "/token"
        let holder = Process()
        holder.executableURL = URL(fileURLWithPath: builtProduct("chime"))
        holder.arguments = [
            "locks", "run", "nightly", "--port", "\(server.port)", "--ttl", "3s", "--", "sh", "-c", "echo $CHIME_LOCK_TOKEN > \(tokenFile); exec sleep 29.75",
        ]
        holder.standardOutput = FileHandle.nullDevice
        holder.standardError = FileHandle.nullDevice
        try holder.run()
        defer { if holder.isRunning { kill(holder.processIdentifier, SIGKILL) } }
        let client = Self.client(server.port, "next")
        var token: Int64 = -1
        for _ in 0..<1_000 where token < 0 {
            token = (try? String(contentsOfFile: tokenFile, encoding: .utf8)).flatMap { Int64($0.trimmingCharacters(in: .whitespacesAndNewlines)) } ?? -1
            if token < 0 { try await Task.sleep(for: .milliseconds(20)) }
        }
        #expect(token > 0, "the holder's command got its token")
        // Held past its first TTL while the holder lives: it renews.
        try await Task.sleep(for: .seconds(4))
        #expect(try await client.tryAcquire("nightly", ttl: .seconds(10)) == nil, "still held by the live holder")
        #expect(try await client.inspectLock("nightly").token == token)
        kill(holder.processIdentifier, SIGKILL)
        // Its command's `sleep` lives on as an orphan, and Foundation waits for it too.
        _ = try? Process.run(URL(fileURLWithPath: "/usr/bin/pkill"), arguments: ["-f", "^sleep 29.75$"]).waitUntilExit()
        holder.waitUntilExit()
        let next = try await client.acquire("nightly", ttl: .seconds(10), wait: .seconds(60))
        #expect(next.token > token)
        try await client.release(next)
        await client.close()
    }

    @Test(.timeLimit(.minutes(5))) func twoClientsContendingForAThousandNamesEachGetADisjointShare() async throws {
        let dir = TemporaryDirectory("chime-lock-contend")
        let server = try ServeProcess(data: dir.path + "/data", port: 0)
        defer { server.stop() }
        let names = (0..<1_000).map { "item-\($0)" }
        let shares = try await withThrowingTaskGroup(of: [String: Int64].self) { tasks in
            for c in 0..<2 {
                tasks.addTask {
                    let client = Self.client(server.port, "worker-\(c)")
                    var mine: [String: Int64] = [:]
                    // The skip-locked pattern: each takes what it can, in its own order. A TTL
                    // no run reaches: a loaded CI machine took over 60 s for the 2,000 tries,
                    // and the first grants expired and were taken again, rightly.
                    for name in c == 0 ? names : names.reversed() {
                        if let lease = try await client.tryAcquire(name, ttl: .seconds(3_600)) { mine[name] = lease.token }
                    }
                    await client.close()
                    return mine
                }
            }
            var all: [[String: Int64]] = []
            for try await share in tasks { all.append(share) }
            return all
        }
        let both = Set(shares[0].keys).intersection(shares[1].keys)
        #expect(both.isEmpty, "held by both: \(both.sorted().prefix(5))")
        #expect(shares[0].count + shares[1].count == 1_000)
        #expect(!shares[0].isEmpty && !shares[1].isEmpty, "one client took every name: no contention to judge")
    }
}
