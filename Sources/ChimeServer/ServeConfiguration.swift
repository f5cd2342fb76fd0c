import Foundation
import TOMLKit

/// Settings of `chime serve`, from three layers: a file (TOML or JSON), then `CHIME_*`
/// environment variables, then command-line flags; each set value overrides the layers
/// before it, and what no layer sets keeps its default. Every field is optional here so
/// that "not set" can be told from "set to the default".
public struct ServeConfiguration: Codable, Sendable, Equatable {
    public var data: String?
    public var host: String?
    public var port: Int?
    public var adminHost: String?
    public var adminPort: Int?
    public var admin: Bool?
    public var adminMaxConnections: Int?
    public var adminIdleTimeoutSeconds: Int?
    public var tokens: [String]?
    public var durability: String?
    public var segmentMiB: Int?
    public var partitions: Int?
    public var retentionHours: Double?
    public var retentionMiB: Int?
    public var autoCreateTopics: Bool?
    public var tlsCert: String?
    public var tlsKey: String?
    public var maxConnections: Int?
    public var maxFrameBytes: Int?
    public var idleTimeoutSeconds: Int?
    public var maxTopics: Int?
    public var maxPartitions: Int?
    public var maxGroups: Int?
    public var maxOpenFiles: Int?
    public var maxUnauthenticatedConnections: Int?
    public var maxHelloBytes: Int?
    public var helloTimeoutSeconds: Int?
    public var connectionBufferMiB: Int?
    public var logLevel: String?

    public init() {}

    /// File keys: snake_case, as configuration files usually spell them.
    enum CodingKeys: String, CodingKey, CaseIterable {
        case data, host, port, admin, tokens, durability, partitions
        case adminHost = "admin_host", adminPort = "admin_port", segmentMiB = "segment_mib", retentionHours = "retention_hours"
        case retentionMiB = "retention_mib", autoCreateTopics = "auto_create_topics", tlsCert = "tls_cert", tlsKey = "tls_key"
        case maxConnections = "max_connections", maxFrameBytes = "max_frame_bytes", idleTimeoutSeconds = "idle_timeout_seconds"
        case adminMaxConnections = "admin_max_connections", adminIdleTimeoutSeconds = "admin_idle_timeout_seconds"
        case maxTopics = "max_topics", maxPartitions = "max_partitions", maxGroups = "max_groups", maxOpenFiles = "max_open_files"
        case maxUnauthenticatedConnections = "max_unauthenticated_connections", maxHelloBytes = "max_hello_bytes"
        case helloTimeoutSeconds = "hello_timeout_seconds", connectionBufferMiB = "connection_buffer_mib"
        case logLevel = "log_level"
    }

    /// A configuration problem, naming where it is (file and key, or variable).
    public struct Problem: Error, CustomStringConvertible, Equatable {
        public let description: String
        init(_ d: String) { description = d }
    }

    // MARK: - Layers

