import Foundation
import NIOCore
import NIOSSL

/// TLS to the broker: the broker's certificate is verified against `trustedCertificatesFile`
/// (or the system's trust roots) and must name `serverName` (or the host connected to).
public struct ClientTLS: Sendable, Equatable {
    /// PEM file of the certificates trusted to vouch for the broker: the authority that
    /// signed its certificate, or that certificate itself. nil: the system's trust roots.
    public var trustedCertificatesFile: String?
    /// The name the broker's certificate must carry, also sent as SNI. nil: the host the
    /// client connects to; an IP address is checked against the certificate's IP entries
    /// (and sent as no SNI, which may not carry addresses).
    public var serverName: String?

    public init(trustedCertificatesFile: String? = nil, serverName: String? = nil) {
        self.trustedCertificatesFile = trustedCertificatesFile
        self.serverName = serverName
    }

    /// The context for one connection. Built at each connect, so a replaced trust file is
    /// read on the next reconnect.
    func makeContext() throws -> NIOSSLContext {
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.certificateVerification = .fullVerification
        configuration.minimumTLSVersion = .tlsv12
        if let path = trustedCertificatesFile {
            let bytes = try Self.readPEM(path)
            let certificates: [NIOSSLCertificate]
            do {
                certificates = try NIOSSLCertificate.fromPEMBytes(bytes)
            } catch {
                throw ClientTLSError(.notPEM, "TLS trusted certificates file \(path) holds no valid PEM certificate (\(error))")
            }
            guard !certificates.isEmpty else { throw ClientTLSError(.notPEM, "TLS trusted certificates file \(path) holds no PEM certificate") }
            configuration.trustRoots = .certificates(certificates)
        }
        do {
            return try NIOSSLContext(configuration: configuration)
        } catch {
            throw ClientTLSError(.handshakeFailed, "cannot set up TLS: \(error)")
        }
    }

    /// The name sent as SNI and checked by NIOSSL: nil for an IP address, which NIOSSL then
    /// checks against the address connected to.
    func sniName(host: String) -> String? {
        let name = serverName ?? host
        return (try? SocketAddress(ipAddress: name, port: 0)) == nil ? name : nil
    }

    private static func readPEM(_ path: String) throws -> [UInt8] {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw ClientTLSError(.missingFile, "TLS trusted certificates file \(path) does not exist")
        }
        guard !isDirectory.boolValue, let data = FileManager.default.contents(atPath: path) else {
            throw ClientTLSError(.unreadableFile, "cannot read the TLS trusted certificates file \(path) (a directory, or no permission)")
        }
        let bytes = [UInt8](data)
        let marker = Array("-----BEGIN ".utf8)
        guard bytes.count >= marker.count, (0...(bytes.count - marker.count)).contains(where: { bytes[$0..<$0 + marker.count].elementsEqual(marker) }) else {
            throw ClientTLSError(.notPEM, "TLS trusted certificates file \(path) is not PEM (no '-----BEGIN' line)")
        }
        return bytes
    }
}

/// TLS to the broker failed in a way connecting again will not mend: a trust file that
/// cannot be used, a certificate the client does not trust, a peer that does not speak TLS.
public struct ClientTLSError: Error, Sendable, Equatable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        fileprivate enum Base { case missingFile, unreadableFile, notPEM, untrusted, handshakeFailed }
        fileprivate let base: Base
        public var description: String { "\(base)" }

        public static let missingFile = Code(base: .missingFile)
        /// A directory, or a file this process may not read.
        public static let unreadableFile = Code(base: .unreadableFile)
        public static let notPEM = Code(base: .notPEM)
        /// The broker's certificate is not signed by a trusted authority, has expired, or
        /// does not carry the name (or address) connected to.
        public static let untrusted = Code(base: .untrusted)
        /// Any other TLS failure, e.g. a broker that serves plain TCP.
        public static let handshakeFailed = Code(base: .handshakeFailed)
    }

    public let code: Code
    public let message: String

    init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }

    /// The error a TLS handler reported during the handshake with `peer`, or nil when it
    /// is no handshake failure (or the peer just went away, which a reconnect may mend).
    static func handshake(_ error: any Error, peer: String) -> ClientTLSError? {
        if let e = error as? NIOSSLExtraError, e == .failedToValidateHostname {
            return ClientTLSError(.untrusted, "the broker's TLS certificate at \(peer) does not carry the name connected to (\(e))")
        }
        guard let e = error as? NIOSSLError, case .handshakeFailed(let reason) = e, reason != .sslError([.eofDuringHandshake]) else { return nil }
        let detail = reasons("\(reason)")
        if detail.contains("CERTIFICATE_VERIFY_FAILED") {
            return ClientTLSError(
                .untrusted, "the broker's TLS certificate at \(peer) is not trusted (\(detail)): no authority this client trusts signed it, or it has expired")
        }
        return ClientTLSError(.handshakeFailed, "TLS handshake with \(peer) failed (\(detail)); does the broker serve TLS?")
    }

    /// The reason names in BoringSSL's error text ("error:1000007d:SSL
    /// routines:OPENSSL_internal:CERTIFICATE_VERIFY_FAILED at <source file>:<line>" gives
    /// CERTIFICATE_VERIFY_FAILED), or the whole text when it has none.
    private static func reasons(_ text: String) -> String {
        let names = text.components(separatedBy: "OPENSSL_internal:").dropFirst().map { $0.prefix { $0.isLetter || $0.isNumber || $0 == "_" } }
        return names.isEmpty ? text : names.joined(separator: ", ")
    }
}
