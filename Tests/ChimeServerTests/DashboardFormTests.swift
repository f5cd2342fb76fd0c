import ChimeBroker
import ChimeServer
import ChimeTestSupport
import Foundation
import Testing

/// The dashboard's login and forms over real HTTP: a session cookie opens the dashboard's
/// pages and forms and nothing else (not the APIs under any spelling of their paths), a
/// form needs its session's CSRF value and this site's origin, and pages escape what the
/// engine holds.
@Suite struct DashboardFormTests {
    private func login(_ f: AdminV2Tests.Fixture, token: String) async throws -> (cookie: String, csrf: String) {
        let reply = try await httpRequest(port: f.port, method: "POST", "/login", body: "token=\(token)", contentType: "application/x-www-form-urlencoded")
        #expect(reply.status == 303)
        let cookie = try #require(reply.headers["set-cookie"]?.split(separator: ";").first.map(String.init))
        let page = try await httpRequest(port: f.port, method: "GET", "/locks", headers: ["Cookie": cookie])
        let csrf = try #require(page.body.components(separatedBy: "name=\"csrf\" value=\"").dropFirst().first?.prefix(64).description)
        return (cookie, csrf)
    }

    @Test func aSessionOpensTheDashboardOnlyAndItsFormsNeedTheirCSRFValueAndThisOrigin() async throws {
        let f = try await AdminV2Tests.Fixture(tokens: ["root"])
        _ = try f.broker.createTopic("orders")
        _ = try await f.broker.acquireLock("job:42", holder: "w", ttlMilliseconds: 600_000, waitMilliseconds: 0)
        #expect(try await httpRequest(port: f.port, method: "GET", "/").status == 303, "to the login form")
        let wrong = try await httpRequest(port: f.port, method: "POST", "/login", body: "token=guess", contentType: "application/x-www-form-urlencoded")
        #expect(wrong.status == 401 && wrong.headers["set-cookie"] == nil)
        let (cookie, csrf) = try await login(f, token: "root")
        #expect(try await httpRequest(port: f.port, method: "GET", "/topics", headers: ["Cookie": cookie]).body.contains("orders"))

        // The cookie is no credential for the APIs or metrics, however the path is spelled.
        for (method, path) in [("POST", "/v2/topics"), ("POST", "//v2/topics"), ("GET", "/metrics"), ("GET", "/metrics/"), ("GET", "//v1/topics")] {
            let reply = try await httpRequest(port: f.port, method: method, path, headers: ["Cookie": cookie], body: method == "POST" ? #"{"name":"x"}"# : nil)
            #expect(reply.status == 401, "\(method) \(path) with a session cookie: \(reply.status)")
        }
        #expect(f.broker.listTopics().map(\.name) == ["orders"])

        // A form without its CSRF value, or from another origin, changes nothing.
        let form = "application/x-www-form-urlencoded"
        let path = "/locks/" + "job:42".addingPercentEncoding(withAllowedCharacters: .alphanumerics)! + "/release"
        let noCSRF = try await httpRequest(port: f.port, method: "POST", path, headers: ["Cookie": cookie], body: "csrf=nope", contentType: form)
        #expect(noCSRF.status == 403)
        let crossSite = try await httpRequest(
            port: f.port, method: "POST", path, headers: ["Cookie": cookie, "Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"], body: "csrf=\(csrf)",
            contentType: form)
        #expect(crossSite.status == 403)
        #expect(try await f.broker.lock("job:42").holder == "w")
        let released = try await httpRequest(port: f.port, method: "POST", path, headers: ["Cookie": cookie], body: "csrf=\(csrf)", contentType: form)
        #expect(released.status == 303 && released.headers["location"]?.hasPrefix("/locks?done=") == true, "\(released.status) \(released.body)")
        #expect(try await f.broker.lock("job:42").holder == nil, "a name with a colon, percent-encoded in the path")

        // Logging out ends the session.
        _ = try await httpRequest(port: f.port, method: "POST", "/logout", headers: ["Cookie": cookie], body: "csrf=\(csrf)", contentType: form)
        #expect(try await httpRequest(port: f.port, method: "GET", "/topics", headers: ["Cookie": cookie]).status == 303)
        await f.shutdown()
    }

    @Test func pagesEscapeWhatTheEngineHolds() async throws {
        let f = try await AdminV2Tests.Fixture(tokens: ["root"])
        let (cookie, _) = try await login(f, token: "root")
        _ = try await f.broker.publish(topic: "t", [OutgoingMessage(key: Array("<b>k</b>".utf8), body: Array("<script>alert(1)</script>".utf8))])
        _ = try await f.broker.acquireLock("<img src=x onerror=alert(2)>", holder: "\"><svg onload=alert(3)>", ttlMilliseconds: 600_000, waitMilliseconds: 0)
        let topic = try await httpRequest(port: f.port, method: "GET", "/topics/t", headers: ["Cookie": cookie])
        #expect(topic.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;") && !topic.body.contains("<script>alert(1)"))
        #expect(!topic.body.contains("<b>k</b>"))
        let locks = try await httpRequest(port: f.port, method: "GET", "/locks", headers: ["Cookie": cookie])
        #expect(!locks.body.contains("<img src=x") && !locks.body.contains("<svg onload"), "\(locks.body.suffix(2_000))")
        let flash = try await httpRequest(port: f.port, method: "GET", "/topics?done=%3Cscript%3Ex%3C%2Fscript%3E", headers: ["Cookie": cookie])
        #expect(!flash.body.contains("<script>x</script>"))
        #expect(flash.headers["content-security-policy"]?.contains("default-src 'none'") == true)
        await f.shutdown()
    }
}