    /// Reads a TOML (`.toml`) or JSON (`.json`) file; other names are tried as TOML, then
    /// JSON. Unknown keys are refused: a misspelt setting silently ignored is worse.
    public static func load(file path: String) throws -> ServeConfiguration {
        guard let bytes = FileManager.default.contents(atPath: path) else {
            throw Problem("cannot read the configuration file \(path)")
        }
        guard let text = String(data: bytes, encoding: .utf8) else { throw Problem("\(path) is not UTF-8 text") }
        let isJSON = path.hasSuffix(".json") || (!path.hasSuffix(".toml") && text.trimmingCharacters(in: .whitespacesAndNewlines).hasPrefix("{"))
        let keys: [String]
        let config: ServeConfiguration
        do {
            if isJSON {
                guard let object = try JSONSerialization.jsonObject(with: bytes) as? [String: Any] else {
                    throw Problem("\(path): the top level must be an object")
                }
                keys = Array(object.keys)
                config = try JSONDecoder().decode(ServeConfiguration.self, from: bytes)
            } else {
                let table = try TOMLTable(string: text)
                keys = table.keys
                // TOML tells integers from floats; whole hours are written as integers.
                if let hours = table[CodingKeys.retentionHours.rawValue]?.int { table[CodingKeys.retentionHours.rawValue] = Double(hours) }
                config = try TOMLDecoder().decode(ServeConfiguration.self, from: table)
            }
        } catch let p as Problem {
            throw p
        } catch let e as TOMLParseError {
            throw Problem("\(path):\(e.source.begin.line):\(e.source.begin.column): \(e.description)")
        } catch let DecodingError.typeMismatch(_, context), let DecodingError.valueNotFound(_, context),
            // TOMLKit's answer to a value of the wrong type: every setting is optional, so a
            // key "not found" is one that is there with the wrong type.
            let DecodingError.keyNotFound(_, context)
        {
            throw Problem("\(path): \(context.codingPath.map(\.stringValue).joined(separator: ".")) has the wrong type (\(context.debugDescription))")
        } catch {
            throw Problem("\(path): \(error)")
        }
        let known = CodingKeys.allCases.map(\.rawValue)
        if let unknown = keys.sorted().first(where: { !known.contains($0) }) {
            throw Problem("\(path): unknown setting '\(unknown)'; settings are \(known.joined(separator: ", "))")
        }
        if let problem = Self.emptyTokenProblem(config.tokens, setting: "\(path): \(CodingKeys.tokens.rawValue)") { throw problem }
        return config
    }

    /// An empty token in a list (`tokens = [""]`, `--token ""`): a client that sends no
    /// token would match it, so it turned authentication off while the list, not being
    /// empty, said it was on. Refused wherever a token list is read; the environment's
    /// comma-separated list drops empty items instead (`CHIME_TOKENS=a,,b`).
    public static func emptyTokenProblem(_ tokens: [String]?, setting: String) -> Problem? {
        guard let tokens, tokens.contains(where: { OptionsError.isBlank($0) }) else { return nil }
        return Problem("\(setting): a token must not be empty (an empty token would let clients in without one); remove it or set a real one")
    }

    /// `CHIME_*` variables. Tokens are comma-separated; booleans are true/false/1/0.
    public static func environment(_ env: [String: String]) throws -> ServeConfiguration {
        var c = ServeConfiguration()
        func int(_ name: String) throws -> Int? {
            guard let v = env[name] else { return nil }
            guard let n = Int(v) else { throw Problem("\(name)=\(v) is not a whole number") }
            return n
        }
        func bool(_ name: String) throws -> Bool? {
            guard let v = env[name]?.lowercased() else { return nil }
            switch v {
            case "1", "true", "yes", "on": return true
            case "0", "false", "no", "off": return false
            default: throw Problem("\(name)=\(v) is not true or false")
            }
        }
        c.data = env["CHIME_DATA"]
        c.host = env["CHIME_HOST"]
        c.port = try int("CHIME_PORT")
        c.adminHost = env["CHIME_ADMIN_HOST"]
        c.adminPort = try int("CHIME_ADMIN_PORT")
        c.admin = try bool("CHIME_ADMIN")
        c.adminMaxConnections = try int("CHIME_ADMIN_MAX_CONNECTIONS")
        c.adminIdleTimeoutSeconds = try int("CHIME_ADMIN_IDLE_TIMEOUT_SECONDS")
        // An empty list is no setting: an unset variable expanded into an empty one must
        // not turn off the authentication a file asks for.
        c.tokens = env["CHIME_TOKENS"].map { $0.split(separator: ",").map { String($0).trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty } }
            .flatMap { $0.isEmpty ? nil : $0 }
        c.durability = env["CHIME_DURABILITY"]
        c.segmentMiB = try int("CHIME_SEGMENT_MIB")
        c.partitions = try int("CHIME_PARTITIONS")
        if let v = env["CHIME_RETENTION_HOURS"] {
            guard let h = Double(v) else { throw Problem("CHIME_RETENTION_HOURS=\(v) is not a number") }
            c.retentionHours = h
        }
        c.retentionMiB = try int("CHIME_RETENTION_MIB")
        c.autoCreateTopics = try bool("CHIME_AUTO_CREATE_TOPICS")
        c.tlsCert = env["CHIME_TLS_CERT"]
        c.tlsKey = env["CHIME_TLS_KEY"]
        c.maxConnections = try int("CHIME_MAX_CONNECTIONS")
        c.maxFrameBytes = try int("CHIME_MAX_FRAME_BYTES")
        c.idleTimeoutSeconds = try int("CHIME_IDLE_TIMEOUT_SECONDS")
        c.maxTopics = try int("CHIME_MAX_TOPICS")
        c.maxPartitions = try int("CHIME_MAX_PARTITIONS")
        c.maxGroups = try int("CHIME_MAX_GROUPS")
        c.maxOpenFiles = try int("CHIME_MAX_OPEN_FILES")
        c.maxUnauthenticatedConnections = try int("CHIME_MAX_UNAUTHENTICATED_CONNECTIONS")
        c.maxHelloBytes = try int("CHIME_MAX_HELLO_BYTES")
        c.helloTimeoutSeconds = try int("CHIME_HELLO_TIMEOUT_SECONDS")
        c.connectionBufferMiB = try int("CHIME_CONNECTION_BUFFER_MIB")
        c.logLevel = env["CHIME_LOG_LEVEL"]
        return c
    }

