import ArgumentParser
import ChimeClient
import ChimeProtocol
import Foundation

// `chime jobs show ID`: where a job (any message) stands, by the id its publish printed.

struct JobsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "jobs",
        abstract: "Where jobs stand, by the ids `chime publish` printed.",
        subcommands: [Show.self],
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
    case .ready, .succeeded, .finished, .cancelled: break
    }
    let data = try! JSONSerialization.data(withJSONObject: o, options: [.sortedKeys])
    return String(decoding: data, as: UTF8.self)
}
