import ChimeServer
import Foundation

/// Human-readable numbers for CLI output.
enum Format {
    static func bytes(_ n: Int64) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var value = Double(n)
        var unit = 0
        while value >= 1024 && unit < units.count - 1 {
            value /= 1024
            unit += 1
        }
        return unit == 0 ? "\(n) B" : String(format: "%.1f %@", value, units[unit])
    }

    /// A number without a needless fraction: 2, 2.5, 0.001 (thousandths at most).
    static func number(_ v: Double) -> String {
        let thousandths = (v * 1000).rounded()
        if thousandths.truncatingRemainder(dividingBy: 1000) == 0 { return String(Int64(thousandths / 1000)) }
        var text = String(format: "%.3f", thousandths / 1000)
        while text.hasSuffix("0") { text.removeLast() }
        return text
    }

    /// A table's lines: columns as wide as their widest cell and two spaces, the last one
    /// unpadded.
    static func table(_ header: [String], _ rows: [[String]]) -> [String] {
        let widths = header.indices.map { c in ([header] + rows).map { $0[c].count }.max()! + 2 }
        return ([header] + rows).map { row in
            row.enumerated().map { c, cell in c == row.count - 1 ? cell : cell.padding(toLength: widths[c], withPad: " ", startingAt: 0) }.joined()
        }
    }

    /// A JSON string literal (the admin port's encoder).
    static func json(_ s: String) -> String {
        var out = ""
        JSONValue.quote(s, to: &out)
        return out
    }

    /// Printable text for a body or key: UTF-8 if it is, else hex.
    static func preview(_ bytes: [UInt8], limit: Int = 60) -> String {
        let head = Array(bytes.prefix(limit))
        let more = bytes.count > limit ? "…(\(bytes.count) bytes)" : ""
        if let text = String(validating: head, as: UTF8.self), !text.unicodeScalars.contains(where: { $0.value < 0x20 }) {
            return text + more
        }
        return "0x" + head.map { String(format: "%02x", $0) }.joined() + more
    }
}

