/// Labels (topic names) computed from attributes of a job, as a pipeline engine routes its
/// jobs to resource pools: each attribute's value if it is one of the known values, else
/// `other`, joined with dots. `Labels(["build", "test"], ["ios", "android"])` gives
/// `build.ios` for (build, ios) and `test.other` for (test, web), so a pool can serve
/// `["build.ios", "build.other"]` and another `["other.other"]`, and a value nobody
/// planned for still lands in a label some pool serves.
public struct Labels: Sendable {
    public let known: [Set<String>]
    public static let other = "other"

    public init(_ known: [String]...) {
        precondition(!known.isEmpty, "at least one attribute")
        self.known = known.map(Set.init)
    }

    /// The label of a job with these attribute values, one per attribute.
    public func label(_ values: [String?]) -> String {
        precondition(values.count == known.count, "one value per attribute")
        return zip(values, known).map { value, known in value.flatMap { known.contains($0) ? $0 : nil } ?? Self.other }.joined(separator: ".")
    }

    /// Every label these attributes can give (each known value and `other`, per attribute).
    public var all: [String] {
        known.reduce([""]) { prefixes, values in
            prefixes.flatMap { p in (values.sorted() + [Self.other]).map { p.isEmpty ? $0 : "\(p).\($0)" } }
        }
    }
}
