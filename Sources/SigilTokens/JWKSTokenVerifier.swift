import Foundation
import JWTKit
import SigilCore
import SigilCrypto
import Synchronization

/// The claims of a projected service-account token (`kubernetes.io` as Kubernetes writes it).
struct KubernetesClaims: JWTPayload {
    struct Named: Codable, Sendable {
        let name: String?
        let uid: String?
    }
    struct Kubernetes: Codable, Sendable {
        let namespace: String?
        let serviceaccount: Named?
        let pod: Named?
    }

    let iss: String?
    let sub: String?
    let aud: AudienceClaim?
    let exp: Double?
    let nbf: Double?
    let iat: Double?
    let kubernetes: Kubernetes?

    enum CodingKeys: String, CodingKey {
        case iss, sub, aud, exp, nbf, iat
        case kubernetes = "kubernetes.io"
    }

    /// Time claims are checked by `JWKSTokenVerifier` against the injected clock, not here.
    func verify(using algorithm: some JWTAlgorithm) async throws {}
}

/// Verifies RS/ES/PS-signed projected tokens against the issuer's JWKS, with jwt-kit doing the JOSE.
///
/// Before jwt-kit sees a token, its header is screened: only RS/ES/PS 256/384/512; the `kid` must name a key
/// of the matching type (no key confusion); `jku`, `x5u`, `jwk`, `x5c` and `crit` are refused, because keys
/// come only from the configured JWKS.
public final class JWKSTokenVerifier: TokenVerifier {
    private struct KeySet: Sendable {
        let collection: JWTKeyCollection
        /// kid → (kty, crv)
        let types: [String: (keyType: String, curve: String?)]
        let fetchedAt: Date
    }

    private let policy: TokenPolicy
    private let source: any JWKSSource
    private let clock: any WallClock
    private let keys = Mutex<KeySet?>(nil)
    private let refreshing = Mutex<Date?>(nil)

    public init(policy: TokenPolicy, source: any JWKSSource, clock: any WallClock) {
        self.policy = policy
        self.source = source
        self.clock = clock
    }

    static let allowedAlgorithms: [String: (keyType: String, curve: String?)] = [
        "RS256": ("RSA", nil), "RS384": ("RSA", nil), "RS512": ("RSA", nil),
        "PS256": ("RSA", nil), "PS384": ("RSA", nil), "PS512": ("RSA", nil),
        "ES256": ("EC", "P-256"), "ES384": ("EC", "P-384"), "ES512": ("EC", "P-521"),
    ]

    public func verify(_ token: String) async throws -> VerifiedToken {
        func invalid(_ why: String) -> CAError { CAError(.tokenInvalid, reason: why) }
        guard token.utf8.count <= 16 * 1024 else { throw invalid("token longer than 16 KiB") }
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, parts.allSatisfy({ !$0.isEmpty }) else {
            throw invalid("not a signed JWT (JWS compact form)")
        }
        guard let headerData = Data(base64URL: String(parts[0])), let claimsData = Data(base64URL: String(parts[1]))
        else {
            throw invalid("JWT header or claims are not base64url")
        }
        // Duplicate names, invalid UTF-8 or loose syntax: the header check below and JWTKit must read one meaning.
        try StrictJSON.validate(Array(headerData), code: .tokenInvalid, maxDepth: 4)
        try StrictJSON.validate(Array(claimsData), code: .tokenInvalid, maxDepth: 8)
        guard let header = try? JSONSerialization.jsonObject(with: headerData) as? [String: Any] else {
            throw invalid("JWT header is not a JSON object")
        }
        guard let algorithm = header["alg"] as? String, let expected = Self.allowedAlgorithms[algorithm] else {
            throw invalid("JWT algorithm is not allowed (only RS, ES and PS with SHA-256, -384 or -512)")
        }
        for forbidden in ["jku", "x5u", "jwk", "x5c", "crit"] where header[forbidden] != nil {
            throw invalid("JWT header field \(forbidden) is not accepted")
        }
        guard let kid = header["kid"] as? String, !kid.isEmpty else { throw invalid("JWT has no kid") }

        var keySet = try await currentKeys()
        if keySet.types[kid] == nil, let refreshed = try await refreshIfAllowed() { keySet = refreshed }
        guard let keyType = keySet.types[kid] else { throw invalid("kid is not in the issuer's JWKS") }
        guard keyType.keyType == expected.keyType, expected.curve == nil || keyType.curve == expected.curve else {
            throw invalid("\(algorithm) cannot be used with a \(keyType.keyType) key")
        }

        let claims: KubernetesClaims
        do {
            claims = try await keySet.collection.verify(token, as: KubernetesClaims.self)
        } catch {
            throw invalid("JWT signature or encoding invalid")
        }
        return try check(claims, keyID: kid)
    }

