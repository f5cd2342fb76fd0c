import ChimeProtocol

/// The dashboard's HTML: escaping, the page frame (navigation, style, the live-refresh
/// script), and small parts (tables, numbers, times, forms, charts). Everything is in the
/// binary; a page works without network access and reads without JavaScript.
enum HTML {
    /// Text made safe for element content and quoted attribute values.
    static func escape(_ text: String) -> String {
        var out = ""
        out.reserveCapacity(text.utf8.count)
        for c in text.unicodeScalars {
            switch c {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            default: out.unicodeScalars.append(c)
            }
        }
        return out
    }

    /// A path segment or query value, percent-encoded.
    static func component(_ text: String) -> String {
        var out = ""
        for b in text.utf8 {
            switch b {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"):
                out.unicodeScalars.append(Unicode.Scalar(b))
            default:
                let hex = String(b, radix: 16, uppercase: true)
                out += "%" + (hex.count == 1 ? "0" + hex : hex)
            }
        }
        return out
    }

    static func number(_ n: Int64) -> String {
        let digits = String(n.magnitude)
        var out = ""
        for (i, c) in digits.enumerated() {
            if i > 0 && (digits.count - i) % 3 == 0 { out += "," }
            out.append(c)
        }
        return (n < 0 ? "-" : "") + out
    }

    static func number(_ n: Int) -> String { number(Int64(n)) }

