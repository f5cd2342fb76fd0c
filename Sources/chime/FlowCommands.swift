import ArgumentParser
import ChimeClient
import ChimeProtocol
import Foundation

// `chime flows show FLOW`, `chime flows abort FLOW`: flows (split / join) by the name a
// spawn answered (`3-0-f17`).

struct FlowsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "flows",
        abstract: "Flows (a job split into children, joined by a continuation): status, outcomes, abort.",
        subcommands: [Show.self, Abort.self],
        defaultSubcommand: Show.self)

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "How a flow stands: children succeeded, failed and pending; with --outcomes, each child's.",
            discussion: """
                A flow's name is what its spawn answered; a continuation gets it as
                CHIME_FLOW_DONE (chime work) or JobContext.continues, a child as CHIME_FLOW.

                Examples:
                  chime flows show 3-0-f17
                  chime flows show 3-0-f17 --outcomes --json
                """)
        @OptionGroup var broker: BrokerAddress
        @Argument(help: "The flow (<topic id>-<partition>-f<id>).") var flow: String
        @Flag(name: .long, help: "Also each child's outcome: index, succeeded or failed, result or error.") var outcomes = false
        @Flag(name: .long, help: "JSON: one object for the flow, then one per outcome, a line each.") var json = false

        func run() async throws {
            let (status, list) = try await withBroker(broker, name: "chime-flows") { c in
                (try await c.flow(flow), outcomes ? try await c.flowOutcomes(flow) : [])
            }
            let state = ["running", "done", "aborted"][Int(status.state)]
            let pending = Int(status.children) - Int(status.succeeded) - Int(status.failed)
            if json {
                var o: [String: Any] = [
                    "flow": flow, "state": state, "children": status.children, "succeeded": status.succeeded, "failed": status.failed,
                    "pending": pending, "policy": status.policy == 1 ? "fail-fast" : "wait-for-all",
                ]
                if let c = status.continuation { o["continuation"] = c.text }
                print(jsonLine(o))
                for x in list.sorted(by: { $0.index < $1.index }) {
                    print(jsonLine(["index": x.index, "succeeded": x.succeeded, "detail": String(decoding: x.detail, as: UTF8.self)]))
                }
                return
            }
            let next = status.continuation.map { ", continuation \($0.text)" } ?? ""
            print("\(flow): \(state) — \(status.children) children: \(status.succeeded) succeeded, \(status.failed) failed, \(pending) pending\(next)")
            for x in list.sorted(by: { $0.index < $1.index }) {
                print("  \(x.index)\t\(x.succeeded ? "ok" : "failed")\t\(String(decoding: x.detail, as: UTF8.self))")
            }
        }
    }

    struct Abort: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Abort a flow: no continuation, and its children that have not ended are aborted.",
            discussion: """
                Examples:
                  chime flows abort 3-0-f17 --reason "report not needed"
                """)
        @OptionGroup var broker: BrokerAddress
        @Argument(help: "The flow (<topic id>-<partition>-f<id>).") var flow: String
        @Option(name: .long, help: "Why: kept in each child's status.") var reason = "flow aborted from the command line"

        func run() async throws {
            let n = try await withBroker(broker, name: "chime-flows") { try await $0.abortFlow(flow, reason: reason) }
            print("\(flow): aborted (\(n) children aborted)")
        }
    }
}

private func jsonLine(_ o: [String: Any]) -> String {
    String(decoding: try! JSONSerialization.data(withJSONObject: o, options: [.sortedKeys]), as: UTF8.self)
}
