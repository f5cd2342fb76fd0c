import ChimeBroker
import ChimeSchedule
import Foundation
import Hummingbird

/// The dashboard's pages, each a read of the engine rendered as HTML. Lists are pages of
/// at most 50 rows, cut on the server; what a page needs does not grow with the number of
/// topics, groups or dead letters there are beyond that.
struct DashboardPages: Sendable {
    let dashboard: Dashboard
    var broker: Broker { dashboard.broker }
    var routes: AdminRoutes { dashboard.routes }
    static let pageSize = 50

    /// Broker time: what due times, deadlines and expiries are counted in.
    private func now() -> Int64 { broker.options.clock.now() }

    /// The "done" message of the write that led here, if any.
    private func flash(_ request: Request) -> String {
        guard let done = request.uri.queryParameters["done"] else { return "" }
        return "<p class=\"flash\" role=\"status\">\(HTML.escape(String(done)))</p>"
    }

    private func page(_ request: Request) throws -> Page {
        let after = request.uri.queryParameters["after"].map(String.init)
        return Page(limit: Self.pageSize, after: after)
    }

    private func pager(_ path: String, next: String?) -> String {
        guard let next, !next.isEmpty else { return "" }
        return "<p class=\"pager\">\(HTML.link("Next page →", path + "?after=" + HTML.component(next)))</p>"
    }

    // MARK: - Overview

    func overview(_ request: Request, _ caller: AdminCaller) async throws -> String {
        try caller.require(.read)
        let t = try await totals(caller)
        let failed = broker.failedPartitions
        func card(_ label: String, _ value: String, bad: Bool = false) -> String {
            "<div class=\"card\(bad ? " bad" : "")\"><b>\(value)</b><span>\(HTML.escape(label))</span></div>"
        }
        var body = flash(request) + "<div class=\"cards\">"
        body += card("topics", HTML.number(t.topics)) + card("partitions", HTML.number(t.partitions))
        body += card("ready messages", HTML.number(t.ready)) + card("scheduled, pending", HTML.number(t.scheduled))
        body += card("on disk", HTML.bytes(t.diskBytes)) + card("groups", HTML.number(t.groups))
        body += card("lag", HTML.number(t.lag)) + card("in flight", HTML.number(t.inFlight))
        body += card("retries waiting", HTML.number(t.retries)) + card("dead letters", HTML.number(t.deadLetters), bad: t.deadLetters > 0)
        if let gauges = routes.connections?() { body += card("connections", HTML.number(gauges.open)) }
        body += card("failed partitions", HTML.number(failed.count), bad: !failed.isEmpty)
        body += "</div>"
        if !failed.isEmpty {
            body += "<p class=\"flash error\">Refusing appends after a failed write or sync (a restart reopens them): \(HTML.escape(failed.joined(separator: ", ")))</p>"
        }
        // The rates are the server's, over every topic: for grants that see every topic.
        guard caller.grant?.topics.isEmpty == true else { return HTML.page(title: "Overview", current: "Overview", body: body, caller: caller) }
        let rates = dashboard.sampler.rates()
        body += "<div class=\"charts\">"
        body += HTML.chart(
            title: "Messages per second, last 10 minutes", unit: "/s",
            series: [
                ("published", "#2f6fdf", rates.map(\.published)), ("fired", "#e67e22", rates.map(\.fired)),
                ("delivered", "#8e44ad", rates.map(\.delivered)), ("acked", "#1e8e4f", rates.map(\.acked)),
            ])
        body += HTML.chart(title: "Fire lateness, mean per 5 s", unit: " ms", series: [("lateness", "#c0392b", rates.map { $0.latenessMilliseconds ?? 0 })])
        body += "</div>"
        return HTML.page(title: "Overview", current: "Overview", body: body, caller: caller)
    }

