import ChimeBroker
import ChimeClient
import ChimeProtocol
import ChimeServer
import ChimeTestSupport
import Foundation
import Glibc
import Logging
import Testing

/// TLS between the real client and a real server on 127.0.0.1, with the test authority in
/// Fixtures/ (Fixtures/README.md says how it was made).
@Suite struct TLSTests {
    /// A file of the Fixtures folder, copied beside the test binary as a resource.
    static func fixture(_ name: String) -> String {
        Bundle.module.path(forResource: "Fixtures", ofType: nil)! + "/" + name
    }

    static let serverTLS = ServerOptions.TLS(certificateChainFile: fixture("server.pem"), privateKeyFile: fixture("server.key"))

    private var logger: Logger {
        var l = Logger(label: "tls-test")
        l.logLevel = .critical
        return l
    }

    private func tlsClient(_ port: Int, trusting ca: String = fixture("ca.pem"), serverName: String? = nil, attempts: Int = 5) -> ChimeClient {
        ChimeClient(
            ClientOptions(port: port, connectAttempts: attempts, tls: ClientTLS(trustedCertificatesFile: ca, serverName: serverName)), logger: logger)
    }

    @Test func publishAndConsumeOverTLS() async throws {
        let f = try await ServerFixture(ServerOptions(port: 0, tls: Self.serverTLS))
        let client = tlsClient(f.server.port)
        let id = try await client.publish(Array("over tls".utf8), to: "secure", key: Array("k".utf8))
        for try await m in client.consume(group: "g", topics: ["secure"], prefetch: 1) {
            #expect(String(decoding: m.body, as: UTF8.self) == "over tls")
            #expect(m.delivery.id == id)
            try await m.ack()
            break
        }
        await client.close()
        await f.shutdown()
    }

    @Test func theCertificateNameIsChecked() async throws {
        // NIOSSL accepts a certificate whose IP entry is the address connected to, whatever
        // the name asked for; the certificate carries 127.0.0.1, so serve on 127.0.0.2 (also
        // loopback on Linux) to see the name checks alone.
        let f = try await ServerFixture(ServerOptions(host: "127.0.0.2", port: 0, tls: Self.serverTLS))
        let client = { (name: String?) in
            ChimeClient(ClientOptions(host: "127.0.0.2", port: f.server.port, tls: ClientTLS(trustedCertificatesFile: Self.fixture("ca.pem"), serverName: name)), logger: logger)
        }
        // The certificate names localhost.
        let byName = client("localhost")
        #expect(try await byName.topics().isEmpty)
        await byName.close()
        // A name it does not carry, or an address it does not carry, is refused however
        // trusted the authority.
        for name in ["broker.example.com", nil] {
            let wrong = client(name)
            do {
                _ = try await wrong.topics()
                Issue.record("a certificate without \(name ?? "127.0.0.2") was accepted")
            } catch let e as ClientTLSError {
                #expect(e.code == .untrusted)
            }
            await wrong.close()
        }
        await f.shutdown()
    }

    @Test func aPlainClientFailsCleanlyAndTLSClientsAreStillServed() async throws {
        let f = try await ServerFixture(ServerOptions(port: 0, tls: Self.serverTLS))
        // The real client without TLS: its hello is no TLS handshake, the server hangs up.
        let plain = ChimeClient(ClientOptions(port: f.server.port, connectAttempts: 1), logger: logger)
        do {
            _ = try await plain.topics()
            Issue.record("a plain-TCP client was served by a TLS server")
        } catch let e as ClientError {
            #expect(e.isDisconnected)
        }
        await plain.close()
        // Raw frames, then garbage: each connection is closed, nothing is answered in clear.
        let raw = try await RawClient(port: f.server.port)
        await raw.send(.hello, Hello(client: "plain"))
        #expect(await raw.readFrame() == nil, "no frame comes back over plain TCP")
        let garbage = try await RawClient(port: f.server.port)
        await garbage.send(Array(repeating: 0x16, count: 64) + Array(0..<200))
        #expect(await garbage.isClosedByServer())
        // The server goes on serving TLS clients.
        let good = tlsClient(f.server.port)
        try await good.createTopic("still-here")
        #expect(try await good.topics().map(\.name) == ["still-here"])
        await good.close()
        await f.shutdown()
    }

