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

/// "250ms", "5s", "2m", "1h", "3d", or "0"; nil for anything else, and for more
/// milliseconds than an Int64 holds.
func parseDuration(_ text: String) -> Int64? {
    if text == "0" { return 0 }
    let units: [(String, Int64)] = [("ms", 1), ("s", 1_000), ("m", 60_000), ("h", 3_600_000), ("d", 86_400_000)]
    for (suffix, factor) in units where text.hasSuffix(suffix) {
        guard let n = Double(text.dropLast(suffix.count)), n >= 0, n.isFinite, n * Double(factor) < 9.2e18 else { return nil }
        return Int64(n * Double(factor))
    }
    return nil
}

func nowMilliseconds() -> Int64 { Int64(Date().timeIntervalSince1970 * 1000) }

/// The id a publish prints. A resend of a batch whose answer was lost can find it stored
/// by a broker that no longer remembers its ids (a restart in between): the message is
/// stored once, and that is what is said.
func idLine(_ outcome: PublishReply.Outcome) -> String {
    outcome.id?.text ?? "stored (sent again after a lost answer; the broker no longer has its id)"
}

/// What `--delay -5s` (or `--delay=-5s`) is told.
func negativeDelay(_ value: String) -> String {
    "--delay \(value): a delay cannot be negative (to deliver now, leave --delay out; for a time, use --at)"
}

/// A client command's failure: one clear line and exit status 1 (no usage text: the
/// command line was fine).
struct CommandFailure: Error, CustomStringConvertible {
    let description: String
}

