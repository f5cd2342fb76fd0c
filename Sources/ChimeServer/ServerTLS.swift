import Foundation
import NIOSSL

/// TLS could not be set up from the configured files: the error names the file and says
/// what is wrong with it, so the operator can fix the right one.
public struct ServerTLSError: Error, Sendable, Equatable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        fileprivate enum Base { case missingFile, unreadableFile, notPEM, unusable }
        fileprivate let base: Base
        public var description: String { "\(base)" }

        public static let missingFile = Code(base: .missingFile)
        /// A directory, or a file this process may not read.
        public static let unreadableFile = Code(base: .unreadableFile)
        /// No PEM block, or one that does not parse as a certificate or an unencrypted key.
        public static let notPEM = Code(base: .notPEM)
        /// Both files parse but do not go together (a key that is not the certificate's).
        public static let unusable = Code(base: .unusable)
    }

    public let code: Code
    /// The file at fault.
    public let path: String
    public let message: String

    init(_ code: Code, _ path: String, _ message: String) {
        self.code = code
        self.path = path
        self.message = message
    }

    public var description: String { message }
}

extension ServerOptions.TLS {
    /// Reads and checks both files, then builds the one context every connection's TLS
    /// handler shares (building it per connection would parse the files each time).
    func makeContext() throws -> NIOSSLContext {
        let chainBytes = try Self.readPEM(certificateChainFile, "certificate chain")
        let chain: [NIOSSLCertificate]
        do {
            chain = try NIOSSLCertificate.fromPEMBytes(chainBytes)
        } catch {
            throw ServerTLSError(.notPEM, certificateChainFile, "TLS certificate chain file \(certificateChainFile) holds no valid PEM certificate (\(error))")
        }
        guard !chain.isEmpty else {
            throw ServerTLSError(.notPEM, certificateChainFile, "TLS certificate chain file \(certificateChainFile) holds no PEM certificate")
        }
        let keyBytes = try Self.readPEM(privateKeyFile, "private key")
        let key: NIOSSLPrivateKey
        do {
            key = try NIOSSLPrivateKey(bytes: keyBytes, format: .pem)
        } catch {
            throw ServerTLSError(.notPEM, privateKeyFile, "TLS private key file \(privateKeyFile) is not an unencrypted PEM private key (\(error))")
        }
        var configuration = TLSConfiguration.makeServerConfiguration(certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key))
        // NIOSSL would accept TLS 1.0 and 1.1, both deprecated (RFC 8996).
        configuration.minimumTLSVersion = .tlsv12
        do {
            return try NIOSSLContext(configuration: configuration)
        } catch {
            throw ServerTLSError(
                .unusable, privateKeyFile,
                "cannot use the TLS certificate in \(certificateChainFile) with the private key in \(privateKeyFile) (is it that certificate's key?): \(error)")
        }
    }

    /// The bytes of a PEM file; a missing, unreadable or non-PEM file is a `ServerTLSError`.
    private static func readPEM(_ path: String, _ what: String) throws -> [UInt8] {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw ServerTLSError(.missingFile, path, "TLS \(what) file \(path) does not exist")
        }
        guard !isDirectory.boolValue, let data = FileManager.default.contents(atPath: path) else {
            throw ServerTLSError(.unreadableFile, path, "cannot read the TLS \(what) file \(path) (a directory, or no permission)")
        }
        let bytes = [UInt8](data)
        guard containsPEMBlock(bytes) else {
            throw ServerTLSError(.notPEM, path, "TLS \(what) file \(path) is not PEM (no '-----BEGIN' line; DER files need converting with openssl)")
        }
        return bytes
    }
}

/// Whether `bytes` has a PEM block start (shared by the certificate and key checks).
func containsPEMBlock(_ bytes: [UInt8]) -> Bool {
    let marker = Array("-----BEGIN ".utf8)
    guard bytes.count >= marker.count else { return false }
    for start in 0...(bytes.count - marker.count) where bytes[start] == marker[0] {
        if bytes[start..<start + marker.count].elementsEqual(marker) { return true }
    }
    return false
}