    /// The sums over what the caller sees, from a server-wide snapshot of every topic's and
    /// group's counts taken at most every 5 s (a broker with 10,000 topics is not walked on
    /// every refresh of every open dashboard; concurrent misses may each take one).
    private func totals(_ caller: AdminCaller) async throws -> OverviewTotals {
        let snapshot: OverviewSnapshot
        if let cached = dashboard.overviewCache.value.withLock({ $0 }), ContinuousClock.now - cached.at < .seconds(5) {
            snapshot = cached.snapshot
        } else {
            var fresh = OverviewSnapshot()
            for topic in broker.listTopics() {
                guard let parts = try? await broker.partitionStats(topic: topic.name) else { continue }
                fresh.topics.append((topic.name, parts))
            }
            for name in broker.listGroups() {
                guard let g = try? await broker.groupStats(name) else { continue }
                fresh.groups.append(g)
            }
            snapshot = fresh
            dashboard.overviewCache.value.withLock { $0 = (ContinuousClock.now, fresh) }
        }
        var t = OverviewTotals()
        for (name, parts) in snapshot.topics where caller.sees(name) {
            t.topics += 1
            t.partitions += parts.count
            for p in parts {
                t.ready += p.logEnd - p.readyStart
                t.scheduled += Int64(p.scheduled)
                t.diskBytes += p.readyBytes + p.timerBytes
            }
        }
        for g in snapshot.groups where caller.grant?.topics.isEmpty == true || (!g.partitions.isEmpty && g.partitions.allSatisfy { caller.sees($0.topic) }) {
            t.groups += 1
            for p in g.partitions {
                t.lag += p.lag
                t.inFlight += p.inFlight
                t.retries += p.retriesPending
                t.deadLetters += p.deadLettered
            }
        }
        return t
    }

    // MARK: - Topics

    func topics(_ request: Request, _ caller: AdminCaller) async throws -> String {
        try caller.require(.read)
        let visible = broker.listTopics().filter { caller.sees($0.name) }
        let (slice, next) = try page(request).take(visible, key: \.name)
        let now = now()
        var rows: [[String]] = []
        for t in slice {
            guard let parts = try? await broker.partitionStats(topic: t.name) else { continue }
            let nextDue = parts.compactMap(\.nextDue).min()
            rows.append([
                HTML.link(t.name, "/topics/" + HTML.component(t.name)), HTML.number(parts.count),
                HTML.number(parts.reduce(Int64(0)) { $0 + $1.logEnd - $1.readyStart }), HTML.number(parts.reduce(0) { $0 + $1.scheduled }),
                HTML.time(nextDue, now: now), HTML.bytes(parts.reduce(Int64(0)) { $0 + $1.readyBytes + $1.timerBytes }),
            ])
        }
        let body = flash(request) + "<p class=\"muted\">\(HTML.number(visible.count)) topics.</p>"
            + HTML.table(["Topic", "Partitions", "Ready", "Scheduled", "Next due", "On disk"], rows, numeric: [1, 2, 3, 5], empty: "No topics yet.")
            + pager("/topics", next: next)
        return HTML.page(title: "Topics", current: "Topics", body: body, caller: caller)
    }

    func topic(_ name: String, _ request: Request, _ caller: AdminCaller) async throws -> String {
        try caller.require(.read, topic: name)
        guard let info = broker.listTopics().first(where: { $0.name == name }) else { throw BrokerError(.unknownTopic, "topic \(name) does not exist") }
        let parts = try await broker.partitionStats(topic: name)
        let now = now()
        let s = info.settings
        var body = "<p class=\"muted\">\(HTML.number(s.partitions)) partitions · retention "
            + (s.retentionMilliseconds.map { HTML.relative($0).replacingOccurrences(of: "in ", with: "") } ?? "none")
            + " · max message \(HTML.bytes(Int64(s.maxMessageBytes))) · \(s.maxAttempts) attempts · wheel \(HTML.escape(info.wheel))</p>"
        body += "<h2>Partitions</h2>"
        body += HTML.table(
            ["Partition", "Ready from", "Log end", "Ready", "Scheduled", "Next due", "Ready log", "Timer log"],
            parts.map {
                [
                    HTML.number($0.partition), HTML.number($0.readyStart), HTML.number($0.logEnd), HTML.number($0.logEnd - $0.readyStart),
                    HTML.number($0.scheduled), HTML.time($0.nextDue, now: now), HTML.bytes($0.readyBytes), HTML.bytes($0.timerBytes),
                ]
            }, numeric: [0, 1, 2, 3, 4, 6, 7])
        let minute: Int64 = 60_000
        let soon = try await broker.upcoming(topic: name, before: [now + minute, now + 60 * minute, now + 1_440 * minute], earliest: 20)
        let more = soon.truncated ? "+" : ""
        body += "<h2>Scheduled, by due time</h2><div class=\"cards\">"
        for (label, n) in zip(["due within a minute", "within an hour", "within a day"], soon.countsBefore) {
            body += "<div class=\"card\"><b>\(HTML.number(n))\(more)</b><span>\(label)</span></div>"
        }
        body += "</div>"
        body += HTML.table(
            ["Id", "Due"],
            soon.earliest.map { [HTML.link($0.id.description, "/jobs?id=" + HTML.component($0.id.description)), HTML.time($0.dueAt, now: now)] },
            empty: "Nothing due within a day.")
        body += "<h2>Latest messages</h2>"
        // The four partitions with the most written, five messages each, 16 KiB a partition
        // at most (its first message may pass that): what a page shows, not what a topic holds.
        var recent: [Delivery] = []
        for p in parts.filter({ $0.logEnd > $0.readyStart }).sorted(by: { $0.logEnd > $1.logEnd }).prefix(4) {
            recent += (try? await broker.peek(topic: name, partition: p.partition, from: max(p.readyStart, p.logEnd - 5), max: 5, maxBytes: 16 << 10)) ?? []
        }
        recent.sort { $0.publishedAt > $1.publishedAt }
        body += HTML.table(
            ["Id", "Published", "Key", "Body"],
            recent.prefix(20).map {
                [
                    HTML.link($0.id.description, "/jobs?id=" + HTML.component($0.id.description)), HTML.time($0.publishedAt, now: now),
                    HTML.escape($0.key.map { String(decoding: $0, as: UTF8.self) } ?? ""), "<pre>" + HTML.escape(Self.preview($0.body)) + "</pre>",
                ]
            }, empty: "No ready messages kept.")
        return HTML.page(title: "Topic \(name)", current: "Topics", body: body, caller: caller)
    }

