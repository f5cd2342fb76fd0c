/// A server or admin option that cannot be served as given, found when the server starts,
/// before it binds: `ServerOptions.validate()` and `AdminOptions.validate()` throw it.
public struct OptionsError: Error, CustomStringConvertible, Equatable {
    private enum Code: Equatable {
        /// A token that is empty (or only whitespace). The protocol's hello without a token
        /// carries an empty one, so an empty configured token let anyone in while the
        /// token list, being non-empty, said authentication was on.
        case emptyToken
        /// A limit below the least value that still serves anyone.
        case belowMinimum(Int)
        /// A token setting that names a scope but cannot be read (`TokenGrant`).
        case badToken(String)
        /// A value outside the range the option allows.
        case outOfRange(ClosedRange<Int>, Int)
    }

    private let code: Code
    /// The option, as its owner names it (`tokens`, `maxConnections`, …).
    public let option: String

    private init(_ code: Code, option: String) {
        self.code = code
        self.option = option
    }

    static func emptyToken(_ option: String) -> OptionsError { OptionsError(.emptyToken, option: option) }
    static func belowMinimum(_ option: String, _ minimum: Int) -> OptionsError { OptionsError(.belowMinimum(minimum), option: option) }
    static func outOfRange(_ option: String, _ range: ClosedRange<Int>, _ value: Int) -> OptionsError {
        OptionsError(.outOfRange(range, value), option: option)
    }

    /// Refuses the first token setting `TokenGrant` cannot read.
    static func checkTokens(_ tokens: [String]) throws(OptionsError) {
        do {
            _ = try TokenTable(parsing: tokens)
        } catch {
            throw OptionsError(.badToken(error.description), option: "tokens")
        }
    }

    /// Whether it is an empty token (the one problem callers tell apart to explain it).
    public var isEmptyToken: Bool { code == .emptyToken }

    public var description: String {
        switch code {
        case .emptyToken:
            "\(option): a token must not be empty (an empty token would let clients in without one); remove it or set a real one"
        case .belowMinimum(let minimum): "\(option) must be at least \(minimum)"
        case .outOfRange(let range, let value): "\(option) must be \(range.lowerBound)...\(range.upperBound), not \(value)"
        case .badToken(let why): "\(option): \(why) (a token is SECRET or SCOPE[@PATTERN[+PATTERN...]]:SECRET, SCOPE one of read, publish, admin)"
        }
    }

    /// Whether `token` is one no client should be admitted with: nothing but whitespace.
    static func isBlank(_ token: String) -> Bool { token.allSatisfy(\.isWhitespace) }
}
