import ChimeTestSupport
import Foundation
import Testing

/// The command lines of README.md, read from the README itself and run against a real
/// `chime serve`, so that the examples cannot drift from the program: every `chime …`
/// line of its shell blocks runs (a synopsis with `[…]`, `serve`, `bench` and the TLS
/// example aside), and the printed output the README shows has the shape it shows.
@Suite struct ReadmeCommandLineTests {
    /// README.md, found from this file's place in the repository.
    static func readme() throws -> String {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        return try String(contentsOf: root.appendingPathComponent("README.md"), encoding: .utf8)
    }

    /// Every line of a ```sh block, in order, with its trailing comment removed.
    static func shellLines(_ readme: String) -> [String] {
        var out: [String] = []
        var inBlock = false
        for line in readme.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix("```") {
                inBlock = !inBlock && line == "```sh"
                continue
            }
            guard inBlock else { continue }
            let command = line.components(separatedBy: "  #").first!.trimmingCharacters(in: .whitespaces)
            if !command.isEmpty && !command.hasPrefix("#") { out.append(command) }
        }
        return out
    }

    /// Splits a command line into arguments: whitespace outside single quotes.
    static func arguments(_ line: String) -> [String] {
        var out: [String] = []
        var current = ""
        var quoted = false
        var started = false
        for c in line {
            if c == "'" {
                quoted.toggle()
                started = true
            } else if c == " " && !quoted {
                if started { out.append(current) }
                current = ""
                started = false
            } else {
                current.append(c)
                started = true
            }
        }
        if started { out.append(current) }
        return out
    }

    @Test func everyCommandLineOfTheReadmeRuns() throws {
        let lines = Self.shellLines(try Self.readme()).filter { $0.contains("chime ") }
        let runnable = lines.filter { line in
            !line.contains("[") && !line.contains("$TOKEN") && !line.hasPrefix("chime serve") && !line.hasPrefix("chime bench")
                && !line.hasPrefix("$")
        }
        #expect(runnable.count >= 15, "the README's command lines were found: \(runnable)")
        let dir = TemporaryDirectory()
        let server = try ServeProcess(data: dir.path + "/data", port: 0)
        defer { server.stop() }
        let chime = builtProduct("chime")
        let at = ["--port", "\(server.port)"]
        var scheduledID: String?
        var lastPublishedID: String?
        for line in runnable {
            var args = Self.arguments(line)
            var input: String? = nil
            if let pipe = args.firstIndex(of: "|") {
                // `tail -f app.log | chime publish …`: lines on standard input instead.
                args = Array(args[(pipe + 1)...])
                input = "first line\nsecond line\n"
            }
            #expect(args.first == "chime", "\(line)")
            args.removeFirst()
            switch args.first {
            case "inspect":
                // The README's paths are relative to the directory holding data/; the topic
                // exists (it was deleted by an earlier example: made again here).
                #expect(try run(chime, ["publish", "--topic", "orders", "x"] + at).status == 0)
                args = args.map { $0.hasPrefix("data/") ? dir.path + "/" + $0 : $0 }
            case "cancel":
                args = ["cancel", try #require(scheduledID, "a scheduled id from the delayed publish")]
            case "jobs" where args.count > 2 && args[1] == "abort":
                args[2] = try #require(lastPublishedID, "an id from the publish before")
            case "consume" where !args.contains("--count"):
                args += ["--count", "1", "--timeout", "10s"]  // "until Ctrl-C"
            default:
                break
            }
            // Commands that read files or make tokens talk to no broker: no address.
            let isLocal = args.first == "inspect" || args.first == "tokens"
            if let i = args.firstIndex(of: "--timeout") { args[i + 1] = "1s" }
            // The broker's address goes before a `--` (what follows is a command to run).
            let address = isLocal ? [] : at
            let full = args.firstIndex(of: "--").map { Array(args[..<$0]) + address + Array(args[$0...]) } ?? args + address
            let result = try run(chime, full, input: input)
            switch line {
            case let l where l.contains("--timeout 30s"):
                // Ten coupons within the timeout: there is one, due in 30 s, so it gives up.
                #expect(result.status == 1, "\(line): \(result.output)")
            default:
                #expect(result.status == 0, "\(line): \(result.output)")
            }
            if args.first == "publish" { lastPublishedID = result.output.split(separator: "\n").last.map(String.init) }
            if line.contains("--delay 30s") {
                scheduledID = result.output.trimmingCharacters(in: .whitespacesAndNewlines)
                #expect(scheduledID?.range(of: #"^\d+-\d+-s\d+$"#, options: .regularExpression) != nil, "\(line) prints a scheduled id")
            }
            if line.hasPrefix("chime publish --topic emails") {
                #expect(result.output.range(of: #"^\d+-\d+-r\d+\n$"#, options: .regularExpression) != nil, "\(line) prints the id")
            }
        }
    }

    /// The `$ chime topics` listing the README shows has the columns `chime topics` prints.
    @Test func theTopicsListingHasTheColumnsTheReadmeShows() throws {
        let readme = try Self.readme()
        let shown = try #require(readme.components(separatedBy: "$ chime topics\n").dropFirst().first?.split(separator: "\n").first)
        let dir = TemporaryDirectory()
        let server = try ServeProcess(data: dir.path, port: 0)
        defer { server.stop() }
        let chime = builtProduct("chime")
        #expect(try run(chime, ["publish", "--topic", "emails", "x", "--port", "\(server.port)"]).status == 0)
        let printed = try run(chime, ["topics", "--port", "\(server.port)"]).output.split(separator: "\n").first ?? ""
        #expect(printed.split(separator: " ") == shown.split(separator: " "), "README: \(shown)\nprinted: \(printed)")
    }
}
