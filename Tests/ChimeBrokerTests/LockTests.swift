import ChimeStore
import ChimeTestSupport
import Foundation
import Testing

@testable import ChimeBroker

/// Locks with fencing tokens: the table as a state machine under a seeded simulation, and
/// the broker's lock partitions on an injected clock (waiting, expiry, restarts).
@Suite struct LockTests {
    // MARK: - The table, simulated

    /// Holders that pause past their TTL (a GC pause, a partition) come back and write as
    /// if they still held the lock. A store that checks tokens refuses every such write:
    /// the writes it accepts come from one grant at a time, in token order, and every
    /// grant's writes were made while it was live.
    @Test(arguments: [1, 2, 3, 4, 5, 6, 7, 8])
    func staleHoldersWritesAreRefusedByToken(seed: UInt64) {
        var random = SplitMix64(seed: seed)
        var table = LockTable()
        var now: Int64 = 1_000_000
        struct Holder {
            var token: Int64?
            var pausedUntil: Int64 = 0
        }
        var holders = Array(repeating: Holder(), count: 5)
        var accepted: [Int64] = []  // tokens of the writes the store took, in order
        var refused = 0
        var grants: [Int64: (from: Int64, until: Int64)] = [:]
        for _ in 0..<20_000 {
            now += Int64(random.next() % 40)
            let h = Int(random.next() % 5)
            guard holders[h].pausedUntil <= now else { continue }
            switch random.next() % 4 {
            case 0:
                if case .success(let r) = table.grant("job", holder: "h\(h)", ttl: 100, now: now) {
                    table.apply(r)
                    guard case .grant(_, _, let token, _) = r else { Issue.record("not a grant"); return }
                    holders[h].token = token
                    grants[token] = (now, now + 100)
                }
            case 1:
                // A pause longer than the TTL now and then.
                if random.next() % 10 == 0 { holders[h].pausedUntil = now + 50 + Int64(random.next() % 300) }
            case 2:
                if let t = holders[h].token, case .success(let r) = table.renew("job", token: t, ttl: 100, now: now) {
                    table.apply(r)
                    grants[t]!.until = now + 100
                }
            default:
                // A write fenced by the token the holder believes it has.
                guard let t = holders[h].token else { continue }
                if table.isCurrent("job", token: t, now: now) {
                    accepted.append(t)
                    #expect(now < grants[t]!.until, "a write accepted after its grant expired")
                } else {
                    refused += 1
                }
            }
        }
        #expect(accepted == accepted.sorted(), "accepted writes go back to an older grant")
        #expect(refused > 0, "the simulation never had a stale holder write (seed \(seed))")
        #expect(Set(accepted).count > 3, "too few grants wrote to judge (seed \(seed))")
    }

    @Test func tokensIncreaseAcrossNamesAndSurviveAReplayOfTheRecords() {
        var table = LockTable()
        var records: [LockTable.LockRecord] = []
        var tokens: [Int64] = []
        for n in 0..<50 {
            guard case .success(let r) = table.grant("n\(n % 7)", holder: "h", ttl: 10, now: Int64(n) * 20) else { Issue.record("refused"); return }
            table.apply(r)
            records.append(r)
            if case .grant(_, _, let t, _) = r { tokens.append(t) }
            if n % 3 == 0, case .success(let rel) = table.release("n\(n % 7)", token: tokens.last!, now: Int64(n) * 20) {
                table.apply(rel)
                records.append(rel)
            }
        }
        #expect(tokens == Array(1...50))
        var replayed = LockTable()
        for r in records { replayed.apply(r) }
        #expect(replayed.locks == table.locks && replayed.lastToken == 50)
        // A snapshot keeps the floor: the next grant is 51 even with no lock left.
        var fromSnapshot = LockTable()
        for r in LockTable().snapshot + [.floor(token: table.lastToken)] { fromSnapshot.apply(r) }
        guard case .success(.grant(_, _, let next, _)) = fromSnapshot.grant("other", holder: "h", ttl: 10, now: 0) else { Issue.record("refused"); return }
        #expect(next == 51)
    }

    @Test func renewAndReleaseNeedTheLiveGrantsToken() {
        var table = LockTable()
        guard case .success(let g) = table.grant("a", holder: "x", ttl: 100, now: 0) else { Issue.record("refused"); return }
        table.apply(g)
        #expect(table.renew("a", token: 2, ttl: 100, now: 10) == .failure(.notHeld(current: table.locks["a"])))
        guard case .success(let r) = table.renew("a", token: 1, ttl: 100, now: 50) else { Issue.record("renew refused"); return }
        table.apply(r)
        #expect(table.holder(of: "a", now: 149)?.token == 1)
        #expect(table.holder(of: "a", now: 150) == nil, "expired at its renewed expiry")
        #expect(table.release("a", token: 1, now: 150) == .failure(.notHeld(current: nil)))
        #expect(!table.isCurrent("a", token: 1, now: 150))
    }

    // MARK: - The broker's lock partitions

    @Test func aWaiterGetsTheLockAtTheHoldersExpiryWithAHigherToken() async throws {
        let s = try await Scenario.make()
        defer { Task { [broker = s.broker] in await broker.close() } }
        let first = try await s.broker.acquireLock("report", holder: "a", ttlMilliseconds: 1_000, waitMilliseconds: 0)
        await expectBrokerError(.lockHeld) { _ = try await s.broker.acquireLock("report", holder: "b", ttlMilliseconds: 1_000, waitMilliseconds: 0) }
        let broker = s.broker
        let waiting = Task { try await broker.acquireLock("report", holder: "b", ttlMilliseconds: 1_000, waitMilliseconds: 5_000) }
        try await eventually { try await s.broker.lock("report").waiters == 1 }
        s.clock.advance(by: 999)
        try await Task.sleep(for: .milliseconds(20))
        #expect(try await s.broker.lock("report").holder == "a")
        s.clock.advance(by: 1)
        let second = try await waiting.value
        #expect(second.token > first.token)
        #expect(second.expiresAt == s.now + 1_000)
        await expectBrokerError(.lockLost) { _ = try await s.broker.renewLock("report", token: first.token, ttlMilliseconds: 1_000) }
        await expectBrokerError(.staleToken) { try await s.broker.checkFence(lock: "report", token: first.token) }
        try await s.broker.checkFence(lock: "report", token: second.token)
    }

