import ArgumentParser
import ChimeClient
import ChimeProtocol
import Foundation

#if canImport(Glibc)
import Glibc
#endif

// `chime locks …`: the broker's locks with fencing tokens — list, show, force a release,
// and run a command holding one (like flock(1), across machines).

struct LocksCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "locks",
        abstract: "Locks with fencing tokens, held on the broker.",
        discussion: """
            A lock is granted to one holder at a time, for a time-to-live it renews; a holder
            that stops renewing loses it at the expiry, and the next waiter (first come, first
            served) has it at once. Every grant has a fencing token, strictly increasing per
            name across broker restarts: pass it along with your writes so that storage can
            refuse a holder that lost the lock.

            Examples:
              chime locks run nightly-report --ttl 30s -- ./build-report.sh
              chime locks
              chime locks show nightly-report
              chime locks release nightly-report --force
            """,
        subcommands: [List.self, Show.self, Run.self, Release.self],
        defaultSubcommand: List.self)

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "list", abstract: "Every lock held or waited for: holder, token, expiry, waiters.")
        @OptionGroup var broker: BrokerAddress
        @Flag(name: .long, help: "One JSON object per lock and line.") var json = false

        func run() async throws {
            let all = try await withBroker(broker, name: "chime-locks") { try await $0.locks() }
            if json {
                for l in all { print(lockJSON(l)) }
                return
            }
            guard !all.isEmpty else {
                print("no locks held or waited for")
                return
            }
            let now = nowMilliseconds()
            let rows = all.map { l in
                [l.name, l.holder ?? "-", l.token == 0 ? "-" : "\(l.token)", l.token == 0 ? "-" : relative(l.expiresAt, now: now), "\(l.waiters)"]
            }
            let header = ["NAME", "HOLDER", "TOKEN", "EXPIRES", "WAITERS"]
            for line in Format.table(header, rows) { print(line) }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "One lock: its holder, token, expiry and waiters.")
        @OptionGroup var broker: BrokerAddress
        @Argument(help: "The lock's name.") var name: String
        @Flag(name: .long, help: "Print it as JSON.") var json = false

        func run() async throws {
            let l = try await withBroker(broker, name: "chime-locks") { try await $0.inspectLock(name) }
            if json {
                print(lockJSON(l))
                return
            }
            print("lock:      \(l.name)")
            if l.token == 0 {
                print("holder:    - (free)")
            } else {
                print("holder:    \(l.holder ?? "-")")
                print("token:     \(l.token)")
                print("expires:   \(isoTime(l.expiresAt)) (\(relative(l.expiresAt, now: nowMilliseconds())))")
            }
            print("waiters:   \(l.waiters)")
            print("partition: \(l.partition) of __locks")
        }
    }

    struct Release: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Release a lock whoever holds it (needs --force).",
            discussion: """
                The holder may still be working: from now on its renewals fail and writes fenced
                with its token are refused, and the next waiter has the lock at once. Use it for
                a holder you know is gone and whose TTL is long.
                """)
        @OptionGroup var broker: BrokerAddress
        @Argument(help: "The lock's name.") var name: String
        @Flag(name: .long, help: "Yes, release it from whoever holds it.") var force = false

        func validate() throws {
            guard force else { throw ValidationError("releasing a lock someone else holds needs --force (its holder may still be working)") }
        }

        func run() async throws {
            let before = try await withBroker(broker, name: "chime-locks") { client in
                let held = try await client.inspectLock(name)
                try await client.forceRelease(name)
                return held
            }
            FileHandle.standardError.write(
                Data("chime: warning: released \(name) from \(before.holder ?? "its holder") (token \(before.token)); its fenced writes are refused from now on\n".utf8))
        }
    }

    struct Run: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run a command holding a lock (renewed while it runs).",
            discussion: """
                Waits up to --wait for the lock, runs the command with CHIME_LOCK_NAME and
                CHIME_LOCK_TOKEN in its environment, renews the lock every third of --ttl, and
                releases it when the command ends; exits with the command's status. If the lock
                is lost (a renewal refused, or none confirmed in time) the command and what it
                started are killed and chime exits 1. With --wait 0 a held lock exits 75
                (EX_TEMPFAIL) at once: the skip-locked pattern for cron jobs.

                Examples:
                  chime locks run nightly-report --ttl 30s -- ./build-report.sh
                  chime locks run db-migrate --wait 10m -- ./migrate up
                  chime locks run every-minute --wait 0 -- ./sweep.sh
                """)
        @OptionGroup var broker: BrokerAddress
        @Argument(help: "The lock's name.") var name: String
        @Option(name: .long, help: "Time-to-live of the grant, renewed every third of it (like 10s, 1m).") var ttl = "30s"
        @Option(name: .long, help: "How long to wait for the lock (0: not at all).") var wait = "30s"
        @Argument(parsing: .postTerminator, help: "The command and its arguments, after --.") var command: [String] = []

        func validate() throws {
            guard !command.isEmpty else { throw ValidationError("give the command to run after --, like: chime locks run NAME -- ./job.sh") }
            guard let t = parseDuration(ttl), t > 0 else { throw ValidationError("--ttl '\(ttl)' is not a positive duration (like 10s, 1m)") }
            guard parseDuration(wait) != nil else { throw ValidationError("--wait '\(wait)' is not a duration (like 0, 30s, 10m)") }
        }

        func run() async throws {
            let ttl = Duration.milliseconds(parseDuration(self.ttl)!)
            let wait = Duration.milliseconds(parseDuration(self.wait)!)
            var host = [CChar](repeating: 0, count: 256)
            gethostname(&host, host.count)
            let holder = "\(String(cString: host))/\(getpid())"
            let client = try broker.client(name: holder)
            let outcome: ShellJob.Outcome
            do {
                outcome = try await client.withLock(name, ttl: ttl, wait: wait) { lease in
                    let job = try ShellJob(
                        command: command[0], arguments: Array(command.dropFirst()),
                        environment: ["CHIME_LOCK_NAME": name, "CHIME_LOCK_TOKEN": "\(lease.token)"])
                    return await withTaskCancellationHandler {
                        await job.finish(input: []) { line, isError in
                            if isError { FileHandle.standardError.write(Data((line + "\n").utf8)) } else { print(line) }
                        }
                    } onCancel: {
                        job.kill()
                    }
                }
            } catch let error as ClientError where error.wireCode == .lockHeld && wait == .zero {
                FileHandle.standardError.write(Data("chime: \(error.message); not run\n".utf8))
                await client.close()
                throw ExitCode(75)
            } catch {
                await client.close()
                throw clientFailure(error)
            }
            await client.close()
            if let status = outcome.status, status != 0 { throw ExitCode(status) }
            if let signal = outcome.signal { throw CommandFailure(description: "the command was killed by signal \(signal)") }
        }
    }
}

/// A lock as one line of JSON: holder, token and expiry only when held.
func lockJSON(_ l: WireLock) -> String {
    struct Line: Encodable {
        var name: String
        var holder: String?
        var token: Int64?
        var expiresAt: Int64?
        var waiters: UInt32
        var partition: UInt32
    }
    let held = l.token != 0
    let line = Line(
        name: l.name, holder: held ? l.holder ?? "" : nil, token: held ? l.token : nil, expiresAt: held ? l.expiresAt : nil, waiters: l.waiters,
        partition: l.partition)
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    return String(decoding: (try? encoder.encode(line)) ?? Data("{}".utf8), as: UTF8.self)
}
