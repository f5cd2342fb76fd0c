import ChimeBroker
import ChimeProtocol
import ChimeStore
import Logging
import Synchronization
import Testing

@testable import ChimeServer

/// Keeps the messages logged through it.
private final class CapturedLines: Sendable {
    let lines = Mutex<[String]>([])

    var logger: Logger {
        Logger(label: "test") { _ in Handler(lines: self) }
    }

    struct Handler: LogHandler {
        let lines: CapturedLines
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        func log(event: LogEvent) {
            let cause = event.metadata?["cause"].map { " \($0)" } ?? ""
            lines.lines.withLock { $0.append("\(event.level) \(event.message)\(cause)") }
        }
    }
}

/// Refusals that are the server's trouble are logged once each, with their cause; the
/// client's own mistakes are not logged.
@Suite struct TroubleLogTests {
    @Test func aStorageRefusalIsLoggedOnceWithItsCause() {
        let captured = CapturedLines()
        let troubles = TroubleLog(logger: captured.logger)
        let full = ErrorCodes.reply(BrokerError(.storage, "appending to jobs/0: noSpace"))
        for _ in 0..<3 { troubles.record(full, request: "publish") }
        troubles.record(ErrorCodes.reply(BrokerError(.invalidArgument, "bad delay")), request: "publish")
        troubles.record(ErrorCodes.reply(BrokerError(.unknownTopic, "no such topic")), request: "fetch")
        #expect(captured.lines.withLock { $0 } == ["error request refused appending to jobs/0: noSpace"])
        troubles.record(ErrorCodes.reply(CancellationError()), request: "fetch")
        #expect(captured.lines.withLock { $0.count } == 2, "an internal error is logged too")
    }

    @Test func aStoreErrorThatReachesTheWireIsAStorageRefusalNotAnInternalError() {
        let reply = ErrorCodes.reply(StoreError(.io, "fsync directory failed", file: "/data/topics/x"))
        #expect(reply.wireCode == .storage)
        #expect(reply.message.contains("fsync directory failed"))
    }

    @Test func rememberedCausesAreBounded() {
        let captured = CapturedLines()
        let troubles = TroubleLog(logger: captured.logger)
        for n in 0..<(TroubleLog.limit + 10) { troubles.record(ErrorCodes.reply(BrokerError(.storage, "cause \(n)")), request: "publish") }
        troubles.record(ErrorCodes.reply(BrokerError(.storage, "cause 0")), request: "publish")
        #expect(captured.lines.withLock { $0.count } == TroubleLog.limit + 11, "forgotten after the limit, so logged again")
    }
}
