import ArgumentParser
import ChimeClient
import ChimeProtocol
import Foundation

// `chime jobs show ID`: where a job (any message) stands, by the id its publish printed;
// `chime jobs abort ID`; `chime complete TOKEN [BODY]`: a parked job's callback.

struct JobsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "jobs",
        abstract: "Where jobs stand, by the ids `chime publish` printed.",
        subcommands: [Show.self, Abort.self],
        defaultSubcommand: Show.self)

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "A job's status: scheduled, ready, running, retrying, succeeded, dead or cancelled.",
            discussion: """
                Before it is due a job is scheduled (or cancelled) for everyone; from then on it
                has a state in each group that consumes it:

                  ready      waiting for a member to fetch it
                  running    leased to a member (shown with its attempt and lease deadline)
                  retrying   failed; waiting for its next attempt (shown with its time and the error)
                  succeeded  acked by the group
                  finished   acked before the broker last started: succeeded, unless it was then
                             waiting for a retry (retries are remembered in memory only)
                  dead       in the group's dead-letter topic (shown with the reason)
                  aborted    aborted by `chime jobs abort`, while it ran or before
                  snoozed    a continuation, parked until it runs again
                  awaiting-callback  parked until `chime complete` or its timeout

                The answer may read the partition's logs (a fired job is looked up by its due
                time, a retry in the group's retry log, a dead letter in its topic): it is for
                people, not for a loop.

                Examples:
                  chime jobs show 3-1-s4096
                  chime jobs show 3-0-r17 --group mailers --json
                """)
        @OptionGroup var broker: BrokerAddress
        @Argument(help: "Message id, as printed by `chime publish`.") var id: String
        @Option(name: .long, help: "Only this group (default: every group that consumes the job).") var group: String?
        @Flag(name: .long, help: "One JSON object per group and line.") var json = false

        func run() async throws {
            guard let parsed = WireMessageID(text: id) else { throw ValidationError("'\(id)' is not a message id (they look like 3-1-s4096)") }
            let statuses = try await withBroker(broker, name: "chime-jobs") { try await $0.jobStatus(parsed, group: group) }
            let now = Int64(Date().timeIntervalSince1970 * 1000)
            for s in statuses {
                print(json ? jobStatusJSON(id, s) : jobStatusLine(id, s, now: now))
            }
        }
    }

    struct Abort: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Abort a job: cancel it if it has not run, stop it if it runs.",
            discussion: """
                A job that is scheduled, waiting for delivery or waiting for a retry is cancelled:
                it will not run. A job a worker is running has its lease ended at once (it is
                never delivered again) and its worker cancels the job's task on its next round
                trip to the broker, within about a second. The outcome is recorded: `chime jobs
                show` then says aborted.

                Prints cancelled, signalled (it was running) or finished (it was done already).

                Examples:
                  chime jobs abort 3-1-s4096
                  chime jobs abort 3-0-r17 --reason "customer cancelled the order"
                """)
        @OptionGroup var broker: BrokerAddress
        @Argument(help: "Message id, as printed by `chime publish`.") var id: String
        @Option(name: .long, help: "Why: kept in the job's status.") var reason = "aborted from the command line"

        func run() async throws {
            guard let parsed = WireMessageID(text: id) else { throw ValidationError("'\(id)' is not a message id (they look like 3-1-s4096)") }
            let outcome = try await withBroker(broker, name: "chime-jobs") { try await $0.abort(parsed, reason: reason) }
            switch outcome {
            case .cancelled: print("\(id): cancelled (it had not run; it will not)")
            case .signalled: print("\(id): signalled (it was running; its worker cancels it)")
            case .finished: print("\(id): finished already; nothing to abort")
            }
        }
    }
}

struct CompleteCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "complete",
        abstract: "Complete a parked job's callback: the job runs again with BODY.",
        discussion: """
            A job that awaits a callback (a manual approval, a webhook) was given a token when it
            parked. Completing it delivers the job again at once, with BODY (or stdin with -)
            as the callback's payload, at most 64 KiB. Exactly once: a second completion, or
            one after the job's timeout, fails with "callback closed" (exit status 1).

            Examples:
              chime complete 3-1-s8191.1764950400000.9f86d081884c7d65 approved
              echo '{"approved":true}' | chime complete 3-1-s8191.1764950400000.9f86d081884c7d65 -
            """)
    @OptionGroup var broker: BrokerAddress
    @Argument(help: "The callback's token (<id>.<due ms>.<16 hex digits>).") var token: String
    @Argument(help: "The payload; - reads stdin; none: empty.") var body: String?

    func run() async throws {
        let payload: [UInt8] =
            switch body {
            case nil: []
            case "-": Array(FileHandle.standardInput.readDataToEndOfFile())
            case let text?: Array(text.utf8)
            }
        try await withBroker(broker, name: "chime-complete") { try await $0.complete(callback: token, payload: payload) }
        print("\(token): completed")
    }
}

/// `3-1-s4096 in mailers: running (attempt 2, member 77…, lease ends in 21.3 s)`.
func jobStatusLine(_ id: String, _ s: WireJobStatus, now: Int64) -> String {
    let place = s.group.map { "\(id) in \($0)" } ?? id
    let detail: String
    switch s.state {
    case .scheduled(let dueAt): detail = " (due \(isoTime(dueAt)), \(relative(dueAt, now: now)))"
    case .running(let member, let attempt, let deadline): detail = " (attempt \(attempt), member \(member), lease ends \(relative(deadline, now: now)))"
    case .retrying(let next, let attempts, let error):
        let when = next.map { "next attempt \(relative($0, now: now))" } ?? "next attempt due now"
        detail = " (\(attempts) attempt(s) so far, \(when)\(error.map { ", last error: \($0)" } ?? ""))"
    case .dead(let reason, let attempts): detail = " (after \(attempts) attempt(s): \(reason))"
    case .aborted(let whileRunning, let reason): detail = " (\(whileRunning ? "while running" : "before it ran"): \(reason))"
    case .waiting(let until, let callback): detail = " (\(callback ? "times out" : "runs again") \(relative(until, now: now)))"
    case .ready, .succeeded, .finished, .cancelled: detail = ""
    }
    return "\(place): \(s.state.name)\(detail)"
}

func jobStatusJSON(_ id: String, _ s: WireJobStatus) -> String {
    var o: [String: Any] = ["id": id, "state": s.state.name]
    if let g = s.group { o["group"] = g }
    switch s.state {
    case .scheduled(let dueAt): o["dueAt"] = dueAt
    case .running(let member, let attempt, let deadline):
        o["member"] = member
        o["attempt"] = attempt
        o["leaseDeadline"] = deadline
    case .retrying(let next, let attempts, let error):
        if let next { o["nextAttemptAt"] = next }
        o["attempts"] = attempts
        if let error { o["lastError"] = error }
    case .dead(let reason, let attempts):
        o["reason"] = reason
        o["attempts"] = attempts
    case .aborted(let whileRunning, let reason):
        o["whileRunning"] = whileRunning
        o["reason"] = reason
    case .waiting(let until, _): o["until"] = until
    case .ready, .succeeded, .finished, .cancelled: break
    }
    let data = try! JSONSerialization.data(withJSONObject: o, options: [.sortedKeys])
    return String(decoding: data, as: UTF8.self)
}
