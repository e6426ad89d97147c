import Foundation
import JWTKit
import SigilCore
import SigilTokens
import SigilCrypto
import Synchronization

/// Mints projected service-account tokens the way the Kubernetes API server does, with an EC P-256 key
/// (`ec-1`) and an RSA key (`rsa-1`), and publishes their JWKS.
struct TokenIssuer: Sendable {
    static let issuer = "https://kubernetes.default.svc.cluster.local"

    /// The claims of a projected token; every field can be left out or changed by a test.
    struct Claims: JWTPayload {
        struct Named: Codable, Sendable {
            var name: String?
            var uid: String?
        }
        struct Kubernetes: Codable, Sendable {
            var namespace: String?
            var serviceaccount: Named?
            var pod: Named?
        }
        /// `aud` as Kubernetes writes it (an array), or as a single string.
        enum Audience: Codable, Sendable {
            case list([String])
            case single(String)
            func encode(to encoder: any Encoder) throws {
                var container = encoder.singleValueContainer()
                switch self {
                case .list(let values): try container.encode(values)
                case .single(let value): try container.encode(value)
                }
            }
            init(from decoder: any Decoder) throws {
                let container = try decoder.singleValueContainer()
                if let value = try? container.decode(String.self) {
                    self = .single(value)
                } else {
                    self = .list(try container.decode([String].self))
                }
            }
        }

        var iss: String?
        var sub: String?
        var aud: Audience?
        var exp: Double?
        var nbf: Double?
        var iat: Double?
        var kubernetes: Kubernetes?

        enum CodingKeys: String, CodingKey {
            case iss, sub, aud, exp, nbf, iat
            case kubernetes = "kubernetes.io"
        }

        func verify(using algorithm: some JWTAlgorithm) async throws {}
    }

    let keys: JWTKeyCollection
    let ecKey: PrivateKey
    let rsaKey: PrivateKey

    init() async throws {
        ecKey = try PrivateKey.generate(.p256)
        rsaKey = try PrivateKey.generate(.rsa(bits: 2048))
        keys = JWTKeyCollection()
        await keys.add(ecdsa: try ES256PrivateKey(pem: ecKey.pkcs8PEM()), kid: "ec-1")
        await keys.add(rsa: try Insecure.RSA.PrivateKey(pem: rsaKey.pkcs8PEM()), digestAlgorithm: .sha256, kid: "rsa-1")
    }

    /// Claims for `namespace`/`serviceAccount` valid for ten minutes from `now`, audience `sigil`.
    static func claims(namespace: String = "default", serviceAccount: String = "web", at now: Date) -> Claims {
        let time = now.timeIntervalSince1970
        return Claims(
            iss: issuer, sub: "system:serviceaccount:\(namespace):\(serviceAccount)", aud: .list(["sigil"]),
            exp: time + 600, nbf: time - 10, iat: time - 10,
            kubernetes: .init(
                namespace: namespace, serviceaccount: .init(name: serviceAccount, uid: "sa-uid"),
                pod: .init(name: "\(serviceAccount)-7d9f8", uid: "pod-uid")))
    }

    /// A token signed with key `kid` (`ec-1` or `rsa-1`).
    func sign(_ claims: Claims, kid: String = "ec-1") async throws -> String {
        try await keys.sign(claims, kid: JWKIdentifier(string: kid))
    }

    /// The public JWKS, with `extra` JWK objects appended.
    func jwks(extra: [[String: String]] = []) throws -> Data {
        var ec = ecKey.jwkPublicParameters
        ec["kty"] = "EC"
        ec["kid"] = "ec-1"
        ec["use"] = "sig"
        var rsa = rsaKey.jwkPublicParameters
        rsa["kty"] = "RSA"
        rsa["kid"] = "rsa-1"
        rsa["use"] = "sig"
        return try JSONSerialization.data(withJSONObject: ["keys": [ec, rsa] + extra])
    }

    /// A compact JWS with a hand-written header and a meaningless signature, for header screening tests.
    static func unsigned(header: [String: String], claims: Claims) throws -> String {
        let headerJSON = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        return base64URL(Array(headerJSON)) + "." + base64URL(Array(try JSONEncoder().encode(claims))) + ".c2lnbmF0dXJl"
    }
}

/// A JWKS source that serves whatever the test sets and counts fetches.
final class StaticJWKSSource: JWKSSource {
    private let state: Mutex<(data: Data?, fetches: Int)>

    init(_ data: Data?) { state = Mutex((data, 0)) }

    var fetches: Int { state.withLock { $0.fetches } }

    /// Serves `data` from now on; nil makes fetches fail.
    func serve(_ data: Data?) { state.withLock { $0.data = data } }

    func fetchJWKS() async throws -> Data {
        let data = state.withLock { state -> Data? in
            state.fetches += 1
            return state.data
        }
        guard let data else { throw URLError(.cannotConnectToHost) }
        return data
    }
}
