// The `broker` mode of the crash agent (see main.swift for the usage line).
//
//   CrashAgent broker <directory> <seed> [drain <expected file>]
//
// Opens a Broker on <directory> (automatic firing on the real clock, durability `always`,
// small segments and a short checkpoint interval so that rolls and checkpoints happen
// while it is killed). Two tasks run until the process is killed:
//
//   publisher: batches of 1-8 messages to topic "jobs" (3 partitions), some keyed (so one
//     call spreads over partitions), some immediate and some due 0-300 ms ahead. Each body
//     is `<seed>.<n>.<due>` (due = 0 for immediate ones), unique across runs when the
//     parent gives every run its own seed. Once publish returns: `P <body>` per message.
//     About every fourth batch also publishes `<seed>.c<n>.0` due 300-800 ms ahead and
//     cancels it at once; once the cancel returned: `C <body>`.
//   consumer: member of group "g"; fetches, prints `D <body> <attempt> <now> <dueAt>` per
//     delivery (now = the broker's clock after fetch returned; dueAt = the delivery's due
//     time on that clock), then acks most of them and nacks
//     about one in eight (attempts 1-2 only) with a 20-150 ms delay, through the wheel.
//     Before a nack call: `n <body> <notBefore>` (notBefore = the clock before the call
//     plus the delay); after it returned without refusal: `N <body>`. Before an ack call:
//     `a <body>` per receipt; after it returned: `A <body>` per receipt accepted,
//     `E <body> <error>` per refusal. (An ack or nack cut short by the kill may or may not
//     have reached the journal: its file write survives SIGKILL even unsynced.)
//
// With `drain`, nothing is published and nothing nacked: it acks everything it gets until
// every body listed (one a line) in <expected file> has been acked, then prints `drained`
// and exits 0; after 10 s it prints `timeout <left>` and exits 3.
// Any thrown error is printed as `X <error>` and exits 1.
import ChimeBroker
import ChimeStore
import ChimeWheel
import Foundation
import Logging
import Synchronization

private let brokerOutput = Mutex<Void>(())

/// One write(2) per call: every line the parent reads was complete before the kill.
private func emit(_ lines: [String]) {
    guard !lines.isEmpty else { return }
    brokerOutput.withLock { _ in FileHandle.standardOutput.write((lines.joined(separator: "\n") + "\n").data(using: .utf8)!) }
}

private func fail(_ what: String, _ error: any Error) -> Never {
    emit(["X \(what): \(error)".replacingOccurrences(of: "\n", with: " ")])
    exit(1)
}

enum BrokerAgent {
    static let topic = "jobs"
    static let group = "g"

    static func options(_ directory: String, seed: UInt64) -> BrokerOptions {
        BrokerOptions(
            directory: directory, durability: .always, readySegmentBytes: 16 << 10, timerSegmentBytes: 16 << 10,
            groupSegmentBytes: 4 << 10, checkpoints: .every(150), clock: clock, firing: .automatic,
            randomSeed: seed)
    }

    static let groupSettings = GroupSettings(
        maxInFlight: 200, leaseMilliseconds: 5_000, sessionTimeoutMilliseconds: 30_000, maxAttempts: 1_000)

    static func run(directory: String, seed: UInt64, drainList: String?) async {
        var logger = Logger(label: "crash-agent")
        logger.logLevel = .critical
        let broker: Broker
        do {
            broker = try await Broker.open(options(directory, seed: seed), logger: logger)
            if !broker.listTopics().contains(where: { $0.name == topic }) {
                try broker.createTopic(topic, settings: TopicSettings(partitions: 3, maxAttempts: 1_000))
            }
        } catch { fail("open", error) }
        let membership: Membership
        do {
            membership = try await broker.join(group: group, member: "m", topics: [topic], settings: groupSettings)
        } catch { fail("join", error) }
        emit(["ready \(membership.assignment.count)"])

        if let drainList {
            await drain(broker, member: membership.memberID, expectedFile: drainList)
            await broker.close()
            exit(0)
        }
        let publisher = Task { await publish(broker, seed: seed) }
        let consumer = Task { await consume(broker, member: membership.memberID, seed: seed) }
        _ = await (publisher.value, consumer.value)
    }

    /// The broker's own clock: its time is the wall clock when it starts plus the steady
    /// clock since, raised to the wheels' time at opening, so a fresh reading of the wall
    /// clock can differ from it by the drift between the two (a millisecond or so).
    /// Delivery and due times are compared on this one clock, as the broker promises them.
    static let clock = SystemWheelClock()
    static func now() -> Int64 { clock.now() }

