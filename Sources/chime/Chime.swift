import ArgumentParser

@main
struct Chime: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "chime",
        abstract: "Chime: a file-backed message broker with scheduled delivery.",
        discussion: """
            Messages live in append-only segment files (CRC-32C on every batch, optional LZ4). \
            Start the broker with `chime serve`; look inside its files with `chime inspect`.
            """,
        subcommands: [Serve.self, PublishCommand.self, ConsumeCommand.self, Inspect.self]
    )
}
