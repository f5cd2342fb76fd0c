@testable import ChimeServer
import Testing

/// beanstalkd's command lines read as protocol.txt (beanstalkd 1.12) says, and refused with
/// its own errors: the first step of the beanstalkd listener.
@Suite struct BeanstalkCommandTests {
    private func parse(_ line: String) -> Result<BeanstalkCommand, BeanstalkCommand.Refusal> {
        Result { () throws(BeanstalkCommand.Refusal) in try BeanstalkCommand.parse(Array(line.utf8)) }
    }

    @Test func everyCommandOfTheProtocolIsRead() {
        let cases: [(String, BeanstalkCommand)] = [
            ("put 1024 0 60 5", .put(priority: 1024, delay: 0, ttr: 60, bytes: 5)),
            ("put 4294967295 4294967295 4294967295 65535", .put(priority: .max, delay: .max, ttr: .max, bytes: 65_535)),
            ("use emails", .use(tube: "emails")), ("reserve", .reserve), ("reserve-with-timeout 0", .reserveWithTimeout(seconds: 0)),
            ("reserve-job 18446744073709551615", .reserveJob(id: .max)), ("delete 7", .delete(id: 7)),
            ("release 7 10 30", .release(id: 7, priority: 10, delay: 30)), ("bury 7 0", .bury(id: 7, priority: 0)), ("touch 7", .touch(id: 7)),
            ("watch a-b+c/d;e.f$g_h(i)", .watch(tube: "a-b+c/d;e.f$g_h(i)")), ("ignore default", .ignore(tube: "default")),
            ("peek 1", .peek(id: 1)), ("peek-ready", .peekReady), ("peek-delayed", .peekDelayed), ("peek-buried", .peekBuried),
            ("kick 100", .kick(bound: 100)), ("kick-job 3", .kickJob(id: 3)), ("stats-job 3", .statsJob(id: 3)),
            ("stats-tube default", .statsTube(tube: "default")), ("stats", .stats), ("list-tubes", .listTubes),
            ("list-tube-used", .listTubeUsed), ("list-tubes-watched", .listTubesWatched), ("pause-tube default 60", .pauseTube(tube: "default", delay: 60)),
            ("quit", .quit),
        ]
        for (line, command) in cases {
            #expect(parse(line) == .success(command), "\(line)")
        }
    }

    /// What Debian's beanstalkd 1.12 answered to each of these lines (2026-12-05, one
    /// connection each): the same refusals, quirks included.
    @Test func malformedLinesGetBeanstalkdsOwnRefusals() {
        let unknown = ["", "PUT 1 0 60 5", "puts 1 0 60 5", "frobnicate 1", "stat", "delete", "use", "kick", "peek"]
        for line in unknown {
            #expect(parse(line) == .failure(.unknownCommand), "\(line)")
        }
        let bad = [
            "reserves", "put 1 0 60", "put 1 0 60 5 6", "put -1 0 60 5", "put 1 0 60 +5", "put 4294967296 0 60 5", "put 1 0 60 x",
            "put 1 0 60 5 ", "delete 18446744073709551616", "delete 1 2", "release 1 2", "bury 1", "use -leading-hyphen", "use bad*name",
            "use " + String(repeating: "a", count: 201), "watch a b", "reserve 1", "pause-tube default", "pause-tube default x", "stats now",
            "put 1 0 60 5\u{01}", "put " + String(repeating: "1", count: 230),
        ]
        for line in bad {
            #expect(parse(line) == .failure(.badFormat), "\(line)")
        }
        // And what it accepted: spaces before a number, anything after kick's bound, quit's tail.
        #expect(parse("put 1  0 60 5") == .success(.put(priority: 1, delay: 0, ttr: 60, bytes: 5)))
        #expect(parse("kick 1 2") == .success(.kick(bound: 1)))
        #expect(parse("quit now") == .success(.quit))
    }

    @Test func tubeNamesFollowTheProtocolsRules() {
        #expect(BeanstalkCommand.isValidName(String(repeating: "t", count: 200)))
        #expect(!BeanstalkCommand.isValidName(String(repeating: "t", count: 201)))
        #expect(!BeanstalkCommand.isValidName("") && !BeanstalkCommand.isValidName("-x") && !BeanstalkCommand.isValidName("é"))
        #expect(BeanstalkCommand.isValidName("x-") && BeanstalkCommand.isValidName("(tube)"))
    }
}