    static func publish(_ broker: Broker, seed: UInt64) async {
        var rng = SplitMix64(seed: seed &* 0x9E37_79B9 &+ 1)
        var n = 0
        while true {
            let t = now()
            var batch: [OutgoingMessage] = []
            for _ in 0..<Int(rng.next() % 8 + 1) {
                let scheduled = rng.next() % 2 == 0
                let due = scheduled ? t + Int64(rng.next() % 301) : 0
                let body = "\(seed).\(n).\(due)"
                n += 1
                let keyed = rng.next() % 2 == 0
                batch.append(OutgoingMessage(key: keyed ? Array(body.utf8) : nil, body: Array(body.utf8), due: scheduled ? .at(due) : nil))
            }
            do {
                let results = try await broker.publish(topic: topic, batch)
                guard results.count == batch.count, results.allSatisfy({ $0.id != nil && !$0.duplicate }) else {
                    fail("publish", AgentFailure(description: "unexpected outcomes \(results)"))
                }
            } catch { fail("publish", error) }
            emit(batch.map { "P " + String(decoding: $0.body, as: UTF8.self) })
            // Now and then a message due in 300-800 ms, cancelled at once: once the cancel
            // returned (`C <body>`), it must never be delivered, whatever the kills.
            if rng.next() % 4 == 0 {
                let body = "\(seed).c\(n).0"
                n += 1
                do {
                    // Due from the clock now, not from the batch's `t`: on a loaded machine the
                    // batch's publish can take longer than 300 ms, and a due time already
                    // past makes a message for immediate delivery, which cannot be cancelled.
                    let id = try await broker.publish(topic: topic, [OutgoingMessage(body: Array(body.utf8), due: .at(now() + 300 + Int64(rng.next() % 501)))])[0].id!
                    try await broker.cancel(id)
                } catch { fail("cancel", error) }
                emit(["C \(body)"])
            }
            try? await Task.sleep(for: .milliseconds(Int64(rng.next() % 8 + 1)))
        }
    }

    static func consume(_ broker: Broker, member: UInt64, seed: UInt64) async {
        var rng = SplitMix64(seed: seed &* 0x85EB_CA6B &+ 2)
        while true {
            let got: [Delivery]
            do {
                got = try await broker.fetch(group: group, member: member, max: 40)
            } catch { fail("fetch", error) }
            if got.isEmpty {
                try? await Task.sleep(for: .milliseconds(3))
                continue
            }
            let at = now()
            emit(got.map { "D \(text($0)) \($0.attempt) \(at) \($0.dueAt)" })
            var acks: [Delivery] = []
            var nacks: [Delivery] = []
            for d in got {
                if d.attempt <= 2 && rng.next() % 8 == 0 { nacks.append(d) } else { acks.append(d) }
            }
            if !nacks.isEmpty {
                let delay = Int64(rng.next() % 131 + 20)
                let notBefore = now() + delay
                emit(nacks.map { "n \(text($0)) \(notBefore)" })
                do {
                    let results = try await broker.nack(group: group, member: member, nacks.map(\.receipt), delay: delay, reason: "test")
                    emit(zip(nacks, results).map { d, r in r == nil ? "N \(text(d))" : "E \(text(d)) nack \(r!)" })
                } catch { fail("nack", error) }
            }
            await ack(broker, member: member, acks)
        }
    }

    static func ack(_ broker: Broker, member: UInt64, _ deliveries: [Delivery]) async {
        guard !deliveries.isEmpty else { return }
        emit(deliveries.map { "a \(text($0))" })
        do {
            let results = try await broker.ack(group: group, member: member, deliveries.map(\.receipt))
            emit(zip(deliveries, results).map { d, r in r == nil ? "A \(text(d))" : "E \(text(d)) ack \(r!)" })
        } catch { fail("ack", error) }
    }

    static func drain(_ broker: Broker, member: UInt64, expectedFile: String) async {
        let listed = (try? String(contentsOfFile: expectedFile, encoding: .utf8)) ?? ""
        var left = Set(listed.split(separator: "\n").map(String.init))
        let deadline = now() + 10_000
        while !left.isEmpty && now() < deadline {
            let got: [Delivery]
            do {
                got = try await broker.fetch(group: group, member: member, max: 100)
            } catch { fail("fetch", error) }
            if got.isEmpty {
                try? await Task.sleep(for: .milliseconds(5))
                continue
            }
            let at = now()
            emit(got.map { "D \(text($0)) \($0.attempt) \(at) \($0.dueAt)" })
            let results: [BrokerError?]
            emit(got.map { "a \(text($0))" })
            do {
                results = try await broker.ack(group: group, member: member, got.map(\.receipt))
            } catch { fail("ack", error) }
            emit(zip(got, results).map { d, r in r == nil ? "A \(text(d))" : "E \(text(d)) ack \(r!)" })
            for (d, r) in zip(got, results) where r == nil { left.remove(text(d)) }
        }
        // A little longer: whatever shows up now is a duplicate the parent wants to see.
        let linger = now() + 300
        while now() < linger {
            if let got = try? await broker.fetch(group: group, member: member, max: 100), !got.isEmpty {
                let at = now()
                emit(got.map { "D \(text($0)) \($0.attempt) \(at) \($0.dueAt)" } + got.map { "a \(text($0))" })
                if let results = try? await broker.ack(group: group, member: member, got.map(\.receipt)) {
                    emit(zip(got, results).map { d, r in r == nil ? "A \(text(d))" : "E \(text(d)) ack \(r!)" })
                }
            } else {
                try? await Task.sleep(for: .milliseconds(10))
            }
        }
        emit([left.isEmpty ? "drained" : "timeout \(left.count) " + left.sorted().joined(separator: " ")])
        if !left.isEmpty {
            await broker.close()
            exit(3)
        }
    }

    static func text(_ d: Delivery) -> String { String(decoding: d.body, as: UTF8.self) }
}

private struct AgentFailure: Error, CustomStringConvertible {
    var description: String
}