    static func preview(_ body: [UInt8]) -> String {
        guard let text = String(validating: body.prefix(300), as: UTF8.self) else { return "(\(body.count) bytes, not text)" }
        return body.count > 300 ? text + "…" : text
    }

    // MARK: - Groups

    func groups(_ request: Request, _ caller: AdminCaller) async throws -> String {
        try caller.require(.read)
        let names = try await routes.visibleGroups(caller)
        let (slice, next) = try page(request).take(names, key: { $0 })
        var rows: [[String]] = []
        for name in slice {
            guard let g = try? await broker.groupStats(name) else { continue }
            let mode = (try? broker.groupSettings(name).mode.rawValue) ?? "—"
            let p = g.partitions
            let dead = p.reduce(0) { $0 + $1.deadLettered }
            rows.append([
                HTML.link(name, "/groups/" + HTML.component(name)), HTML.escape(mode), HTML.number(g.members),
                HTML.escape(Set(p.map(\.topic)).sorted().joined(separator: ", ")), HTML.number(p.reduce(Int64(0)) { $0 + $1.lag }),
                HTML.number(p.reduce(0) { $0 + $1.inFlight }), HTML.number(p.reduce(0) { $0 + $1.retriesPending }),
                dead > 0 ? HTML.link(HTML.number(dead), "/groups/" + HTML.component(name) + "/dead-letters") : "0",
            ])
        }
        let body = flash(request)
            + HTML.table(["Group", "Mode", "Members", "Topics", "Lag", "In flight", "Retries", "Dead letters"], rows, numeric: [2, 4, 5, 6, 7], empty: "No groups yet.")
            + pager("/groups", next: next)
        return HTML.page(title: "Groups", current: "Groups", body: body, caller: caller)
    }

    func group(_ name: String, _ request: Request, _ caller: AdminCaller) async throws -> String {
        let g = try await routes.visibleGroupStats(name, caller)
        let settings = try broker.groupSettings(name)
        let members = try await broker.groupMembers(name)
        let now = now()
        var body = flash(request) + "<p class=\"muted\">\(HTML.escape(settings.mode.rawValue)) · lease \(settings.leaseMilliseconds / 1000) s · session timeout \(settings.sessionTimeoutMilliseconds / 1000) s · "
        body += "\(HTML.link("dead letters", "/groups/" + HTML.component(name) + "/dead-letters"))</p><h2>Members</h2>"
        body += HTML.table(
            ["Member", "Name", "Topics", "Last seen", "Partitions"],
            members.map {
                [
                    HTML.escape(String($0.id)), HTML.escape($0.name), HTML.escape($0.topics.joined(separator: ", ")), HTML.time($0.lastSeen, now: now),
                    HTML.escape($0.assignment.map { "\($0.topic)/\($0.partition)" }.joined(separator: " ")),
                ]
            }, empty: "No live members.")
        body += "<h2>Partitions</h2>"
        body += HTML.table(
            ["Topic", "Partition", "Committed", "Lag", "In flight", "Retries", "Dead letters", "Owner"],
            g.partitions.map {
                [
                    HTML.escape($0.topic), HTML.number($0.partition), HTML.number($0.committed), HTML.number($0.lag), HTML.number($0.inFlight),
                    HTML.number($0.retriesPending), HTML.number($0.deadLettered), $0.owner.map { HTML.escape(String($0)) } ?? "—",
                ]
            }, numeric: [1, 2, 3, 4, 5, 6])
        return HTML.page(title: "Group \(name)", current: "Groups", body: body, caller: caller)
    }

