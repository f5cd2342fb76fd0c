import ArgumentParser
import ChimeBroker
import ChimeProtocol
import ChimeServer
import ChimeStore
import Dispatch
import Foundation
import Logging
import ServiceLifecycle

/// `chime beanstalkd`: Chime in beanstalkd's place, started with beanstalkd's own flags.
struct BeanstalkdCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "beanstalkd",
        abstract: "Serve beanstalkd's protocol, taking beanstalkd's flags: a drop-in beanstalkd.",
        discussion: """
            Speaks beanstalkd 1.12's text protocol, so that its clients in every language \
            work unchanged, with Chime underneath: every put, delete, release, bury and kick \
            is journaled in a Chime topic and synced before its answer (unless -f or -F say \
            otherwise), so a SIGKILL loses nothing that was answered; delays and TTRs are kept \
            to the millisecond. Where it differs from beanstalkd is in the README, "Coming \
            from beanstalkd".

            Without -b the jobs live in a temporary directory removed when it stops, as \
            beanstalkd without a binlog keeps nothing. SIGTERM or Ctrl-C stops it cleanly; \
            SIGUSR1 enters drain mode (puts are answered DRAINING).

            Examples:
              chime beanstalkd                              # 0.0.0.0:11300, nothing kept
              chime beanstalkd -l 127.0.0.1 -p 11300 -b /var/lib/beanstalkd
              chime beanstalkd -l unix:/run/beanstalkd.sock -b ./jobs -z 1048576
            """
    )

    @Option(name: .customShort("l"), help: "Listen on this address, or on a Unix socket with unix:PATH (default 0.0.0.0).")
    var address = "0.0.0.0"

    @Option(name: .customShort("p"), help: "Listen on this TCP port (default 11300; 0 picks a free one).")
    var port = 11_300

    @Option(name: .customShort("b"), help: "Keep the jobs in this directory, made if missing (a Chime data directory); without it, in a temporary one removed at exit.")
    var directory: String?

    @Option(name: .customShort("z"), help: "The largest job in bytes (default 65535; at most \(BeanstalkListener.Options.maxJobBytesLimit)).")
    var maxJobBytes = 65_535

    @Option(name: .customShort("f"), help: "Sync at most every this many ms instead of before each answer (beanstalkd's default is 50; Chime's is to sync before answering: -f 0).")
    var fsyncMilliseconds: Int?

    @Flag(name: .customShort("F"), help: "Never sync: the system writes the jobs when it will (a crash of the machine can lose answered jobs).")
    var neverSync = false

    @Option(name: .customShort("s"), help: "beanstalkd's binlog file size: accepted and ignored (Chime's segments are its own).")
    var binlogSize: Int?

    @Option(name: .customShort("u"), help: "beanstalkd's user to become: not supported; run it as that user instead.")
    var user: String?

    @Flag(name: .customShort("c"), help: "beanstalkd's binlog compaction: accepted and ignored.")
    var compact = false

    @Flag(name: .customShort("n"), help: "beanstalkd's no-compaction: accepted and ignored.")
    var noCompact = false

    @Flag(name: .customShort("V"), help: "More logging (repeat for more).")
    var verbosity: Int

    @Flag(name: .customShort("v"), help: "Print the version and exit.")
    var version = false

    func validate() throws {
        guard (0...65_535).contains(port) else { throw ValidationError("the port (-p) must be between 0 and 65535, not \(port)") }
        guard (0...BeanstalkListener.Options.maxJobBytesLimit).contains(maxJobBytes) else {
            throw ValidationError("the largest job (-z) must be 0...\(BeanstalkListener.Options.maxJobBytesLimit) bytes, not \(maxJobBytes)")
        }
        if let f = fsyncMilliseconds, f < 0 { throw ValidationError("-f takes a number of milliseconds, 0 or more, not \(f)") }
        if neverSync && fsyncMilliseconds != nil { throw ValidationError("-f and -F go one or the other") }
        if user != nil { throw ValidationError("-u is not supported: start chime beanstalkd as the user it should run as") }
        if address.hasPrefix("unix:") && address.count == 5 { throw ValidationError("-l unix: needs a path, as in unix:/run/beanstalkd.sock") }
    }

    var durability: DurabilityPolicy {
        if neverSync { return .never }
        if let f = fsyncMilliseconds, f > 0 { return .interval(milliseconds: f) }
        return .always
    }

    func run() async throws {
        if version {
            print("beanstalkd 1.12 (chime \(ChimeVersion.current))")
            return
        }
        var logger = Logger(label: "chime")
        logger.logLevel = verbosity >= 2 ? .debug : verbosity == 1 ? .info : .notice
        let temporary = directory == nil
        let data = try directory ?? Self.makeTemporaryDirectory()
        defer { if temporary { try? FileManager.default.removeItem(atPath: data) } }

        let options = BrokerOptions(directory: data, autoCreateTopics: false, durability: durability)
        let broker = try await Broker.open(options, logger: logger)
        let listenAddress: BeanstalkListener.Address =
            address.hasPrefix("unix:") ? .unix(path: String(address.dropFirst(5))) : .tcp(host: address, port: port)
        let listener: BeanstalkListener
        do {
            listener = try await BeanstalkListener.start(broker: broker, options: .init(address: listenAddress, maxJobBytes: maxJobBytes), logger: logger)
        } catch {
            _ = await broker.close()
            if "\(error)".contains("Address already in use") {
                throw CommandFailure(description: "\(listenAddress) is already in use (another beanstalkd? choose a port with -p)")
            }
            throw CommandFailure(description: "cannot listen on \(listenAddress): \(error)")
        }
        let shown: String
        if case .tcp(let host, _) = listenAddress { shown = "\(host):\(listener.port)" } else { shown = "\(listenAddress)" }
        print("chime \(ChimeVersion.current): beanstalkd protocol on \(shown), jobs in \(temporary ? "a temporary directory (kept until exit)" : data), durability \(durability)")
        fflush(nil)
        BeanstalkSignals.drainOnSIGUSR1(listener)
        let group = ServiceGroup(
            configuration: .init(
                services: [.init(service: BrokerService(broker)), .init(service: listener)], gracefulShutdownSignals: [.sigterm, .sigint],
                cancellationSignals: [.sigquit], logger: logger))
        do {
            try await group.run()
        } catch {
            throw CommandFailure(description: "chime beanstalkd stopped: \(error)")
        }
    }

    private static func makeTemporaryDirectory() throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("chime-beanstalkd-\(getpid())-\(UInt32.random(in: 0...UInt32.max))").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }
}

/// SIGUSR1 puts a beanstalkd listener in drain mode, as it does beanstalkd.
enum BeanstalkSignals {
    nonisolated(unsafe) private static var sources: [any DispatchSourceSignal] = []

    static func drainOnSIGUSR1(_ listener: BeanstalkListener) {
        signal(SIGUSR1, SIG_IGN)
        let source = DispatchSource.makeSignalSource(signal: SIGUSR1, queue: .global())
        source.setEventHandler { Task { await listener.drain() } }
        source.resume()
        sources.append(source)
    }
}
