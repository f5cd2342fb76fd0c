import ArgumentParser
import ChimeClient
import ChimeProtocol
import ChimeWorker
import Foundation
import Logging
import ServiceLifecycle

#if canImport(Glibc)
import Glibc
#endif

/// `chime work`: any program is a worker. The command runs once per message.
struct WorkCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "work",
        abstract: "Run a command once per message of a topic: any program, in any language, is a worker.",
        discussion: """
            Each message runs COMMAND with the message body on its standard input and its \
            details in the environment: CHIME_ID, CHIME_TOPIC, CHIME_PARTITION, CHIME_KEY, \
            CHIME_ATTEMPT (1 for the first), CHIME_PUBLISHED_AT and CHIME_DUE_AT (ms since the \
            epoch), CHIME_JOB (its chime-job header, if any), CHIME_GROUP. A flow's child also \
            gets CHIME_FLOW and CHIME_FLOW_INDEX (its shard); a flow's continuation \
            CHIME_FLOW_DONE (`chime flows show` lists its children's outcomes). What the \
            command writes to the file named by CHIME_RESULT_FILE (at most 1 KiB) is the \
            job's result, kept by its flow.

            Exit status 0 acks the message. 75 (EX_TEMPFAIL) asks for it to be tried again \
            later. Any other status (or a signal, or --timeout) is a failure: it is tried \
            again after a backoff (exponential with jitter from --backoff), and dead-lettered \
            to <group>.dlq with the status and the end of its standard error once \
            --max-attempts are used up. 75 retries the same way and counts as an attempt too, \
            but is logged as a request rather than a failure. A timeout kills the command's \
            whole process group. Each line it prints is logged with the message's id.

            The group is made shared if it does not exist, so every `chime work` started on it \
            adds capacity, whatever the topic's partition count. SIGTERM or Ctrl-C drains: no \
            new message is started, messages fetched and not started go back at once, running \
            commands get --grace to finish and are then killed.

            Examples:
              chime work --topic thumbnails --group thumbnailers --concurrency 8 -- ./make-thumbnail.sh
              chime work --topic emails --group mailers --timeout 30s --max-attempts 3 -- python3 send.py
            """)

    @OptionGroup var broker: BrokerAddress
    @Option(name: .long, help: "Topic to take messages from (repeat for several: they take turns).") var topic: [String]
    @Option(name: .long, help: "Group the workers share (made shared if new).") var group: String
    @Option(name: .long, help: "Commands running at once.") var concurrency: Int = 8
    @Option(name: .long, help: "Messages fetched ahead of a free slot (default: --concurrency).") var prefetch: Int?
    @Option(name: .long, help: "Kill a command running longer than this (e.g. 30s, 5m); a failed attempt.") var timeout: String?
    @Option(name: .long, help: "Attempts in all before a message is dead-lettered.") var maxAttempts: Int = 5
    @Option(name: .long, help: "The first retry's longest wait; each next one doubles it (jitter picks a wait up to it).") var backoff: String = "1s"
    @Option(name: .long, help: "At shutdown, how long running commands may take before they are killed.") var grace: String = "30s"
    @Option(name: .long, help: "Member name in the group (default: chime-work@<host>).") var name: String?
    @Argument(parsing: .postTerminator, help: "The command and its arguments, after --.") var command: [String] = []

    func validate() throws {
        guard !topic.isEmpty else { throw ValidationError("give at least one --topic") }
        guard !command.isEmpty else { throw ValidationError("give the command to run after --, e.g. chime work --topic T --group G -- ./handle.sh") }
        guard concurrency >= 1, concurrency <= 10_000 else { throw ValidationError("--concurrency is 1...10000") }
        guard prefetch.map({ $0 >= 1 && $0 <= 65_536 }) ?? true else { throw ValidationError("--prefetch is 1...65536") }
        guard maxAttempts >= 1 else { throw ValidationError("--max-attempts is at least 1") }
        for (option, value) in [("--timeout", timeout), ("--backoff", backoff), ("--grace", grace)] {
            if let value, parseDuration(value) == nil { throw ValidationError("\(option) is a duration such as 500ms, 30s or 5m, not '\(value)'") }
        }
    }

    func run() async throws {
        // A command that exits without reading its input must not take this process with it.
        signal(SIGPIPE, SIG_IGN)
        var logger = Logger(label: "chime-work")
        logger.logLevel = .info
        let client = try broker.client(name: "chime-work")
        let member = name ?? "chime-work@\(ProcessInfo.processInfo.hostName)"
        let worker = ChimeWorker(
            client: client, options: .init(gracePeriod: .milliseconds(parseDuration(grace)!), name: member), logger: logger)
        let program = command[0]
        let arguments = Array(command.dropFirst())
        let group = self.group
        worker.registerResumableFallback(
            retry: .exponentialJitter(maxAttempts: maxAttempts, base: .milliseconds(parseDuration(backoff)!)),
            timeout: timeout.map { .milliseconds(parseDuration($0)!) }
        ) { body, context in
            try await Self.runCommand(program, arguments, body: body, context: context, group: group)
        }
        // A command acts outside this process: one that finished must not run again after
        // a crash of chime work, so its ack is recorded before its slot moves on.
        worker.addPool(WorkerPool(group: group, topics: topic, concurrency: concurrency, prefetch: prefetch, durableAcks: true))
        logger.info(
            "working", metadata: ["topics": "\(topic.joined(separator: ","))", "group": "\(group)", "concurrency": "\(concurrency)", "command": "\(command.joined(separator: " "))"])
        let services = ServiceGroup(
            configuration: .init(
                services: [.init(service: client), .init(service: worker)], gracefulShutdownSignals: [.sigterm, .sigint],
                cancellationSignals: [.sigquit], logger: logger))
        do {
            try await services.run()
        } catch {
            throw CommandFailure(description: "chime work stopped: \(clientFailure(error))")
        }
    }

    /// What a command's exit said.
    struct CommandFailed: Error, CustomStringConvertible {
        let description: String
    }

    /// The most bytes a command's result may have (what a flow keeps per child).
    static let maxResultBytes = 1 << 10

    static func runCommand(_ program: String, _ arguments: [String], body: [UInt8], context: JobContext, group: String) async throws -> JobResult {
        // Where the command may leave its result for the flow it is a child of.
        let resultFile = NSTemporaryDirectory() + "chime-result-\(getpid())-\(UInt64.random(in: 0...UInt64.max))"
        defer { unlink(resultFile) }
        var env = [
            "CHIME_ID": context.id, "CHIME_TOPIC": context.topic, "CHIME_PARTITION": "\(context.partition)",
            "CHIME_ATTEMPT": "\(context.attempt)", "CHIME_PUBLISHED_AT": "\(Int64(context.publishedAt.timeIntervalSince1970 * 1000))",
            "CHIME_DUE_AT": "\(Int64(context.dueAt.timeIntervalSince1970 * 1000))", "CHIME_JOB": context.name, "CHIME_GROUP": group,
        ]
        env["CHIME_KEY"] = context.key.map { String(decoding: $0, as: UTF8.self) } ?? ""
        env["CHIME_RESULT_FILE"] = resultFile
        if let place = context.flow {
            env["CHIME_FLOW"] = place.flow
            env["CHIME_FLOW_INDEX"] = "\(place.index)"
        }
        if let flow = context.continues { env["CHIME_FLOW_DONE"] = flow }
        let job = try ShellJob(command: program, arguments: arguments, environment: env)
        let logger = context.logger
        let outcome = await withTaskCancellationHandler {
            await job.finish(input: body) { line, isError in
                logger.info("\(line)", metadata: ["stream": isError ? "stderr" : "stdout"])
            }
        } onCancel: {
            job.kill()
        }
        let tail = outcome.stderrTail.isEmpty ? "" : ": \(outcome.stderrTail)"
        switch (outcome.status, outcome.signal) {
        case (0?, _):
            guard let data = FileManager.default.contents(atPath: resultFile), !data.isEmpty else { return .done }
            guard data.count <= maxResultBytes else {
                throw CommandFailed(description: "its result ($CHIME_RESULT_FILE) is \(data.count) bytes; a result is at most \(maxResultBytes)")
            }
            return .done(result: String(decoding: data, as: UTF8.self))
        case (75?, _):
            throw CommandFailed(description: "exit status 75 (try again later)\(tail)")
        case (let status?, _):
            throw CommandFailed(description: "exit status \(status)\(tail)")
        case (nil, let signal):
            throw CommandFailed(description: "killed by signal \(signal ?? 0)\(tail)")
        }
    }
}
