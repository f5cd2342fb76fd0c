import ArgumentParser
import ChimeProtocol
import Foundation

@main
struct Chime: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "chime",
        abstract: "Chime: a file-backed message broker with scheduled delivery.",
        discussion: """
            Messages live in append-only segment files (CRC-32C on every batch, optional LZ4). \
            Start the broker with `chime serve`; publish and consume with `chime publish` and \
            `chime consume`, or look without consuming with `chime peek`; see its state with \
            `chime topics`, `chime groups` and `chime stats`; measure it with `chime bench`; \
            look inside its files with `chime inspect`.

            Errors are one line on standard error, `chime: <what went wrong>`, with exit status \
            1; a mistake in the command line itself also shows its usage, with exit status 64.
            """,
        version: "chime \(ChimeVersion.current)",
        subcommands: [
            Serve.self, PublishCommand.self, ConsumeCommand.self, PeekCommand.self, WorkCommand.self, TopicsCommand.self, GroupsCommand.self, JobsCommand.self, CompleteCommand.self, FlowsCommand.self, SchedulesCommand.self, LocksCommand.self, StatsCommand.self, CancelCommand.self, TokensCommand.self,
            BeanstalkdCommand.self, BenchCommand.self, Inspect.self,
        ]
    )

    /// Runs the command, and reports whatever stops it in one format (see `CommandLineError`).
    static func main() async {
        let arguments = Array(CommandLine.arguments.dropFirst())
        do {
            var command = try parseAsRoot(arguments)
            if var command = command as? AsyncParsableCommand {
                try await command.run()
            } else {
                try command.run()
            }
        } catch {
            let report = CommandLineError.report(error, arguments: arguments)
            guard let report else { exit(withError: error) }  // --help, --version, ExitCode
            FileHandle.standardError.write(Data((report.text + "\n").utf8))
            Foundation.exit(report.status)
        }
    }
}

/// How the command line reports what stopped it: `chime: <what went wrong>[: <cause>]` on
/// one line of standard error and exit status 1 for a failure of the work (the broker is
/// unreachable, a topic does not exist); the message, the command's usage and exit status
/// 64 (EX_USAGE) for a mistake in the command line itself, where an unknown command gets
/// the nearest known one suggested.
enum CommandLineError {
    static let usageStatus: Int32 = 64

    /// nil: not an error to report (help, version, an explicit exit status).
    static func report(_ error: any Error, arguments: [String]) -> (text: String, status: Int32)? {
        if let failure = error as? CommandFailure { return ("chime: \(failure.description)", 1) }
        if error is ExitCode || Chime.exitCode(for: error) == .success { return nil }
        guard Chime.exitCode(for: error) == .validationFailure else { return ("chime: \(error)", 1) }
        // `--delay -5s` reads to the parser as a missing value followed by an option.
        if let i = arguments.firstIndex(of: "--delay"), i + 1 < arguments.count, arguments[i + 1].hasPrefix("-"),
            arguments[i + 1].dropFirst().first?.isNumber == true
        {
            return ("chime: \(negativeDelay(arguments[i + 1]))", usageStatus)
        }
        if let first = arguments.first, !first.hasPrefix("-"), !commandNames.contains(first) {
            let nearest = commandNames.min { distance(first, $0) < distance(first, $1) }!
            let hint = distance(first, nearest) <= max(2, first.count / 3) ? "; did you mean '\(nearest)'?" : ""
            return ("chime: unknown command '\(first)'\(hint)\ncommands: \(commandNames.joined(separator: ", ")); see chime --help", usageStatus)
        }
        let message = Chime.message(for: error)
        let usage = Chime.fullMessage(for: error).components(separatedBy: "\n").filter { $0.hasPrefix("Usage:") || $0.hasPrefix("  See ") }
        let lines = ["chime: \(lowercasedFirst(message))"] + usage.map { $0.trimmingCharacters(in: .whitespaces) }
        return (lines.joined(separator: "\n"), usageStatus)
    }

    static var commandNames: [String] { Chime.configuration.subcommands.map { $0._commandName } }

    private static func lowercasedFirst(_ s: String) -> String {
        guard let f = s.first, f.isUppercase, !(s.dropFirst().first?.isUppercase ?? false) else { return s }
        return f.lowercased() + s.dropFirst()
    }

    /// Edit distance (insertions, deletions, substitutions).
    static func distance(_ a: String, _ b: String) -> Int {
        let a = Array(a), b = Array(b)
        // One row of the table at a time: row[j] is the distance from a prefix of `a` to b[..<j].
        var row = Array(0...b.count)
        for (i, x) in a.enumerated() {
            var diagonal = row[0]
            row[0] = i + 1
            for (j, y) in b.enumerated() {
                let above = row[j + 1]
                row[j + 1] = min(above + 1, row[j] + 1, diagonal + (x == y ? 0 : 1))
                diagonal = above
            }
        }
        return row[b.count]
    }
}
