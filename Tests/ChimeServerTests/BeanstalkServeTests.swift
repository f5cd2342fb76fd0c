import ChimeTestSupport
import Foundation
import Testing

/// `chime serve --beanstalk-port 0` speaks both protocols from one broker: a job put over
/// beanstalkd's protocol is reserved and deleted there, and its journal topic is one of the
/// broker's topics.
@Suite struct BeanstalkServeTests {
    @Test func serveWithABeanstalkPortAnswersBeanstalkdClients() async throws {
        let dir = TemporaryDirectory()
        let server = try ServeProcess(data: dir.path, port: 0, extra: ["--beanstalk-port", "0"])
        defer { server.stop() }
        let line = server.banner.split(separator: "\n").first { $0.contains("beanstalkd protocol on") } ?? ""
        let port = Int(line.split(separator: ":").last ?? "") ?? -1
        #expect(port > 0, "the banner names the port: \(server.banner)")
        let script = """
            import socket, sys
            s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=30)
            s.sendall(b"put 1 0 60 5\\r\\nhello\\r\\nreserve\\r\\n")
            buf = b""
            while buf.count(b"\\r\\n") < 3:
                buf += s.recv(4096)
            s.sendall(b"delete 1\\r\\ndelete 1\\r\\n")
            while buf.count(b"\\r\\n") < 5:
                buf += s.recv(4096)
            sys.stdout.write(buf.decode())
            """
        let (status, output) = await runCapturingOutput("/usr/bin/python3", ["-c", script, "\(port)"])
        #expect(status == 0, "\(output)")
        #expect(output == "INSERTED 1\r\nRESERVED 1 5\r\nhello\r\nDELETED\r\nNOT_FOUND\r\n")
        let topics = try run(builtProduct("chime"), ["topics", "--port", "\(server.port)"], withErrors: true)
        #expect(topics.output.contains("__beanstalk"), "\(topics.output)")
    }
}