    @Test func aClientTrustingAnotherAuthorityIsRefusedWithAClearError() async throws {
        let f = try await ServerFixture(ServerOptions(port: 0, tls: Self.serverTLS))
        let doubting = tlsClient(f.server.port, trusting: Self.fixture("other-ca.pem"))
        do {
            _ = try await doubting.topics()
            Issue.record("a server certificate from an untrusted authority was accepted")
        } catch let e as ClientTLSError {
            #expect(e.code == .untrusted)
            #expect(e.message.contains("not trusted") && e.message.contains("127.0.0.1:\(f.server.port)"))
        }
        await doubting.close()
        // Trusting the system's roots only is no better for a private authority.
        let system = ChimeClient(ClientOptions(port: f.server.port, tls: ClientTLS()), logger: logger)
        await #expect(throws: ClientTLSError.self) { try await system.topics() }
        await system.close()
        // A TLS client against a plain server gets a TLS error, not a hang.
        let plainServer = try await ServerFixture()
        let confused = tlsClient(plainServer.server.port)
        do {
            _ = try await confused.topics()
            Issue.record("a TLS client talked to a plain server")
        } catch let e as ClientTLSError {
            #expect(e.code == .handshakeFailed)
        }
        await confused.close()
        await plainServer.shutdown()
        await f.shutdown()
    }

    @Test func badTrustFilesAreTypedErrorsNamingTheFile() async throws {
        let dir = TemporaryDirectory("chime-tls")
        try Data("not a certificate\n".utf8).write(to: URL(fileURLWithPath: dir.file("junk.pem")))
        let cases: [(String, ClientTLSError.Code)] = [
            (dir.file("absent.pem"), .missingFile), (dir.path, .unreadableFile), (dir.file("junk.pem"), .notPEM),
        ]
        for (path, code) in cases {
            // Port 1: nothing listens there, and nothing is tried: the file fails first.
            let client = tlsClient(1, trusting: path)
            do {
                _ = try await client.topics()
                Issue.record("\(path) was accepted as trust roots")
            } catch let e as ClientTLSError {
                #expect(e.code == code)
                #expect(e.message.contains(path))
            }
            await client.close()
        }
    }

    @Test func badServerFilesStopTheStartWithTypedErrors() async throws {
        let dir = TemporaryDirectory("chime-tls")
        try Data("-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n".utf8).write(to: URL(fileURLWithPath: dir.file("broken.pem")))
        try Data("hello\n".utf8).write(to: URL(fileURLWithPath: dir.file("junk.pem")))
        let broker = try await Broker.open(BrokerOptions(directory: dir.file("data"), durability: .never), logger: logger)
        let cert = Self.fixture("server.pem"), key = Self.fixture("server.key")
        let cases: [(ServerOptions.TLS, ServerTLSError.Code, String)] = [
            (.init(certificateChainFile: dir.file("absent.pem"), privateKeyFile: key), .missingFile, dir.file("absent.pem")),
            (.init(certificateChainFile: cert, privateKeyFile: dir.file("absent.key")), .missingFile, dir.file("absent.key")),
            (.init(certificateChainFile: dir.path, privateKeyFile: key), .unreadableFile, dir.path),
            (.init(certificateChainFile: dir.file("junk.pem"), privateKeyFile: key), .notPEM, dir.file("junk.pem")),
            (.init(certificateChainFile: dir.file("broken.pem"), privateKeyFile: key), .notPEM, dir.file("broken.pem")),
            (.init(certificateChainFile: cert, privateKeyFile: cert), .notPEM, cert),
            // The authority's certificate with the server's key: both parse, they do not match.
            (.init(certificateChainFile: Self.fixture("ca.pem"), privateKeyFile: key), .unusable, key),
        ]
        for (tls, code, path) in cases {
            do {
                let server = try await ChimeServer.start(broker: broker, options: ServerOptions(port: 0, tls: tls), logger: logger)
                Issue.record("the server started with \(tls)")
                await server.stop()
            } catch let e as ServerTLSError {
                #expect(e.code == code, "\(tls)")
                #expect(e.path == path)
                #expect(e.message.contains(path))
            }
        }
        await broker.close()
    }