func clientFailure(_ error: any Error) -> any Error {
    if let e = error as? ClientError {
        guard e.isDisconnected else { return CommandFailure(description: "the broker refused: \(e.message) (code \(e.code))") }
        if e.message.hasPrefix("cannot reach the broker") { return CommandFailure(description: "\(e.message) — is `chime serve` running?") }
        return CommandFailure(description: "cannot reach the broker: \(e.message)")
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

/// One message as `consume` and `peek` print it, with its newline: a line of text, or one
/// JSON object (`topic, partition, offset, id, key, publishedAt, dueAt, deliveredAt,
/// attempt, body`).
func deliveryLine(_ d: WireDelivery, json: Bool) -> String {
    guard json else {
        return "\(d.topic)/\(d.partition)@\(d.offset) \(d.id.text) attempt \(d.attempt): \(String(decoding: d.body, as: UTF8.self))\n"
    }
    let key = d.key.map { Format.json(String(decoding: $0, as: UTF8.self)) } ?? "null"
    return "{\"topic\":\(Format.json(d.topic)),\"partition\":\(d.partition),\"offset\":\(d.offset),\"id\":\"\(d.id.text)\",\"key\":\(key),"
        + "\"publishedAt\":\(d.publishedAt),\"dueAt\":\(d.dueAt),\"deliveredAt\":\(d.deliveredAt),\"attempt\":\(d.attempt),"
        + "\"body\":\(Format.json(String(decoding: d.body, as: UTF8.self)))}\n"
}

/// Writes `bytes` to standard output in one unbuffered write, so a reader sees whole batches.
func writeStandardOutput(_ bytes: [UInt8]) {
    guard !bytes.isEmpty else { return }
    FileHandle.standardOutput.write(Data(bytes))
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
              chime publish --topic emails --job send-email '{"to":"a@b.c"}'   # for a worker
              chime publish --topic emails --header trace=abc12 hello
            """)

    @OptionGroup var broker: BrokerAddress
    @Option(name: .long, help: "Topic (created on first use unless the broker forbids it).") var topic: String
    @Option(name: .long, help: "Key: chooses the partition; same key, same order.") var key: String?
    @Option(name: .long, help: "Deliver this long after the broker receives each message: 250ms, 5s, 2m, 1h, 3d.") var delay: String?
    @Option(name: .long, help: "Deliver at this time (ISO 8601, e.g. 2026-12-01T10:00:00Z).") var at: String?
    @Option(name: .long, help: "Publish this many generated messages (with --size).") var count: Int?
    @Option(name: .long, help: "Body size of generated messages in bytes.") var size: Int = 100
    @Option(name: .long, help: "A header NAME=VALUE on every message (repeat for several).") var header: [String] = []
    @Option(name: .long, help: "A job for a worker: sets the chime-job header to this job name; the body is the job's JSON.") var job: String?
    @Argument(help: "The message body (omit to read one message per line of standard input).") var body: String?

    /// The headers every message gets: --header's, and --job's `chime-job`.
    func headers() throws -> [WireHeader] {
        var out: [WireHeader] = try header.map { h in
            guard let eq = h.firstIndex(of: "="), eq != h.startIndex else { throw ValidationError("--header is NAME=VALUE, not '\(h)'") }
            return WireHeader(name: String(h[..<eq]), value: Array(h[h.index(after: eq)...].utf8))
        }
        if let job {
            guard !job.isEmpty else { throw ValidationError("--job names a job, e.g. --job send-email") }
            out.append(WireHeader(name: "chime-job", value: Array(job.utf8)))
        }
        return out
    }

    func run() async throws {
        // A delay travels as a delay: the broker starts counting when each message arrives.
        let due: WireDue?
        switch (delay, at) {
        case (let delay?, nil):
            if delay.hasPrefix("-") { throw ValidationError(negativeDelay(delay)) }
            guard let ms = parseDuration(delay) else { throw ValidationError("--delay must look like 250ms, 5s, 2m, 1h or 3d, not '\(delay)'") }
            due = .after(ms)
        case (nil, let at?):
            guard let date = ISO8601DateFormatter().date(from: at) else { throw ValidationError("--at must be an ISO 8601 time like 2026-12-01T10:00:00Z") }
            let ms = Int64(date.timeIntervalSince1970 * 1000)
            if ms < nowMilliseconds() {
                FileHandle.standardError.write(Data("chime: warning: --at \(at) is in the past; the message is due now\n".utf8))
            }
            due = .at(ms)
        case (nil, nil):
            due = nil
        case (_?, _?):
            throw ValidationError("give --delay or --at, not both")
        }
        if let count { guard count > 0, size >= 0 else { throw ValidationError("--count must be positive and --size not negative") } }
        let headers = try self.headers()
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
                                _ = try await client.publish((0..<n).map { _ in OutgoingRecord(due: due, key: key, headers: headers, body: body) }, to: topic)
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
                print(idLine(try await client.publish([OutgoingRecord(due: due, key: key, headers: headers, body: Array(body.utf8))], to: topic)[0]))
            } else {
                while let line = readLine(strippingNewline: true) {
                    print(idLine(try await client.publish([OutgoingRecord(due: due, key: key, headers: headers, body: Array(line.utf8))], to: topic)[0]))
                    fflush(nil)
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
            nothing arrives for that long. A topic that does not exist yet is waited for (it \
            is never created by accident); --create creates it.

            Examples:
              chime consume --topic emails --group mailers
              chime consume --topic coupons --group expirers --count 10 --json
            """)

    @OptionGroup var broker: BrokerAddress
    @Option(name: .long, help: "Topic to consume.") var topic: String
    @Option(name: .long, help: "Consumer group: members share its partitions.") var group: String
    @Option(name: .long, help: "Exit after this many messages.") var count: Int?
    @Option(name: .long, help: "Give up when nothing arrives for this long (e.g. 30s).") var timeout: String?
    @Flag(name: .long, help: "Create the topic if it does not exist (else consume waits for it).") var create = false
    @Flag(name: .long, help: "One JSON object per line.") var json = false
    @Flag(
        name: .customLong("no-ack"),
        help: "Do not ack: what is printed stays leased until consume leaves, then goes back, not counted as an attempt (to look without leasing: chime peek).")
    var noAck = false

    func run() async throws {
        let limit = try timeout.map { t -> Int64 in
            guard let ms = parseDuration(t) else { throw ValidationError("--timeout must look like 30s, not '\(t)'") }
            return ms
        }
        let client = try broker.client(name: "chime-consume")
        var got = 0
        var timer = inactivityTimer(limit)
        if !create {
            do {
                if try await !client.topics().contains(where: { $0.name == topic }) {
                    FileHandle.standardError.write(
                        Data("chime: topic \(topic) does not exist yet; waiting for it (--create makes it, --timeout gives up)\n".utf8))
                }
            } catch {
                timer?.cancel()
                await client.close()
                throw clientFailure(error)
            }
        }
        var messages = client.consume(group: group, topics: [topic], prefetch: min(1_000, count ?? 1_000), createTopics: create).makeAsyncIterator()
        defer { timer?.cancel() }
        // Written a fetched batch at a time: one write, not one per message.
        var output: [UInt8] = []
        do {
            while let m = try await messages.next() {
                output.append(contentsOf: deliveryLine(m.delivery, json: json).utf8)
                // Queued: acks go to the broker together in the background (see ConsumedMessage.ack).
                if !noAck { try await m.ack() }
                got += 1
                let done = count.map { got >= $0 } ?? false
                if done || !messages.hasBuffered {
                    writeStandardOutput(output)
                    output.removeAll(keepingCapacity: true)
                    // Something arrived: the inactivity timeout starts again.
                    timer?.cancel()
                    timer = inactivityTimer(limit)
                }
                if done { break }
            }
            timer?.cancel()
            // Waits for the queued acks, then hands the partitions to the other members at once.
            await messages.leave()
        } catch {
            writeStandardOutput(output)
            timer?.cancel()
            await messages.leave()
            await client.close()
            throw clientFailure(error)
        }
        let failures = await client.ackFailures
        await client.close()
        if failures.count > 0 {
            throw CommandFailure(
                description: "\(failures.count) of \(got) acks were not accepted (\(failures.last.map { "\($0)" } ?? "")); those messages will be delivered again")
        }
    }
}

struct PeekCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "peek",
        abstract: "Show messages of a topic without consuming them: nothing is leased, acked or delivered.",
        discussion: """
            Reads each partition of the topic (or only --partition) from its start, from \
            --from OFFSET, or with --group from where that group stands: its backlog, the \
            messages it has not acked (in flight included). Prints up to --count messages in \
            all, partition by partition, in the format of `chime consume`. A scheduled \
            message shows once it is due (it is in its partition's log from then on); `chime \
            topics` counts the ones still waiting. The topic is never created.

            Examples:
              chime peek --topic emails
              chime peek --topic emails --group mailers --count 100 --json
              chime peek --topic emails --partition 2 --from 1500
            """)

    @OptionGroup var broker: BrokerAddress
    @Option(name: .long, help: "Topic to read.") var topic: String
    @Option(name: .long, help: "Only this partition (default: every partition, in order).") var partition: Int?
    @Option(name: .long, help: "Start at this offset of each partition read.") var from: Int64?
    @Option(name: .long, help: "Start where this group stands, skipping what it acked.") var group: String?
    @Option(name: .long, help: "Messages to print at most.") var count: Int = 20
    @Flag(name: .long, help: "One JSON object per line.") var json = false

    func validate() throws {
        guard count > 0 else { throw ValidationError("--count must be at least 1, not \(count)") }
        if let from, from < 0 { throw ValidationError("--from is an offset: 0 or more, not \(from)") }
        if let partition, partition < 0 { throw ValidationError("--partition is 0 or more, not \(partition)") }
    }

    func run() async throws {
        let client = try broker.client(name: "chime-peek")
        do {
            guard let info = try await client.topics().first(where: { $0.name == topic }) else {
                throw CommandFailure(description: "topic \(topic) does not exist")
            }
            if let partition, partition >= Int(info.settings.partitions) {
                throw CommandFailure(description: "topic \(topic) has \(info.settings.partitions) partitions (0 to \(info.settings.partitions - 1)); there is no partition \(partition)")
            }
            var left = count
            for p in partition.map({ [$0] }) ?? Array(0..<Int(info.settings.partitions)) where left > 0 {
                var next = from
                while left > 0 {
                    let page = try await client.peek(topic: topic, partition: p, from: next, group: group, max: min(left, 1_000))
                    guard let last = page.last else { break }
                    writeStandardOutput(Array(page.map { deliveryLine($0, json: json) }.joined().utf8))
                    left -= page.count
                    next = last.offset + 1
                }
            }
        } catch let failure as CommandFailure {
            await client.close()
            throw failure
        } catch {
            await client.close()
            throw clientFailure(error)
        }
        await client.close()
    }
}
