import ChimeStore
import ChimeTestSupport
import Foundation
import Glibc
import Testing

/// Real process, real clock, real fsync, real SIGKILL, for the whole broker: a child
/// (`CrashAgent broker`) publishes immediate and scheduled messages and consumes them in a
/// group, acking most and nacking some through the wheel, and prints every publish, ack
/// and nack once it returned. It is killed at random moments and restarted on the same
/// directory, then a last run drains. Checked over every line of every run:
///   - every acknowledged publish (`P`) is acked (`A`) in some run, or was in an ack call
///     cut short by a kill (`a` without `A`: the journal write may have landed, and then
///     the group rightly never delivers it again);
///   - a body acked is never delivered (`D`) again, in that run or a later one (unless a
///     nack of it was cut short by the kill: that may leave both the original and the
///     retry copy, which is at-least-once for a message whose nack never returned);
///   - nothing is delivered twice in one run while leased (leases outlast a run);
///   - no scheduled message is delivered before its due time, and no retry before the delay
///     of its acknowledged nack, both on the broker's clock (the agent's readings are of the
///     broker's clock: a fresh reading of the wall clock may differ from it by a millisecond
///     of drift between the wall and the steady clock, which the broker counts delays on);
///   - no ack or nack is refused, no call fails.
@Suite(.serialized) struct BrokerKillTests {
    struct Line {
        var run: Int
        var index: Int
        var fields: [Substring]
    }

    /// Lines of one run; a last line cut by the kill (no newline) is dropped.
    private func lines(_ text: String, run: Int) -> [Line] {
        var parts = text.split(separator: "\n", omittingEmptySubsequences: false)
        parts.removeLast()  // after the last newline: empty, or a torn line
        return parts.enumerated().map { Line(run: run, index: $0.offset, fields: $0.element.split(separator: " ")) }
    }

    /// Bodies of ack calls a kill cut short (`a` and no `A` or `E` after it in that run).
    private static func acksCutShort(_ lines: [Line]) -> Set<Substring> {
        var out = Set<Substring>()
        var pending = Set<Substring>()
        var run = -1
        for l in lines where l.fields.count >= 2 {
            if l.run != run {
                out.formUnion(pending)
                pending = []
                run = l.run
            }
            switch l.fields[0] {
            case "a": pending.insert(l.fields[1])
            case "A", "E": pending.remove(l.fields[1])
            default: break
            }
        }
        return out.union(pending)
    }

