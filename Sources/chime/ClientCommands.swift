import ArgumentParser
import ChimeClient
import ChimeProtocol
import Foundation
import Logging

/// Where the broker is: flags, else CHIME_HOST / CHIME_PORT / CHIME_TOKEN / CHIME_TLS_CA,
/// else 127.0.0.1:7420 over plain TCP.
struct BrokerAddress: ParsableArguments {
    @Option(name: .long, help: "Broker host (default: $CHIME_HOST or 127.0.0.1).")
    var host: String?

    @Option(name: .long, help: "Broker port (default: $CHIME_PORT or 7420).")
    var port: Int?

    @Option(name: .long, help: "Token, when the broker requires one (default: $CHIME_TOKEN).")
    var token: String?

    @Flag(name: .long, help: "Connect over TLS, trusting the system's certificate authorities (or --tls-ca).")
    var tls = false

    @Option(name: .customLong("tls-ca"), help: "Connect over TLS, trusting the certificate authority in this PEM file (default: $CHIME_TLS_CA).")
    var tlsCA: String?

    func client(name: String) throws -> ChimeClient {
        let env = ProcessInfo.processInfo.environment
        guard let port = port ?? env["CHIME_PORT"].flatMap(Int.init) ?? Optional(7420), (1...65_535).contains(port) else {
            throw ValidationError("the port must be 1...65535")
        }
        var logger = Logger(label: "chime")
        logger.logLevel = .warning
        // A CA file, given or from the environment, means TLS without --tls.
        let ca = tlsCA ?? env["CHIME_TLS_CA"].flatMap { $0.isEmpty ? nil : $0 }
        let tlsOptions = tls || ca != nil ? ClientTLS(trustedCertificatesFile: ca) : nil
        return ChimeClient(
            ClientOptions(
                host: host ?? env["CHIME_HOST"] ?? "127.0.0.1", port: port, token: token ?? env["CHIME_TOKEN"], name: name, connectAttempts: 3, tls: tlsOptions),
            logger: logger)
    }
}

/// "250ms", "5s", "2m", "1h", "3d".
func parseDuration(_ text: String) -> Int64? {
    let units: [(String, Int64)] = [("ms", 1), ("s", 1_000), ("m", 60_000), ("h", 3_600_000), ("d", 86_400_000)]
    for (suffix, factor) in units where text.hasSuffix(suffix) {
        guard let n = Double(text.dropLast(suffix.count)), n >= 0, n.isFinite else { return nil }
        return Int64(n * Double(factor))
    }
    return nil
}

func nowMilliseconds() -> Int64 { Int64(Date().timeIntervalSince1970 * 1000) }

/// A client command's failure: one clear line and exit status 1 (no usage text: the
/// command line was fine).
struct CommandFailure: Error, CustomStringConvertible {
    let description: String
}

func clientFailure(_ error: any Error) -> any Error {
    if let e = error as? ClientError {
        return CommandFailure(description: e.isDisconnected ? "cannot reach the broker: \(e.message)" : "the broker refused: \(e.message) (code \(e.code))")
    }
    if let e = error as? ClientTLSError {
        let hint =
            e.code == .untrusted
            ? " (give --tls-ca with the authority that signed the broker's certificate)"
            : e.code == .handshakeFailed ? " (a broker serving plain TCP is reached without --tls and --tls-ca)" : ""
        return CommandFailure(description: "\(e.message)\(hint)")
    }
    return error
}

/// Ends the process when nothing arrives for `ms` (cancelled when something does).
func inactivityTimer(_ ms: Int64?) -> Task<Void, Never>? {
    ms.map { ms in
        Task {
            try? await Task.sleep(for: .milliseconds(ms))
            guard !Task.isCancelled else { return }
            FileHandle.standardError.write("chime: nothing arrived for \(ms) ms; giving up\n".data(using: .utf8)!)
            Foundation.exit(1)
        }
    }
}

extension WireMessageID {
    var text: String { "\(topicID)-\(partition)-\(kind == 1 ? "s" : "r")\(value)" }
}

