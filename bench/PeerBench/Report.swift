import Foundation

/// One measured figure for one system: a value per run.
struct Row: Codable, Sendable {
    var workload: String
    var metric: String
    var unit: String
    var system: String
    var durability: String
    var runs: [Double]
    var higherIsBetter: Bool
    var note: String?

    var median: Double { medianOf(runs) }
    var minimum: Double { runs.min() ?? .nan }
    var maximum: Double { runs.max() ?? .nan }
}

struct DiskLimits: Codable, Sendable {
    var sequentialWriteMBps: Double
    var fdatasyncP50Microseconds: Double
    var fdatasyncP99Microseconds: Double
}

struct Report: Codable, Sendable {
    var startedAt: String
    var host: String
    var machine: [String: String]
    var quick: Bool
    var runs: Int
    var disk: DiskLimits?
    var chimePublishMBps: Double?
    var chimeDiskWriteMBps: Double?
    var rows: [Row] = []
    var latenessEarly: [String: Int] = [:]

    /// The Chime row a peer row is compared with.
    func chime(for row: Row) -> Row? {
        rows.first { $0.system == "chime" && $0.workload == row.workload && $0.metric == row.metric }
    }

    func markdown() -> String {
        var out = "# Chime beside beanstalkd and Redis\n\n"
        out += "Measured \(startedAt) on \(host)"
        if let cpu = machine["cpu"] { out += ": \(cpu)" }
        out += ". Every figure is the median of \(runs) run\(runs == 1 ? "" : "s") (min–max beside it); "
        out += "the ratio is Chime's median over the peer's, measured in the same suite run. "
        out += "Server and harness share the machine's cores; everything on 127.0.0.1.\n"
        if quick { out += "\n**Quick mode (smoke test): small counts, one run. These figures mean nothing.**\n" }
        if let disk {
            out += "\n**The disk's own limits** (fio, same run): sequential write \(fmt(disk.sequentialWriteMBps)) MB/s; "
            out += "fdatasync of a 4 KiB write p50 \(fmt(disk.fdatasyncP50Microseconds)) µs, p99 \(fmt(disk.fdatasyncP99Microseconds)) µs."
            if let mb = chimePublishMBps {
                out += " Chime publish-1 moved \(fmt(mb)) MB/s of message bodies"
                if let d = chimeDiskWriteMBps { out += " and wrote \(fmt(d)) MB/s to its logs" }
                out += ": \(fmt(100 * (chimeDiskWriteMBps ?? mb) / disk.sequentialWriteMBps)) % of the sequential figure."
            }
            out += "\n"
        }
        var workloads: [String] = []
        for r in rows where !workloads.contains(r.workload) { workloads.append(r.workload) }
        // In the order of their numbers ("8. workers" runs before "4. burst").
        func number(_ w: String) -> Int { Int(w.prefix { $0.isNumber }) ?? .max }
        workloads.sort { number($0) < number($1) }
        for w in workloads {
            let rs = rows.filter { $0.workload == w }
            out += "\n## \(w)\n\n| metric | system | durability | median | min–max | Chime / peer | |\n| --- | --- | --- | ---: | ---: | ---: | --- |\n"
            for r in rs {
                var ratio = ""
                var verdict = ""
                if r.system != "chime", let c = chime(for: r), c.median.isFinite, r.median.isFinite, r.median != 0 {
                    let x = c.median / r.median
                    ratio = fmt(x, digits: 3)
                    if r.higherIsBetter {
                        verdict = x >= 1 ? "Chime \(fmt(x, digits: 3))× more" : "Chime \(fmt(1 / x, digits: 3))× less"
                    } else if x == 0 {
                        verdict = "Chime 0"
                    } else {
                        verdict = x <= 1 ? "Chime \(fmt(1 / x, digits: 3))× less" : "Chime \(fmt(x, digits: 3))× more"
                    }
                }
                let note = r.note.map { verdict.isEmpty ? $0 : "; \($0)" } ?? ""
                out += "| \(r.metric) (\(r.unit)) | \(r.system) | \(r.durability) | \(fmt(r.median)) | \(fmt(r.minimum))–\(fmt(r.maximum)) | \(ratio) | \(verdict)\(note) |\n"
            }
        }
        if !latenessEarly.isEmpty {
            out += "\nEarly deliveries (received before due), all lateness runs: "
            out += latenessEarly.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ") + ".\n"
        }
        return out
    }
}

/// The middle value (the mean of the two middle ones for an even count); NaN for none.
func medianOf(_ values: [Double]) -> Double {
    let s = values.sorted()
    guard !s.isEmpty else { return .nan }
    return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
}

func fmt(_ v: Double, digits: Int = 0) -> String {
    guard v.isFinite else { return "n/a" }
    if digits > 0 {
        // Three significant digits, never in exponent notation.
        if abs(v) >= 1_000 { return fmt(v) }
        return String(format: "%.\(digits)g", v)
    }
    if abs(v) >= 100 {
        let f = NumberFormatter()
        f.numberStyle = .decimal
        f.maximumFractionDigits = 0
        return f.string(from: NSNumber(value: v.rounded())) ?? "\(Int(v))"
    }
    return String(format: abs(v) >= 10 ? "%.1f" : "%.2f", v)
}