    @Test func nothingAcknowledgedIsLostAcrossSIGKILLs() async throws {
        let dir = TemporaryDirectory("chime-broker-kill")
        let data = dir.path + "/data"
        var rng = SplitMix64(seed: 2024)
        var all: [Line] = []
        let kills = 14
        var killsWithAcks = 0
        for round in 0..<kills {
            let after = Duration.milliseconds(Int64(100 + rng.next() % 501))
            let (text, status, signalled) = try await runCrashAgent(["broker", data, String(round + 1)], killAfter: after)
            #expect(signalled, "run \(round): the agent must die by the signal, not exit \(status): \(text.suffix(300))")
            let run = lines(text, run: round)
            if run.contains(where: { $0.fields.first == "A" }) { killsWithAcks += 1 }
            all += run
        }

        // Drain: everything published, neither acked nor in an ack call cut short.
        var acked = Set<Substring>()
        var published: [Substring] = []
        for l in all where l.fields.count >= 2 {
            if l.fields[0] == "A" { acked.insert(l.fields[1]) }
            if l.fields[0] == "P" { published.append(l.fields[1]) }
        }
        let ackCutShort = Self.acksCutShort(all)
        let expected = published.filter { !acked.contains($0) && !ackCutShort.contains($0) }
        try expected.joined(separator: "\n").write(toFile: dir.file("expected"), atomically: true, encoding: .utf8)
        let drain = try await runCrashAgent(["broker", data, "0", "drain", dir.file("expected")], killAfter: nil)
        #expect(drain.status == 0 && drain.text.contains("\ndrained\n"), "drain: exit \(drain.status), \(drain.text.suffix(300))")
        if let timeout = drain.text.split(separator: "\n").first(where: { $0.hasPrefix("timeout") }) {
            // The history of every message the drain did not get, to diagnose from the test log.
            let missing = Set(timeout.split(separator: " ").dropFirst(2))
            let history = all.filter { $0.fields.count >= 2 && missing.contains($0.fields[1]) }
                .map { "run \($0.run): \($0.fields.joined(separator: " "))" }
            Issue.record("not drained: \(missing.sorted())\n\(history.joined(separator: "\n"))")
        }
        all += lines(drain.text, run: kills)

        // Replay every line in order.
        var ackedAt: [Substring: Line] = [:]
        var nackStarted: [Substring: Int64] = [:]  // this run's nack in progress: notBefore
        var nackedNotBefore: [Substring: Int64] = [:]  // last acknowledged nack
        var inDoubt = Set<Substring>()  // a nack cut short by a kill
        var deliveredAfterAck: [(body: Substring, acked: Line, again: Line)] = []
        var leased: [Substring: Line] = [:]  // delivered in this run, neither acked nor nacked yet
        var leasedTwice: [(body: Substring, first: Line, again: Line)] = []
        var early: [String] = []
        var retryEarly: [String] = []
        var failures: [String] = []
        var counts: [Substring: Int] = [:]
        var retried = 0
        var cancelled = Set<Substring>()
        var deliveredAfterCancel: [String] = []
        var currentRun = -1
        for l in all {
            if l.run != currentRun {
                inDoubt.formUnion(nackStarted.keys)
                nackStarted = [:]
                leased = [:]
                currentRun = l.run
            }
            guard let tag = l.fields.first else { continue }
            counts[tag, default: 0] += 1
            switch tag {
            case "D":
                // The body names a due time when the message was scheduled; the check is on the
                // broker's clock, against the due time the delivery carries.
                guard l.fields.count == 5, let attempt = Int(l.fields[2]), let at = Int64(l.fields[3]), let brokerDue = Int64(l.fields[4]),
                    let bodyDue = l.fields[1].split(separator: ".").last.flatMap({ Int64($0) })
                else {
                    failures.append("run \(l.run): bad line \(l.fields.joined(separator: " "))")
                    continue
                }
                let body = l.fields[1]
                if attempt > 1 { retried += 1 }
                if cancelled.contains(body) { deliveredAfterCancel.append("\(body) in run \(l.run)") }
                if bodyDue > 0 && at < brokerDue { early.append("\(body) delivered at \(at), \(brokerDue - at) ms early (run \(l.run))") }
                if let first = ackedAt[body] { deliveredAfterAck.append((body, first, l)) }
                if let first = leased[body] { leasedTwice.append((body, first, l)) }
                leased[body] = l
                if let notBefore = nackedNotBefore[body], at < notBefore {
                    retryEarly.append("\(body) delivered at \(at), \(notBefore - at) ms before its nack delay ran out (run \(l.run))")
                }
            case "A":
                if ackedAt[l.fields[1]] == nil { ackedAt[l.fields[1]] = l }
                leased[l.fields[1]] = nil
            case "C":
                cancelled.insert(l.fields[1])
            case "n":
                nackStarted[l.fields[1]] = Int64(l.fields[2])!
            case "N":
                nackedNotBefore[l.fields[1]] = nackStarted.removeValue(forKey: l.fields[1])!
                leased[l.fields[1]] = nil
            case "E", "X", "timeout":
                failures.append("run \(l.run): \(l.fields.joined(separator: " "))")
            default:
                break
            }
        }
        inDoubt.formUnion(nackStarted.keys)

        print(
            "BrokerKillTests: \(kills) kills (\(killsWithAcks) with acks), \(published.count) published, \(ackedAt.count) acked, "
                + "\(counts["D"] ?? 0) deliveries (\(retried) retries), \(counts["N"] ?? 0) nacks, \(inDoubt.count) nacks cut short, "
                + "\(ackCutShort.count) in acks cut short, \(expected.count) left for the drain")
        #expect(killsWithAcks >= kills - 3, "most kills must land while the agent acknowledges")
        #expect(published.count > 300, "the runs must publish a real number of messages")
        #expect((counts["N"] ?? 0) > 10 && retried > 10, "retries through the wheel must be exercised")
        #expect(Set(published).count == published.count, "bodies are unique")
        #expect(failures.isEmpty, "calls failed or were refused: \(failures.prefix(10))")

        let lost = published.filter { ackedAt[$0] == nil && !ackCutShort.contains($0) }
        #expect(lost.isEmpty, "published, acknowledged, never acked by the group: \(lost.count): \(lost.prefix(10))")

        let violations = deliveredAfterAck.filter { !inDoubt.contains($0.body) }
        #expect(
            violations.isEmpty,
            "acked, then delivered again: \(violations.count): \(violations.prefix(10).map { "\($0.body) acked in run \($0.acked.run), delivered in run \($0.again.run) (attempt \($0.again.fields[2]))" })"
        )
        let doubleLeases = leasedTwice.filter { !inDoubt.contains($0.body) }
        #expect(
            doubleLeases.isEmpty,
            "delivered twice in one run while its lease (5 s) was held: \(doubleLeases.count): \(doubleLeases.prefix(10).map { "\($0.body) in run \($0.again.run), attempts \($0.first.fields[2]) then \($0.again.fields[2])" })"
        )
        #expect(early.isEmpty, "scheduled messages delivered early: \(early.count): \(early.prefix(10))")
        #expect(cancelled.count > 10, "cancels must be exercised")
        #expect(deliveredAfterCancel.isEmpty, "cancelled, then delivered: \(deliveredAfterCancel.prefix(10))")
        let strictRetryEarly = retryEarly.filter { e in !inDoubt.contains(where: { e.hasPrefix($0 + " ") }) }
        #expect(strictRetryEarly.isEmpty, "retries delivered before their nack delay: \(strictRetryEarly.count): \(strictRetryEarly.prefix(10))")
    }
}
