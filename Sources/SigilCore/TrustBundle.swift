import Foundation
import SigilCrypto

/// A SPIFFE trust bundle (SPIFFE Trust Domain and Bundle §4): a JWK set with one `x509-svid` key per root.
public struct SPIFFEBundle: Codable, Sendable, Equatable {
    public struct Key: Codable, Sendable, Equatable {
        public let use: String
        public let kty: String
        public let crv: String?
        public let x: String?
        public let y: String?
        public let n: String?
        public let e: String?
        /// Exactly one standard-base64 DER certificate; no `kid` for X.509 authorities.
        public let x5c: [String]
    }

    public let keys: [Key]
    public let spiffeSequence: Int64
    /// Seconds a consumer may wait before fetching the bundle again.
    public let spiffeRefreshHint: Int64

    enum CodingKeys: String, CodingKey {
        case keys
        case spiffeSequence = "spiffe_sequence"
        case spiffeRefreshHint = "spiffe_refresh_hint"
    }

    public init(roots: [Certificate], sequence: Int64, refreshHint: Duration) {
        keys = roots.map { root in
            let parameters = root.jwkPublicParameters
            return Key(
                use: "x509-svid", kty: root.publicKey.algorithm.jwkKeyType, crv: parameters["crv"], x: parameters["x"],
                y: parameters["y"], n: parameters["n"], e: parameters["e"], x5c: [Data(root.der).base64EncodedString()])
        }
        spiffeSequence = sequence
        spiffeRefreshHint = refreshHint.wholeSeconds
    }

    /// Canonical JSON (sorted keys) so that equal bundles have equal bytes and ETags.
    public func json() throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return try encoder.encode(self)
    }

    /// The roots as PEM, in order.
    public static func pem(_ roots: [Certificate]) -> String { roots.map(\.pem).joined() }
}