    func deadLetters(_ name: String, _ request: Request, _ caller: AdminCaller) async throws -> String {
        _ = try await routes.visibleGroupStats(name, caller)
        let answer = try await routes.deadLetters(of: name, try page(request))
        guard case .object(let fields) = answer, case .array(let letters)? = fields.first(where: { $0.0 == "deadLetters" })?.1 else { return "" }
        let next: String? = if case .string(let n)? = fields.first(where: { $0.0 == "next" })?.1 { n } else { nil }
        let now = now()
        func field(_ o: JSONValue, _ name: String) -> JSONValue? {
            guard case .object(let f) = o else { return nil }
            return f.first { $0.0 == name }?.1
        }
        func text(_ v: JSONValue?) -> String {
            switch v {
            case .string(let s)?: s
            case .number(let n)?: String(n)
            default: ""
            }
        }
        let csrf = caller.grant?.scope == .admin ? caller.session?.csrf : nil
        let path = "/groups/\(HTML.component(name))/dead-letters"
        let rows: [[String]] = letters.map { l in
            let at: Int64? = if case .number(let n)? = field(l, "publishedAt") { n } else { nil }
            let id = text(field(l, "id"))
            return [
                HTML.escape(text(field(l, "originalId"))), HTML.escape(text(field(l, "originalTopic"))), HTML.time(at, now: now),
                HTML.escape(text(field(l, "attempts"))), "<pre>" + HTML.escape(text(field(l, "error"))) + "</pre>",
                "<pre>" + HTML.escape(String(text(field(l, "body")).prefix(300))) + "</pre>",
                HTML.button("Re-drive", action: path + "/redrive", csrf: csrf, fields: [("id", id)]) + " "
                    + HTML.button("Delete", action: path + "/delete", csrf: csrf, fields: [("id", id)], danger: true, confirm: "Delete this dead letter for good?"),
            ]
        }
        var body = flash(request)
        if !rows.isEmpty {
            body += "<p>" + HTML.button("Re-drive all", action: "/groups/\(HTML.component(name))/dead-letters/redrive", csrf: csrf, confirm: "Send every dead letter of \(name) back to it?") + " "
            body += HTML.button("Re-drive the oldest", action: "/groups/\(HTML.component(name))/dead-letters/redrive", csrf: csrf, fields: [("max", "1")]) + "</p>"
        }
        body += HTML.table(["Original id", "Topic", "Dead since", "Attempts", "Error", "Body", ""], rows, numeric: [3], empty: "No dead letters.")
        body += pager("/groups/\(HTML.component(name))/dead-letters", next: next)
        return HTML.page(title: "Dead letters of \(name)", current: "Groups", body: body, caller: caller)
    }

    private func canWrite(_ caller: AdminCaller) -> Bool { caller.session != nil && (caller.grant?.scope ?? .read) >= .publish }

    // MARK: - Schedules, jobs, locks