    @Test func waitersAreServedFirstComeFirstServedOnRelease() async throws {
        let s = try await Scenario.make()
        defer { Task { [broker = s.broker] in await broker.close() } }
        let held = try await s.broker.acquireLock("q", holder: "h", ttlMilliseconds: 60_000, waitMilliseconds: 0)
        var waiters: [Task<LockGrant, any Error>] = []
        for n in 0..<5 {
            let broker = s.broker
            waiters.append(Task { try await broker.acquireLock("q", holder: "w\(n)", ttlMilliseconds: 60_000, waitMilliseconds: 60_000) })
            try await eventually { try await s.broker.lock("q").waiters == n + 1 }
        }
        var order: [String] = []
        var previous = held
        for n in 0..<5 {
            try await s.broker.releaseLock("q", token: previous.token)
            previous = try await waiters[n].value
            order.append(try await s.broker.lock("q").holder ?? "-")
        }
        #expect(order == ["w0", "w1", "w2", "w3", "w4"])
    }

    @Test func aWaitThatRunsOutIsLockHeldAndLeavesTheQueue() async throws {
        let s = try await Scenario.make()
        defer { Task { [broker = s.broker] in await broker.close() } }
        _ = try await s.broker.acquireLock("slow", holder: "h", ttlMilliseconds: 60_000, waitMilliseconds: 0)
        let broker = s.broker
        let waiting = Task { try await broker.acquireLock("slow", holder: "w", ttlMilliseconds: 1_000, waitMilliseconds: 2_000) }
        try await eventually { try await s.broker.lock("slow").waiters == 1 }
        s.clock.advance(by: 2_000)
        await expectBrokerError(.lockHeld) { _ = try await waiting.value }
        #expect(try await s.broker.lock("slow").waiters == 0)
    }

    @Test func tokensKeepIncreasingAcrossRestartsAndCompaction() async throws {
        let s = try await Scenario.make()
        var last: [String: Int64] = [:]  // tokens increase per name
        for round in 0..<3 {
            // Enough grants and releases to compact the journals (over 10,000 records).
            for n in 0..<12_000 {
                let name = "name-\(n % 3)"
                let g = try await s.broker.acquireLock(name, holder: "r\(round)", ttlMilliseconds: 10_000, waitMilliseconds: 0)
                if g.token <= last[name, default: 0] { Issue.record("\(name): token \(g.token) after \(last[name]!)") }
                last[name] = g.token
                try await s.broker.releaseLock(name, token: g.token)
            }
            let held = try await s.broker.acquireLock("kept", holder: "r\(round)", ttlMilliseconds: 600_000, waitMilliseconds: 0)
            #expect(held.token > last["kept", default: 0])
            last["kept"] = held.token
            try await s.restart()
            let info = try await s.broker.lock("kept")
            #expect(info.holder == "r\(round)" && info.token == held.token, "a grant is still held after a restart")
            try await s.broker.releaseLock("kept", token: held.token)
        }
        // 108,000 records went in; compaction keeps a few per partition.
        let segments = try FileManager.default.subpathsOfDirectory(atPath: s.dir.path + "/locks").filter { $0.hasSuffix(".log") }
        var bytes = 0
        for f in segments { bytes += (try FileManager.default.attributesOfItem(atPath: s.dir.path + "/locks/" + f)[.size] as? Int) ?? 0 }
        #expect(bytes < 1 << 20, "the journals are compacted, not kept whole: \(bytes) bytes")
        await s.broker.close()
    }

    @Test func hostileLockRequestsGetTypedErrors() async throws {
        let s = try await Scenario.make()
        defer { Task { [broker = s.broker] in await broker.close() } }
        for (name, ttl, wait) in [("", Int64(1_000), Int64(0)), (String(repeating: "x", count: 1_025), 1_000, 0), ("a", 0, 0), ("a", .max, 0), ("a", .min, 0), ("a", 1_000, -1), ("a", 1_000, .max)] {
            await expectBrokerError(.invalidArgument) { _ = try await s.broker.acquireLock(name, holder: "h", ttlMilliseconds: ttl, waitMilliseconds: wait) }
        }
        await expectBrokerError(.invalidArgument) { _ = try await s.broker.acquireLock("a", holder: String(repeating: "h", count: 257), ttlMilliseconds: 1, waitMilliseconds: 0) }
        await expectBrokerError(.lockLost) { _ = try await s.broker.renewLock("a", token: .max, ttlMilliseconds: 1_000) }
        await expectBrokerError(.lockLost) { try await s.broker.releaseLock("a", token: .min) }
        await expectBrokerError(.staleToken) { try await s.broker.checkFence(lock: "a", token: 0) }
    }
}

/// Waits (on real time, briefly) until `condition` holds: for state another task changes.
private func eventually(_ condition: () async throws -> Bool) async throws {
    let end = ContinuousClock.now + .seconds(30)  // generous: the whole suite shares two cores
    while ContinuousClock.now < end {
        if try await condition() { return }
        try await Task.sleep(for: .milliseconds(5))
    }
    if try await condition() { return }
    Issue.record("the condition never held")
}
