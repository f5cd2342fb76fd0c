import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// The token for admin writes of a server without configured tokens: made once, kept in
/// `<data>/admin-token` (mode 0600: its owner only), the same across restarts so that
/// scripts can read it. Whoever can read the data directory can write through the admin
/// port; nobody else can, and no web page can make a browser do it.
public enum LocalAdminToken {
    public static let fileName = "admin-token"

    /// The token in `directory`'s file, made first if there is none.
    public static func loadOrCreate(directory: String) throws -> String {
        let path = directory + "/" + fileName
        if let text = try? String(contentsOfFile: path, encoding: .utf8) {
            let token = text.trimmingCharacters(in: .whitespacesAndNewlines)
            if !token.isEmpty { return token }
        }
        var generator = SystemRandomNumberGenerator()
        let token = (0..<4).map { _ in
            let hex = String(generator.next() as UInt64, radix: 16)
            return String(repeating: "0", count: 16 - hex.count) + hex
        }.joined()
        let temporary = path + ".tmp"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        guard fd >= 0 else { throw CocoaError(.fileWriteNoPermission, userInfo: [NSFilePathErrorKey: temporary]) }
        let bytes = Array((token + "\n").utf8)
        let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        let synced = fsync(fd)
        close(fd)
        guard written == bytes.count, synced == 0, rename(temporary, path) == 0 else {
            unlink(temporary)
            throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: path])
        }
        return token
    }
}