    /// Whether the key that verified `token` is still in the issuer's key set as last fetched.
    public func stillTrusts(_ token: VerifiedToken) -> Bool {
        guard let keyID = token.keyID else { return true }
        return keys.withLock { $0?.types[keyID] != nil }
    }

    /// Fetches the JWKS now (the periodic refresh, `token_jwks_refresh`): keys that left it stop verifying at
    /// once, and cached verifications by them end (`stillTrusts`). Fetch failures keep the current keys.
    /// - Returns: the kids that left the set.
    @discardableResult
    public func refresh() async throws -> Set<String> {
        let before = Set(keys.withLock { $0?.types.keys.map { $0 } } ?? [])
        let after = Set(try await load().types.keys)
        return before.subtracting(after)
    }

    private func check(_ claims: KubernetesClaims, keyID: String) throws -> VerifiedToken {
        let now = clock.now.timeIntervalSince1970
        let leeway = policy.leeway.timeInterval
        // Legacy secret-based tokens carry no exp and no audience: never accepted.
        guard let exp = claims.exp, let audience = claims.aud?.value else {
            throw CAError(.tokenInvalid, reason: "token lacks exp or aud (legacy service-account token)")
        }
        guard claims.iss == policy.issuer else {
            throw CAError(.tokenInvalid, reason: "token issuer is not the configured issuer")
        }
        let audiences = policy.audiences.intersection(audience)
        guard !audiences.isEmpty else {
            throw CAError(
                .audienceMismatch,
                reason: "token audience includes none of \(policy.audiences.sorted().joined(separator: ", "))")
        }
        guard now < exp + leeway else { throw CAError(.tokenExpired, reason: "token expired") }
        if let nbf = claims.nbf, now + leeway < nbf {
            throw CAError(.tokenInvalid, reason: "token not valid yet (nbf)")
        }
        if let iat = claims.iat, now + leeway < iat {
            throw CAError(.tokenInvalid, reason: "token issued in the future (iat)")
        }
        guard let namespace = claims.kubernetes?.namespace, let account = claims.kubernetes?.serviceaccount?.name else {
            throw CAError(.tokenInvalid, reason: "token lacks kubernetes.io namespace or service account")
        }
        guard claims.sub == "system:serviceaccount:\(namespace):\(account)" else {
            throw CAError(.tokenInvalid, reason: "token sub does not match its kubernetes.io claims")
        }
        return VerifiedToken(
            identity: WorkloadIdentity(namespace: namespace, serviceAccount: account),
            expiresAt: Date(timeIntervalSince1970: exp), audiences: audiences, podName: claims.kubernetes?.pod?.name,
            keyID: keyID)
    }

    private func currentKeys() async throws -> KeySet {
        if let keySet = keys.withLock({ $0 }) { return keySet }
        return try await load()
    }

    /// Fetches the JWKS again unless that happened less than `refreshInterval` ago (unknown kids must not
    /// turn into a request flood against the issuer).
    private func refreshIfAllowed() async throws -> KeySet? {
        let now = clock.now
        let allowed = refreshing.withLock { last -> Bool in
            if let last, now.timeIntervalSince(last) < policy.refreshInterval.timeInterval { return false }
            last = now
            return true
        }
        return allowed ? try await load() : nil
    }

    private func load() async throws -> KeySet {
        let data: Data
        do {
            data = try await source.fetchJWKS()
        } catch {
            throw CAError(.tokenInvalid, reason: "issuer keys unavailable: \(error)")
        }
        guard let jwks = try? JSONDecoder().decode(JWKS.self, from: data) else {
            throw CAError(.tokenInvalid, reason: "issuer JWKS does not parse")
        }
        let collection = JWTKeyCollection()
        var types: [String: (keyType: String, curve: String?)] = [:]
        for jwk in jwks.keys {
            guard let kid = jwk.keyIdentifier?.string else { continue }
            let keyType: String
            switch jwk.keyType {
            case .rsa: keyType = "RSA"
            case .ecdsa: keyType = "EC"
            default: continue
            }
            // isDefault false: a token naming an unknown kid must never fall back to some other key.
            guard (try? await collection.add(jwk: jwk, isDefault: false)) != nil else { continue }
            types[kid] = (keyType, jwk.curve?.rawValue)
        }
        let keySet = KeySet(collection: collection, types: types, fetchedAt: clock.now)
        keys.withLock { $0 = keySet }
        // Any fetch counts against the refresh limit, so the first unknown kid does not fetch twice.
        let fetchedAt = keySet.fetchedAt
        refreshing.withLock { $0 = max($0 ?? fetchedAt, fetchedAt) }
        return keySet
    }
}
