import Foundation
import JWTKit
import SigilCore
import SigilCrypto
import SigilFiles

/// Local mode's development token issuer: an RSA key and its JWKS in the data directory, minting tokens
/// shaped exactly like Kubernetes projected service-account tokens. Never use it in production: whoever
/// can read the data directory can mint any identity.
public struct LocalTokenIssuer: Sendable {
    /// `iss` of local-mode tokens.
    public static let issuerURL = "https://sigil.local/dev-issuer"

    public let key: PrivateKey
    public let keyID: String

    public static func keyPath(_ dataDirectory: String) -> String { dataDirectory + "/dev-issuer.key" }
    public static func jwksPath(_ dataDirectory: String) -> String { dataDirectory + "/dev-issuer.jwks.json" }

    /// Loads the issuer from the data directory, creating key (0600) and JWKS (0644) when `create`.
    public static func load(dataDirectory: String, create: Bool) throws -> LocalTokenIssuer {
        let keyPath = keyPath(dataDirectory)
        let key: PrivateKey
        var info = stat()
        if lstat(keyPath, &info) == 0 {
            key = try PrivateKey(pem: String(decoding: try SecureFile.readPrivate(keyPath), as: UTF8.self))
        } else {
            guard create else {
                throw CAError.configuration(
                    reason:
                        "no local development issuer in \(dataDirectory): it exists only in local mode (run `sigil serve` without a token source)"
                )
            }
            key = try PrivateKey.generate(.rsa(bits: 2048))
            try SecureFile.write(Data(try key.pkcs8PEM().utf8), to: keyPath)
        }
        let issuer = LocalTokenIssuer(key: key, keyID: String(try key.publicKey().sha256Fingerprint.prefix(16)))
        try SecureFile.write(issuer.jwks(), to: jwksPath(dataDirectory), mode: 0o644)
        return issuer
    }

    /// The issuer's public JWKS (what a Kubernetes API server serves at its `jwks_uri`).
    public func jwks() throws -> Data {
        var jwk = key.jwkPublicParameters
        jwk["kty"] = "RSA"
        jwk["alg"] = "RS256"
        jwk["use"] = "sig"
        jwk["kid"] = keyID
        return try JSONSerialization.data(withJSONObject: ["keys": [jwk]], options: [.sortedKeys])
    }

    struct Claims: JWTPayload {
        struct Named: Codable {
            let name: String
            let uid: String
        }
        struct Kubernetes: Codable {
            let namespace: String
            let serviceaccount: Named
            let pod: Named
        }
        let iss: String
        let sub: String
        let aud: [String]
        let exp: Int64
        let iat: Int64
        let nbf: Int64
        let kubernetes: Kubernetes

        enum CodingKeys: String, CodingKey {
            case iss, sub, aud, exp, iat, nbf
            case kubernetes = "kubernetes.io"
        }

        func verify(using algorithm: some JWTAlgorithm) async throws {}
    }

    /// Mints a projected-token look-alike for `identity`.
    public func mint(identity: WorkloadIdentity, audience: String, ttl: Duration, now: Date) async throws -> String {
        let keys = JWTKeyCollection()
        await keys.add(
            rsa: try Insecure.RSA.PrivateKey(pem: key.pkcs8PEM()), digestAlgorithm: .sha256,
            kid: JWKIdentifier(string: keyID))
        let issuedAt = Int64(now.timeIntervalSince1970)
        let claims = Claims(
            iss: Self.issuerURL, sub: "system:serviceaccount:\(identity.namespace):\(identity.serviceAccount)",
            aud: [audience],
            exp: issuedAt + ttl.wholeSeconds, iat: issuedAt, nbf: issuedAt,
            kubernetes: .init(
                namespace: identity.namespace,
                serviceaccount: .init(name: identity.serviceAccount, uid: UUID().uuidString.lowercased()),
                pod: .init(name: "\(identity.serviceAccount)-dev", uid: UUID().uuidString.lowercased())))
        return try await keys.sign(claims, kid: JWKIdentifier(string: keyID))
    }
}