    func schedules(_ request: Request, _ caller: AdminCaller) async throws -> String {
        try caller.require(.read)
        let now = now()
        let all = await broker.schedules(upcoming: 3).filter { caller.sees($0.schedule.target.topic) }
        let admin = caller.session != nil && caller.grant?.scope == .admin ? caller.session?.csrf : nil
        let rows: [[String]] = all.map { info in
            let s = info.schedule
            let spec: String =
                switch s.spec {
                case .cron(let e, let zone): "cron \(e) (\(zone))"
                case .every(let ms, _): "every \(HTML.relative(ms).replacingOccurrences(of: "in ", with: ""))"
                case .fixedRate(let ms, _, _): "fixed rate \(HTML.relative(ms).replacingOccurrences(of: "in ", with: ""))"
                case .fixedDelay(let ms, let g): "fixed delay \(HTML.relative(ms).replacingOccurrences(of: "in ", with: "")) after \(g)'s ack"
                case .once(let at): "once at \(HTML.time(at, now: now))"
                }
            let path = "/schedules/" + HTML.component(s.name)
            let buttons =
                (s.options.paused ? HTML.button("Resume", action: path + "/resume", csrf: admin) : HTML.button("Pause", action: path + "/pause", csrf: admin))
                + " " + HTML.button("Trigger now", action: path + "/trigger", csrf: admin, confirm: "Publish an occurrence of \(s.name) now?")
            return [
                HTML.escape(s.name), HTML.escape(s.target.topic), spec.hasPrefix("once") ? spec : HTML.escape(spec),
                s.options.paused ? "<b>paused</b>" : HTML.escape(info.idle ?? "active"), HTML.time(info.nextOccurrence, now: now),
                info.upcoming.map { HTML.time($0, now: now) }.joined(separator: "<br>"), HTML.time(info.lastOccurrence, now: now), buttons,
            ]
        }
        let body = flash(request) + HTML.table(["Schedule", "Topic", "When", "State", "Next", "Then", "Last fired", ""], rows, empty: "No schedules.")
        return HTML.page(title: "Schedules", current: "Schedules", body: body, caller: caller)
    }

    func jobs(_ request: Request, _ caller: AdminCaller) async throws -> String {
        try caller.require(.read)
        let given = request.uri.queryParameters["id"].map(String.init)?.trimmingCharacters(in: .whitespaces) ?? ""
        let groups = try await routes.visibleGroups(caller)
        let chosen = request.uri.queryParameters["group"].map(String.init) ?? (given.isEmpty ? groups.first : nil)
        var body = flash(request)
        body += "<form method=\"get\" action=\"/jobs\"><label>Group <select name=\"group\">"
        for g in groups { body += "<option\(g == chosen ? " selected" : "")>\(HTML.escape(g))</option>" }
        body += "</select></label> <button>Show its jobs</button></form>"
        if let chosen, groups.contains(chosen) {
            let jobs = try await broker.jobs(group: chosen, limit: Self.pageSize)
            let now = now()
            let admin = caller.session != nil && caller.grant?.scope == .admin ? caller.session?.csrf : nil
            func abort(_ id: MessageID) -> String {
                HTML.button("Abort", action: "/jobs/abort", csrf: admin, fields: [("id", id.description)], danger: true, confirm: "Abort \(id)?")
            }
            func link(_ id: MessageID) -> String { HTML.link(id.description, "/jobs?id=" + HTML.component(id.description)) }
            body += "<h2>Running in \(HTML.escape(chosen))</h2>"
            body += HTML.table(
                ["Job", "Member", "Attempt", "Lease ends", ""],
                jobs.running.map { j in
                    guard case .running(let member, let attempt, let deadline) = j.state else { return [] }
                    return [link(j.id), HTML.escape(String(member)), HTML.number(attempt), HTML.time(deadline, now: now), abort(j.id)]
                }, numeric: [2], empty: "Nothing running.")
            body += "<h2>Retrying</h2>"
            body += HTML.table(
                ["Job", "Next attempt", "Attempts so far", "Last error", ""],
                jobs.retrying.map { j in
                    guard case .retrying(let next, let attempts, let error) = j.state else { return [] }
                    return [link(j.id), HTML.time(next, now: now), HTML.number(attempts), "<pre>" + HTML.escape(error ?? "") + "</pre>", abort(j.id)]
                }, numeric: [2], empty: "Nothing waiting for another attempt.")
            body += "<h2>Waiting for a callback, or snoozed</h2>"
            body += HTML.table(
                ["Job", "Waiting for", "Until", ""],
                jobs.waiting.map { j in
                    guard case .waiting(let until, let callback) = j.state else { return [] }
                    return [link(j.id), callback ? "a callback" : "its time (a continuation)", HTML.time(until, now: now), abort(j.id)]
                }, empty: "Nothing parked.")
        }
        body += "<h2>One job</h2><form method=\"get\" action=\"/jobs\"><label>Job (message) id <input type=\"text\" name=\"id\" value=\"\(HTML.escape(given))\" placeholder=\"3-1-s4096\"></label> <button>Show</button></form>"
        if !given.isEmpty {
            let id = try AdminRoutes.messageID(given)
            try caller.require(.read, topic: broker.topicName(id: id.topicID))
            let statuses = try await broker.jobStatus(id)
            let now = now()
            body += "<h2>\(HTML.escape(id.description))</h2>"
            body += HTML.table(
                ["Group", "State", "Details"],
                statuses.map { s in
                    let (state, details): (String, String) =
                        switch s.state {
                        case .scheduled(let due): ("scheduled", "due " + HTML.time(due, now: now))
                        case .ready: ("ready", "")
                        case .running(let member, let attempt, let deadline): ("running", "member \(member), attempt \(attempt), lease ends " + HTML.time(deadline, now: now))
                        case .retrying(let next, let attempts, let error): ("retrying", "attempt \(attempts + 1) " + HTML.time(next, now: now) + (error.map { ": " + HTML.escape($0) } ?? ""))
                        case .succeeded: ("succeeded", "")
                        case .finished: ("finished", "")
                        case .dead(let reason, let attempts): ("dead", "after \(attempts) attempts: " + HTML.escape(reason))
                        case .cancelled: ("cancelled", "")
                        case .aborted(let running, let reason): ("aborted", (running ? "while running: " : "") + HTML.escape(reason))
                        case .waiting(let until, let callback): (callback ? "awaiting callback" : "snoozed", (callback ? "times out " : "wakes ") + HTML.time(until, now: now))
                        }
                    return [HTML.escape(s.group ?? "—"), "<b>\(state)</b>", details]
                }, empty: "Not known here.")
            let admin = caller.session != nil && caller.grant?.scope == .admin ? caller.session?.csrf : nil
            body += "<p>" + HTML.button("Abort this job", action: "/jobs/abort", csrf: admin, fields: [("id", id.description)], danger: true, confirm: "Abort \(id)?") + "</p>"
        }
        if let csrf = canWrite(caller) ? caller.session?.csrf : nil {
            body += "<h2>Complete a callback</h2><form method=\"post\" action=\"/callbacks/complete\"><input type=\"hidden\" name=\"csrf\" value=\"\(HTML.escape(csrf))\">"
            body += "<p><label>Token <input type=\"text\" name=\"token\" placeholder=\"<id>.<due>.<nonce>\"></label></p><p><label>Payload <input type=\"text\" name=\"payload\"></label></p><button>Complete</button></form>"
        }
        return HTML.page(title: "Jobs", current: "Jobs", body: body, caller: caller)
    }

