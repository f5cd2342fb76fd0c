import ArgumentParser

@main
struct Chime: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "chime",
        abstract: "Chime: a file-backed message broker with scheduled delivery.",
        discussion: """
            Messages live in append-only segment files (CRC-32C on every batch, optional LZ4). \
            Start the broker with `chime serve`; publish and consume with `chime publish` and \
            `chime consume`; see its state with `chime topics`, `chime groups` and `chime stats`; \
            measure it with `chime bench`; look inside its files with `chime inspect`.
            """,
        subcommands: [
            Serve.self, PublishCommand.self, ConsumeCommand.self, TopicsCommand.self, GroupsCommand.self, StatsCommand.self, CancelCommand.self,
            BenchCommand.self, Inspect.self,
        ]
    )
}