    @Test func theCommandLineServesAndSpeaksTLS() async throws {
        let dir = TemporaryDirectory("chime-tls-cli")
        let chime = builtProduct("chime")
        // A missing key file: the serve command names it and exits non-zero.
        let missing = try runCapturing(chime, ["serve", "--data", dir.file("d0"), "--port", "0", "--admin-port", "0", "--tls-cert", Self.fixture("server.pem"), "--tls-key", dir.file("nope.key")])
        #expect(missing.status != 0)
        #expect(missing.error.contains(dir.file("nope.key")))
        let half = try runCapturing(chime, ["serve", "--data", dir.file("d1"), "--port", "0", "--admin-port", "0", "--tls-cert", Self.fixture("server.pem")])
        #expect(half.status != 0 && half.error.contains("--tls-key"))

        let server = try ServeProcess(data: dir.file("data"), port: 0, extra: ["--tls-cert", Self.fixture("server.pem"), "--tls-key", Self.fixture("server.key")])
        defer { server.stop() }
        #expect(server.banner.contains("over TLS"))
        let port = server.port
        #expect(port > 0)
        let at = ["--port", "\(port)"]

        let published = try runCapturing(chime, ["publish", "--topic", "t", "--tls-ca", Self.fixture("ca.pem"), "hello"] + at)
        #expect(published.status == 0, "\(published.error)")
        // The authority from the environment turns TLS on as well.
        let consumed = try runCapturing(chime, ["consume", "--topic", "t", "--group", "g", "--count", "1", "--timeout", "10s"] + at, environment: ["CHIME_TLS_CA": Self.fixture("ca.pem")])
        #expect(consumed.status == 0, "\(consumed.error)")
        #expect(consumed.output.contains("hello"))
        let untrusted = try runCapturing(chime, ["publish", "--topic", "t", "--tls-ca", Self.fixture("other-ca.pem"), "x"] + at)
        #expect(untrusted.status == 1)
        #expect(untrusted.error.contains("TLS") && untrusted.error.contains("not trusted") && untrusted.error.contains("--tls-ca"))
        let plain = try runCapturing(chime, ["publish", "--topic", "t", "x"] + at)
        #expect(plain.status == 1)
        #expect(plain.error.contains("cannot reach the broker"))
    }
}

/// Runs a program to completion: exit status, standard output and standard error (the
/// server it talks to is another process, so blocking here holds up no server work).
private func runCapturing(_ executable: String, _ arguments: [String], environment: [String: String] = [:]) throws -> (status: Int32, output: String, error: String) {
    let dir = TemporaryDirectory("chime-tls-run")
    // Standard error goes to a file: no second pipe to drain while standard output is read.
    _ = FileManager.default.createFile(atPath: dir.file("stderr"), contents: nil)
    let errorFile = try FileHandle(forWritingTo: URL(fileURLWithPath: dir.file("stderr")))
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
    let out = Pipe()
    process.standardOutput = out
    process.standardError = errorFile
    try process.run()
    let data = out.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    try errorFile.close()
    let error = FileManager.default.contents(atPath: dir.file("stderr")).map { String(decoding: $0, as: UTF8.self) } ?? ""
    return (process.terminationStatus, String(decoding: data, as: UTF8.self), error)
}
