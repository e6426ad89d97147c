import Foundation
import SigilCore

/// What a valid Kubernetes service-account token proves.
public struct VerifiedToken: Sendable, Equatable {
    public let identity: WorkloadIdentity
    public let expiresAt: Date
    /// `kubernetes.io.pod.name`, when the token is bound to a pod.
    public let podName: String?
    /// The `kid` of the key that verified it (JWKS sources), so a cached verification ends when that key
    /// leaves the issuer's JWKS.
    public let keyID: String?
    /// Which of the configured audiences the token is for: each API serves it only if its own is among them (the
    /// HTTPS API `sigil`, Istio's CA API `istio-ca`), so one verification, cached once, serves both.
    public let audiences: Set<String>

    public init(
        identity: WorkloadIdentity, expiresAt: Date, audiences: Set<String>, podName: String? = nil,
        keyID: String? = nil
    ) {
        self.identity = identity
        self.expiresAt = expiresAt
        self.audiences = audiences
        self.podName = podName
        self.keyID = keyID
    }
}

/// Authenticates a bearer token. Throws `CAError` with a `token_*`/`audience_mismatch` code on refusal.
///
/// Refusal reasons are fixed sentences: they never quote a header or claim of the refused token (its `alg`,
/// `kid`, `iss`…), which an attacker chooses and which would otherwise reach the log and the audit record.
public protocol TokenVerifier: Sendable {
    func verify(_ token: String) async throws -> VerifiedToken
    /// Whether an earlier verification still stands (a cache asks before reusing it): false once the key that
    /// verified it has left the issuer's key set.
    func stillTrusts(_ token: VerifiedToken) -> Bool
}

extension TokenVerifier {
    public func stillTrusts(_ token: VerifiedToken) -> Bool { true }
}

/// Where the issuer's JWKS comes from (a file, OIDC discovery…); fetched again when an unknown `kid` arrives.
public protocol JWKSSource: Sendable {
    func fetchJWKS() async throws -> Data
}

/// What a token must say to be accepted.
public struct TokenPolicy: Sendable, Equatable {
    /// Required `iss`.
    public var issuer: String
    /// `aud` must contain at least one of these. Default `sigil`.
    public var audiences: Set<String>
    /// Clock skew allowed on `exp`, `nbf` and `iat`. Default 60 s (the most the design allows).
    public var leeway: Duration
    /// Shortest interval between two JWKS refreshes caused by unknown `kid`s. Default 30 s.
    public var refreshInterval: Duration

    public init(
        issuer: String, audiences: Set<String> = ["sigil"], leeway: Duration = .seconds(60),
        refreshInterval: Duration = .seconds(30)
    ) {
        self.issuer = issuer
        self.audiences = audiences
        self.leeway = min(leeway, .seconds(60))
        self.refreshInterval = refreshInterval
    }
}

extension Data {
    /// Decodes unpadded base64url (RFC 7515 §2: JWS parts carry no padding; padded input is refused).
    public init?(base64URL text: String) {
        var base64 = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        guard !base64.contains("=") else { return nil }
        base64 += String(repeating: "=", count: (4 - base64.count % 4) % 4)
        self.init(base64Encoded: base64)
    }
}