    /// This layer with `over`'s set values on top.
    public func overridden(by over: ServeConfiguration) -> ServeConfiguration {
        var c = self
        c.data = over.data ?? data
        c.host = over.host ?? host
        c.port = over.port ?? port
        c.adminHost = over.adminHost ?? adminHost
        c.adminPort = over.adminPort ?? adminPort
        c.admin = over.admin ?? admin
        c.adminMaxConnections = over.adminMaxConnections ?? adminMaxConnections
        c.adminIdleTimeoutSeconds = over.adminIdleTimeoutSeconds ?? adminIdleTimeoutSeconds
        c.tokens = over.tokens ?? tokens
        c.durability = over.durability ?? durability
        c.segmentMiB = over.segmentMiB ?? segmentMiB
        c.partitions = over.partitions ?? partitions
        c.retentionHours = over.retentionHours ?? retentionHours
        c.retentionMiB = over.retentionMiB ?? retentionMiB
        c.autoCreateTopics = over.autoCreateTopics ?? autoCreateTopics
        c.tlsCert = over.tlsCert ?? tlsCert
        c.tlsKey = over.tlsKey ?? tlsKey
        c.maxConnections = over.maxConnections ?? maxConnections
        c.maxFrameBytes = over.maxFrameBytes ?? maxFrameBytes
        c.idleTimeoutSeconds = over.idleTimeoutSeconds ?? idleTimeoutSeconds
        c.maxTopics = over.maxTopics ?? maxTopics
        c.maxPartitions = over.maxPartitions ?? maxPartitions
        c.maxGroups = over.maxGroups ?? maxGroups
        c.maxOpenFiles = over.maxOpenFiles ?? maxOpenFiles
        c.maxUnauthenticatedConnections = over.maxUnauthenticatedConnections ?? maxUnauthenticatedConnections
        c.maxHelloBytes = over.maxHelloBytes ?? maxHelloBytes
        c.helloTimeoutSeconds = over.helloTimeoutSeconds ?? helloTimeoutSeconds
        c.connectionBufferMiB = over.connectionBufferMiB ?? connectionBufferMiB
        c.logLevel = over.logLevel ?? logLevel
        return c
    }

    /// File, then environment, then flags.
    public static func resolve(file: String?, environment env: [String: String], flags: ServeConfiguration) throws -> ServeConfiguration {
        let base = try file.map { try load(file: $0) } ?? ServeConfiguration()
        return base.overridden(by: try environment(env)).overridden(by: flags)
    }
}
