import Foundation
import SigilCore
import NIOSSL

/// A `postgres://user[:password]@host[:port]/database[?sslmode=…&sslrootcert=FILE]` store URL, parsed.
///
/// TLS follows libpq's `sslmode` names. Without `sslmode`, a non-loopback host gets `verify-full` (TLS, the
/// server's certificate must chain to a trusted root and name the host): a CA's store may not travel in
/// clear text or to an impostor by default. A loopback host (127.0.0.0/8, ::1, `localhost`) gets `prefer`,
/// as the traffic never leaves the machine. Plain connections elsewhere need `sslmode=disable` in the URL.
public struct PostgresLocation: Sendable, Equatable {
    public enum TLSMode: String, Sendable, CaseIterable {
        /// No TLS.
        case disable
        /// TLS if the server offers it, without verifying the server (libpq's `allow` is treated the same).
        case prefer
        /// TLS required, the server not verified.
        case require
        /// TLS required, the server's certificate must chain to a trusted root.
        case verifyCA = "verify-ca"
        /// As `verify-ca`, and the certificate must name the host.
        case verifyFull = "verify-full"
    }

    public let host: String
    public let port: Int
    public let user: String
    public let password: String?
    public let database: String?
    public let tlsMode: TLSMode
    /// PEM roots for `verify-ca`/`verify-full` (`sslrootcert`); nil: the system's roots.
    public let rootCertificates: String?

    public init(url: String) throws {
        guard let components = URLComponents(string: url),
            components.scheme == "postgres" || components.scheme == "postgresql",
            let host = components.host, !host.isEmpty, let user = components.user
        else { throw StorageError(.unavailable, reason: "store URL must be postgres://user@host:port/database") }
        self.host = host
        port = components.port ?? 5432
        self.user = user
        password = components.password
        let path = components.path.hasPrefix("/") ? String(components.path.dropFirst()) : components.path
        database = path.isEmpty ? nil : path
        let items = components.queryItems ?? []
        for item in items where !["sslmode", "sslrootcert"].contains(item.name) {
            throw StorageError(
                .unavailable, reason: "store URL parameter \(item.name) is not supported (sslmode, sslrootcert)")
        }
        rootCertificates = items.first { $0.name == "sslrootcert" }?.value
        if let mode = items.first(where: { $0.name == "sslmode" })?.value {
            switch mode {
            case "allow", "prefer": tlsMode = .prefer
            default:
                guard let parsed = TLSMode(rawValue: mode) else {
                    throw StorageError(
                        .unavailable,
                        reason: "sslmode \(mode) is not one of disable, allow, prefer, require, verify-ca, verify-full")
                }
                tlsMode = parsed
            }
        } else {
            tlsMode = NetworkAddress.isLoopback(host) ? .prefer : .verifyFull
        }
    }

    /// Where the store is, for messages: never the password.
    public var description: String {
        "postgres://\(user)@\(host):\(port)/\(database ?? "") (sslmode \(tlsMode.rawValue))"
    }

    /// The TLS client configuration for this mode (nil for `disable`).
    func tlsConfiguration() throws -> TLSConfiguration? {
        var tls = TLSConfiguration.makeClientConfiguration()
        switch tlsMode {
        case .disable: return nil
        case .prefer, .require: tls.certificateVerification = .none
        case .verifyCA: tls.certificateVerification = .noHostnameVerification
        case .verifyFull: tls.certificateVerification = .fullVerification
        }
        if let rootCertificates, tlsMode == .verifyCA || tlsMode == .verifyFull {
            guard FileManager.default.isReadableFile(atPath: rootCertificates) else {
                throw StorageError(.unavailable, reason: "sslrootcert \(rootCertificates) cannot be read")
            }
            tls.trustRoots = .file(rootCertificates)
        }
        return tls
    }
}