    static func bytes(_ n: Int64) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var value = Double(n)
        var unit = 0
        while value >= 1024 && unit < units.count - 1 {
            value /= 1024
            unit += 1
        }
        return unit == 0 ? "\(n) B" : String(Int((value * 10).rounded()) / 10) + "." + String(Int((value * 10).rounded()) % 10) + " " + units[unit]
    }

    /// A time as ISO-8601 (UTC) with how far it is from `now`: "in 4m 10s", "2h 3m ago".
    static func time(_ ms: Int64?, now: Int64) -> String {
        guard let ms, case .string(let iso) = JSONValue.iso8601(ms) else { return "—" }
        return "<time datetime=\"\(iso)\" title=\"\(iso)\">\(relative(ms - now))</time>"
    }

    static func relative(_ delta: Int64) -> String {
        let s = abs(delta) / 1000
        let text: String
        switch s {
        case ..<1: return delta >= 0 ? "now" : "just now"
        case ..<60: text = "\(s)s"
        case ..<3_600: text = "\(s / 60)m \(s % 60)s"
        case ..<86_400: text = "\(s / 3_600)h \(s % 3_600 / 60)m"
        default: text = "\(s / 86_400)d \(s % 86_400 / 3_600)h"
        }
        return delta >= 0 ? "in " + text : text + " ago"
    }

    /// A table: escaped headings, rows of ready-made cells (escape what is text).
    static func table(_ headings: [String], _ rows: [[String]], numeric: Set<Int> = [], empty: String = "Nothing here yet.") -> String {
        guard !rows.isEmpty else { return "<p class=\"empty\">\(escape(empty))</p>" }
        var out = "<table><thead><tr>"
        for (i, h) in headings.enumerated() { out += "<th\(numeric.contains(i) ? " class=\"n\"" : "")>\(escape(h))</th>" }
        out += "</tr></thead><tbody>"
        for row in rows {
            out += "<tr>"
            for (i, cell) in row.enumerated() { out += "<td\(numeric.contains(i) ? " class=\"n\"" : "")>\(cell)</td>" }
            out += "</tr>"
        }
        return out + "</tbody></table>"
    }

    /// A form posting to `action` with the session's CSRF value, hidden `fields`, and one
    /// button. Nil when the caller may not write (then the page shows no button).
    static func button(_ label: String, action: String, csrf: String?, fields: [(String, String)] = [], danger: Bool = false, confirm: String? = nil) -> String {
        guard let csrf else { return "" }
        var out = "<form method=\"post\" action=\"\(escape(action))\" class=\"inline\""
        if let confirm { out += " data-confirm=\"\(escape(confirm))\"" }
        out += "><input type=\"hidden\" name=\"csrf\" value=\"\(escape(csrf))\">"
        for (name, value) in fields { out += "<input type=\"hidden\" name=\"\(escape(name))\" value=\"\(escape(value))\">" }
        return out + "<button\(danger ? " class=\"danger\"" : "")>\(escape(label))</button></form>"
    }

    static func link(_ text: String, _ href: String) -> String { "<a href=\"\(escape(href))\">\(escape(text))</a>" }

    /// A line chart of `series` (name, colour, points) over the same x values, as inline SVG.
    static func chart(title: String, unit: String, series: [(name: String, colour: String, points: [Double])]) -> String {
        let (w, h) = (600.0, 140.0)
        let count = series.map(\.points.count).max() ?? 0
        let top = max(1, series.flatMap(\.points).max() ?? 1)
        var out = "<figure class=\"chart\"><figcaption>\(escape(title))"
        for s in series {
            let last = s.points.last.map { String(format2($0)) } ?? "—"
            out += " <span class=\"key\" style=\"color:\(s.colour)\">■ \(escape(s.name)) \(last)\(escape(unit))</span>"
        }
        out += "</figcaption><svg viewBox=\"0 0 \(Int(w)) \(Int(h))\" role=\"img\" aria-label=\"\(escape(title))\" preserveAspectRatio=\"none\">"
        out += "<line x1=\"0\" y1=\"\(h - 0.5)\" x2=\"\(w)\" y2=\"\(h - 0.5)\" class=\"axis\"/>"
        if count > 1 {
            for s in series {
                let step = w / Double(count - 1)
                let points = s.points.enumerated().map { i, v in "\(format2(Double(i) * step)),\(format2(h - 4 - (h - 8) * v / top))" }
                out += "<polyline fill=\"none\" stroke=\"\(s.colour)\" stroke-width=\"2\" points=\"\(points.joined(separator: " "))\"/>"
            }
        } else {
            out += "<text x=\"10\" y=\"\(Int(h / 2))\" class=\"muted\">collecting samples (one every 5 s)…</text>"
        }
        out += "<text x=\"4\" y=\"14\" class=\"muted\">\(escape(format2(top)))\(escape(unit))</text></svg></figure>"
        return out
    }

    static func format2(_ v: Double) -> String {
        let r = (v * 100).rounded() / 100
        return r == r.rounded() ? String(Int64(r)) : String(r)
    }

    /// The page around `body`: navigation with `current` marked, and who is logged in.
    static func page(title: String, current: String, body: String, caller: AdminCaller, live: Bool = true) -> String {
        let nav = [("Overview", "/"), ("Topics", "/topics"), ("Groups", "/groups"), ("Schedules", "/schedules"), ("Jobs", "/jobs"), ("Locks", "/locks")]
        var links = ""
        for (name, href) in nav { links += "<a href=\"\(href)\"\(name == current ? " aria-current=\"page\"" : "")>\(name)</a>" }
        let who: String
        if let s = caller.session, let grant = caller.grant {
            who = "<span class=\"who\">\(escape(grant.description))</span>" + button("Log out", action: "/logout", csrf: s.csrf)
        } else {
            who = "<a class=\"who\" href=\"/login\">Log in to make changes</a>"
        }
        return """
            <!doctype html>
            <html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
            <title>\(escape(title)) · Chime</title><link rel="icon" href="\(icon)"><style>\(style)</style></head>
            <body><header><strong class="brand">Chime</strong><nav>\(links)</nav>\(who)</header>
            <main id="main"\(live ? " data-live" : "")><h1>\(escape(title))</h1>\(body)</main>
            <footer>chime \(escape(ChimeVersion.current)) · <a href="/v2/openapi.json">API</a> · <a href="/metrics">metrics</a>\(live ? " · refreshed every 5 s" : "")</footer>
            <script>\(script)</script></body></html>
            """
    }

    /// A bell, inline: the page asks nothing of any server, not even for its icon.
    static let icon =
        "data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 16 16'%3E%3Cpath fill='%232f6fdf' d='M8 1a5 5 0 0 0-5 5v4l-1.5 2h13L13 10V6a5 5 0 0 0-5-5zm-2 12a2 2 0 0 0 4 0z'/%3E%3C/svg%3E"

    static let style = """
        :root{--fg:#1d232b;--muted:#6a7380;--line:#dde2e8;--bg:#f7f8fa;--accent:#2f6fdf;--bad:#c0392b;--ok:#1e8e4f}
        *{box-sizing:border-box}body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);background:var(--bg)}
        header{display:flex;gap:1.5rem;align-items:center;padding:.6rem 1.2rem;background:#fff;border-bottom:1px solid var(--line)}
        .brand{font-size:1.1rem}nav{display:flex;gap:1rem;flex:1}nav a{color:var(--muted);text-decoration:none;padding:.2rem 0}
        nav a[aria-current]{color:var(--fg);border-bottom:2px solid var(--accent)}.who{color:var(--muted)}
        main{padding:1rem 1.2rem;max-width:1200px}h1{font-size:1.3rem;margin:.3rem 0 1rem}h2{font-size:1.05rem;margin:1.4rem 0 .5rem}
        table{border-collapse:collapse;width:100%;background:#fff;border:1px solid var(--line)}th,td{padding:.35rem .6rem;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}
        th{font-weight:600;color:var(--muted);font-size:.85rem}td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
        .cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(160px,1fr));gap:.7rem}
        .card{background:#fff;border:1px solid var(--line);padding:.6rem .8rem}.card b{display:block;font-size:1.35rem;font-variant-numeric:tabular-nums}.card span{color:var(--muted);font-size:.85rem}
        .card.bad b{color:var(--bad)}.charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(420px,1fr));gap:.7rem;margin-top:.7rem}
        figure.chart{margin:0;background:#fff;border:1px solid var(--line);padding:.5rem}figcaption{font-size:.85rem;color:var(--muted)}.key{margin-left:.6rem}
        svg{width:100%;height:140px}.axis{stroke:var(--line)}svg text{font-size:11px}.muted,p.empty{color:var(--muted)}
        form.inline{display:inline}button{font:inherit;padding:.2rem .6rem;border:1px solid var(--line);background:#fff;cursor:pointer}
        button.danger{color:var(--bad);border-color:#e8b4ae}.flash{padding:.5rem .8rem;background:#eaf6ef;border:1px solid #b7dfc6;margin-bottom:1rem}
        .flash.error{background:#fbeceb;border-color:#efc1bb}pre{margin:0;white-space:pre-wrap;word-break:break-all;max-width:40rem;font-size:.85rem}
        .pager{margin:.7rem 0}footer{padding:1rem 1.2rem;color:var(--muted);font-size:.8rem}input[type=text],input[type=password]{font:inherit;padding:.25rem .4rem;min-width:22rem}
        """

    /// Live refresh: every 5 s a page marked `data-live` fetches itself and swaps its main
    /// part in (not while the tab is hidden or a field has focus). Forms marked
    /// `data-confirm` ask first. Without JavaScript the pages read the same, unrefreshed.
    static let script = """
        (function(){var m=document.getElementById('main');
        document.addEventListener('submit',function(e){var f=e.target,q=f.getAttribute('data-confirm');if(q&&!confirm(q))e.preventDefault();});
        if(!m||!m.hasAttribute('data-live'))return;
        setInterval(function(){if(document.hidden)return;var a=document.activeElement;if(a&&(a.tagName==='INPUT'||a.tagName==='TEXTAREA'))return;
        fetch(location.href,{credentials:'same-origin'}).then(function(r){return r.ok?r.text():null}).then(function(t){if(!t)return;
        var d=new DOMParser().parseFromString(t,'text/html').getElementById('main');if(d)m.innerHTML=d.innerHTML;}).catch(function(){});},5000);})();
        """
}
