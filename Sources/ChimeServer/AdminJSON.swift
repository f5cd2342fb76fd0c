#if canImport(Glibc)
import Glibc
#endif

/// A JSON value of the admin API, written with its fields in the order given: the shapes
/// documented in docs/formats.md ("admin API v1") read the same on the wire, absent values
/// are an explicit `null` rather than a missing field, and no Codable type has to mirror
/// every engine struct.
package enum JSONValue: Sendable {
    case object([(String, JSONValue)])
    case array([JSONValue])
    case string(String)
    case number(Int64)
    case bool(Bool)
    case null

    static func int(_ value: Int) -> JSONValue { .number(Int64(value)) }
    static func int(_ value: Int64) -> JSONValue { .number(value) }

    /// An optional number: `null` when absent.
    static func int(_ value: Int64?) -> JSONValue { value.map { .number($0) } ?? .null }

    /// A 64-bit identifier as a string: JavaScript's numbers lose precision above 2^53.
    static func id(_ value: UInt64) -> JSONValue { .string(String(value)) }

    /// A time as ISO-8601 in UTC with milliseconds (`2026-11-24T06:10:34.120Z`); `null`
    /// when absent. Sent next to the same time in milliseconds since the epoch.
    static func iso8601(_ milliseconds: Int64?) -> JSONValue {
        guard let milliseconds else { return .null }
        let seconds = milliseconds >= 0 ? milliseconds / 1000 : (milliseconds - 999) / 1000
        let millis = milliseconds - seconds * 1000
        var t = time_t(seconds)
        var parts = tm()
        guard gmtime_r(&t, &parts) != nil else { return .null }
        func pad(_ n: Int32, _ width: Int) -> String {
            let s = String(n)
            return String(repeating: "0", count: max(0, width - s.count)) + s
        }
        let date = "\(pad(parts.tm_year + 1900, 4))-\(pad(parts.tm_mon + 1, 2))-\(pad(parts.tm_mday, 2))"
        let time = "\(pad(parts.tm_hour, 2)):\(pad(parts.tm_min, 2)):\(pad(parts.tm_sec, 2)).\(pad(Int32(millis), 3))"
        return .string("\(date)T\(time)Z")
    }

    /// The compact text, UTF-8.
    var text: String {
        var out = ""
        write(to: &out)
        return out
    }

    private func write(to out: inout String) {
        switch self {
        case .object(let fields):
            out += "{"
            for (i, (name, value)) in fields.enumerated() {
                if i > 0 { out += "," }
                Self.quote(name, to: &out)
                out += ":"
                value.write(to: &out)
            }
            out += "}"
        case .array(let values):
            out += "["
            for (i, value) in values.enumerated() {
                if i > 0 { out += "," }
                value.write(to: &out)
            }
            out += "]"
        case .string(let s): Self.quote(s, to: &out)
        case .number(let n): out += String(n)
        case .bool(let b): out += b ? "true" : "false"
        case .null: out += "null"
        }
    }

    /// A JSON string literal (RFC 8259): quote, backslash and control characters escaped.
    /// The CLI's `--json` output uses it too.
    package static func quote(_ s: String, to out: inout String) {
        out += "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20:
                let hex = String(scalar.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(scalar)
            }
        }
        out += "\""
    }
}