    func locks(_ request: Request, _ caller: AdminCaller) async throws -> String {
        try caller.require(.read, topic: nil)
        let now = now()
        let admin = caller.session != nil && caller.grant == .everything ? caller.session?.csrf : nil
        let rows: [[String]] = await broker.locks().map { l in
            [
                HTML.escape(l.name), HTML.escape(l.holder ?? "—"), l.token.map { HTML.number($0) } ?? "—", HTML.time(l.expiresAt, now: now),
                HTML.number(l.waiters),
                l.holder == nil ? "" : HTML.button("Release", action: "/locks/\(HTML.component(l.name))/release", csrf: admin, danger: true, confirm: "Release \(l.name) by force?"),
            ]
        }
        let body = flash(request) + HTML.table(["Lock", "Holder", "Fencing token", "Expires", "Waiters", ""], rows, numeric: [2, 4], empty: "No locks held.")
        return HTML.page(title: "Locks", current: "Locks", body: body, caller: caller)
    }

    // MARK: - Login

    func login(_ request: Request, _ caller: AdminCaller, error: String?) -> String {
        var body = error.map { "<p class=\"flash error\" role=\"alert\">\(HTML.escape($0))</p>" } ?? ""
        body += """
            <form method="post" action="/login"><p><label>Token <input type="password" name="token" autocomplete="current-password" autofocus></label></p>
            <p><button>Log in</button></p></form>
            <p class="muted">A token of this server (<code>chime serve --token</code>), or on a server without tokens the one in
            <code>&lt;data&gt;/admin-token</code>. It is sent once, in this form's body; the dashboard keeps a session cookie instead.</p>
            """
        return HTML.page(title: "Log in", current: "", body: body, caller: caller, live: false)
    }
}