struct PublishCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "publish",
        abstract: "Publish messages: one from BODY, one per line of standard input, or --count generated ones.",
        discussion: """
            Prints the id of each message (keep it to cancel a scheduled one), or a summary \
            with the rate for --count.

            Examples:
              chime publish --topic emails '{"to":"a@b.c"}'
              chime publish --topic coupons --delay 30s expire-42
              chime publish --topic reports --at 2026-12-01T10:00:00Z monthly
              tail -f app.log | chime publish --topic lines
              chime publish --topic load --count 100000 --size 100
            """)

    @OptionGroup var broker: BrokerAddress
    @Option(name: .long, help: "Topic (created on first use unless the broker forbids it).") var topic: String
    @Option(name: .long, help: "Key: chooses the partition; same key, same order.") var key: String?
    @Option(name: .long, help: "Deliver this long after the broker receives each message: 250ms, 5s, 2m, 1h, 3d.") var delay: String?
    @Option(name: .long, help: "Deliver at this time (ISO 8601, e.g. 2026-12-01T10:00:00Z).") var at: String?
    @Option(name: .long, help: "Publish this many generated messages (with --size).") var count: Int?
    @Option(name: .long, help: "Body size of generated messages in bytes.") var size: Int = 100
    @Argument(help: "The message body (omit to read one message per line of standard input).") var body: String?

    func run() async throws {
        // A delay travels as a delay: the broker starts counting when each message arrives.
        let due: WireDue?
        switch (delay, at) {
        case (let delay?, nil):
            guard let ms = parseDuration(delay) else { throw ValidationError("--delay must look like 250ms, 5s, 2m, 1h or 3d, not '\(delay)'") }
            due = .after(ms)
        case (nil, let at?):
            guard let date = ISO8601DateFormatter().date(from: at) else { throw ValidationError("--at must be an ISO 8601 time like 2026-12-01T10:00:00Z") }
            due = .at(Int64(date.timeIntervalSince1970 * 1000))
        case (nil, nil):
            due = nil
        case (_?, _?):
            throw ValidationError("give --delay or --at, not both")
        }
        if let count { guard count > 0, size >= 0 else { throw ValidationError("--count must be positive and --size not negative") } }
        let client = try broker.client(name: "chime-publish")
        defer { Task { await client.close() } }
        let key = self.key.map { Array($0.utf8) }
        do {
            if let count {
                let body = [UInt8](repeating: 0x61, count: size)
                let started = Date()
                var sent = 0
                var lastReport = Date()
                // Batches of 1,000, several in flight: the client's lanes merge them.
                try await withThrowingTaskGroup(of: Int.self) { group in
                    var queued = 0
                    var inFlight = 0
                    while sent < count {
                        while inFlight < 16 && queued < count {
                            let n = min(1_000, count - queued)
                            queued += n
                            inFlight += 1
                            group.addTask {
                                _ = try await client.publish((0..<n).map { _ in OutgoingRecord(due: due, key: key, body: body) }, to: topic)
                                return n
                            }
                        }
                        sent += try await group.next()!
                        inFlight -= 1
                        if Date().timeIntervalSince(lastReport) >= 1 {
                            FileHandle.standardError.write("chime: \(sent) of \(count) published\n".data(using: .utf8)!)
                            lastReport = Date()
                        }
                    }
                }
                let seconds = Date().timeIntervalSince(started)
                print("published \(count) messages of \(size) B to \(topic) in \(String(format: "%.2f", seconds)) s (\(Int(Double(count) / max(seconds, 1e-6))) messages/s)")
            } else if let body {
                print(try await client.publish(Array(body.utf8), to: topic, key: key, due: due).text)
            } else {
                while let line = readLine(strippingNewline: true) {
                    print(try await client.publish(Array(line.utf8), to: topic, key: key, due: due).text)
                }
            }
        } catch {
            throw clientFailure(error)
        }
    }
}

struct ConsumeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "consume",
        abstract: "Consume messages of a topic as a member of a group, printing each and acking it.",
        discussion: """
            With --count, exits after that many messages (waiting for scheduled ones to fall \
            due); without it, runs until interrupted. --timeout gives up (exit status 1) when \
            nothing arrives for that long.

            Examples:
              chime consume --topic emails --group mailers
              chime consume --topic coupons --group expirers --count 10 --json
            """)

    @OptionGroup var broker: BrokerAddress
    @Option(name: .long, help: "Topic to consume.") var topic: String
    @Option(name: .long, help: "Consumer group: members share its partitions.") var group: String
    @Option(name: .long, help: "Exit after this many messages.") var count: Int?
    @Option(name: .long, help: "Give up when nothing arrives for this long (e.g. 30s).") var timeout: String?
    @Flag(name: .long, help: "One JSON object per line.") var json = false
    @Flag(name: .customLong("no-ack"), help: "Do not ack: the messages are delivered again when their leases expire.") var noAck = false

    func run() async throws {
        let limit = try timeout.map { t -> Int64 in
            guard let ms = parseDuration(t) else { throw ValidationError("--timeout must look like 30s, not '\(t)'") }
            return ms
        }
        let client = try broker.client(name: "chime-consume")
        var got = 0
        do {
            let stream = client.consume(group: group, topics: [topic], prefetch: min(100, count ?? 100))
            var timer = inactivityTimer(limit)
            var messages = stream.makeAsyncIterator()
            defer { timer?.cancel() }
            while let m = try await messages.next() {
                let d = m.delivery
                if json {
                    let key = d.key.map { Format.json(String(decoding: $0, as: UTF8.self)) } ?? "null"
                    print(
                        "{\"topic\":\(Format.json(d.topic)),\"partition\":\(d.partition),\"offset\":\(d.offset),\"id\":\"\(d.id.text)\",\"key\":\(key),"
                            + "\"publishedAt\":\(d.publishedAt),\"dueAt\":\(d.dueAt),\"deliveredAt\":\(d.deliveredAt),\"attempt\":\(d.attempt),"
                            + "\"body\":\(Format.json(String(decoding: d.body, as: UTF8.self)))}")
                } else {
                    print("\(d.topic)/\(d.partition)@\(d.offset) \(d.id.text) attempt \(d.attempt): \(String(decoding: d.body, as: UTF8.self))")
                }
                fflush(nil)
                if !noAck { try await m.ack() }
                got += 1
                if let count, got >= count { break }
                // Something arrived: the inactivity timeout starts again.
                timer?.cancel()
                timer = inactivityTimer(limit)
            }
            timer?.cancel()
            await messages.leave()
        } catch {
            throw clientFailure(error)
        }
        await client.close()
    }
}
