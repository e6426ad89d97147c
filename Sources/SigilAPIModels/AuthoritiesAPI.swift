import Foundation

/// One authority as the outside sees it: `GET /v1/authorities` (agents poll it for taint), `sigil admin status`
/// and `sigil inspect --json`. Times are RFC 3339 UTC; the counts appear where the caller knows them.
public struct AuthorityView: Codable, Sendable, Equatable {
    public let id: String
    /// `root` or `intermediate`.
    public let role: String
    /// `prepared`, `active`, `retired`, `tainted` or `revoked`.
    public let state: String
    public let parentID: String?
    public let upstream: Bool
    public let subject: String
    public let serial: String
    public let keyType: String
    public let sha256Fingerprint: String
    public let publicKeySHA256: String
    /// Hex subjectKeyIdentifier: what a leaf's authorityKeyIdentifier names.
    public let subjectKeyID: String
    public let notBefore: String
    public let notAfter: String
    /// Whether the store still holds its private key (only prepared and active authorities do). Nil from
    /// servers older than this field.
    public let keyStored: Bool?
    /// Live certificates under this authority (for a root: under the intermediates it signed).
    public var liveCertificates: Int?
    public var secondsLeft: Int64?

    public init(
        id: String, role: String, state: String, parentID: String?, upstream: Bool, subject: String, serial: String,
        keyType: String,
        sha256Fingerprint: String, publicKeySHA256: String, subjectKeyID: String, notBefore: String, notAfter: String,
        keyStored: Bool?, liveCertificates: Int? = nil, secondsLeft: Int64? = nil
    ) {
        self.id = id
        self.role = role
        self.state = state
        self.parentID = parentID
        self.upstream = upstream
        self.subject = subject
        self.serial = serial
        self.keyType = keyType
        self.sha256Fingerprint = sha256Fingerprint
        self.publicKeySHA256 = publicKeySHA256
        self.subjectKeyID = subjectKeyID
        self.notBefore = notBefore
        self.notAfter = notAfter
        self.keyStored = keyStored
        self.liveCertificates = liveCertificates
        self.secondsLeft = secondsLeft
    }

    enum CodingKeys: String, CodingKey {
        case id, role, state, upstream, subject, serial
        case parentID = "parent_id"
        case keyType = "key_type"
        case sha256Fingerprint = "sha256_fingerprint"
        case publicKeySHA256 = "public_key_sha256"
        case subjectKeyID = "subject_key_id"
        case notBefore = "not_before"
        case notAfter = "not_after"
        case keyStored = "key_stored"
        case liveCertificates = "live_certificates"
        case secondsLeft = "seconds_left"
    }
}

/// `GET /v1/authorities` and `sigil inspect --json`.
public struct AuthoritiesResponse: Codable, Sendable, Equatable {
    public let trustDomain: String
    /// The `spiffe_sequence` of `GET /v1/bundle` at the same time: agents re-read the bundle when it changes.
    public let bundleSequence: Int64
    public let authorities: [AuthorityView]

    public init(trustDomain: String, bundleSequence: Int64, authorities: [AuthorityView]) {
        self.trustDomain = trustDomain
        self.bundleSequence = bundleSequence
        self.authorities = authorities
    }

    enum CodingKeys: String, CodingKey {
        case authorities
        case trustDomain = "trust_domain"
        case bundleSequence = "bundle_sequence"
    }
}

/// A SPIFFE trust bundle (SPIFFE Trust Domain and Bundle §4): `GET /v1/bundle`, a JWK set with one `x509-svid`
/// key per root.
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

        public init(
            use: String, kty: String, crv: String?, x: String?, y: String?, n: String?, e: String?, x5c: [String]
        ) {
            self.use = use
            self.kty = kty
            self.crv = crv
            self.x = x
            self.y = y
            self.n = n
            self.e = e
            self.x5c = x5c
        }
    }

    public let keys: [Key]
    public let spiffeSequence: Int64
    /// Seconds a consumer may wait before fetching the bundle again.
    public let spiffeRefreshHint: Int64

    public init(keys: [Key], spiffeSequence: Int64, spiffeRefreshHint: Int64) {
        self.keys = keys
        self.spiffeSequence = spiffeSequence
        self.spiffeRefreshHint = spiffeRefreshHint
    }

    enum CodingKeys: String, CodingKey {
        case keys
        case spiffeSequence = "spiffe_sequence"
        case spiffeRefreshHint = "spiffe_refresh_hint"
    }

    /// Canonical JSON (sorted keys) so that equal bundles have equal bytes and ETags.
    public func json() throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return try encoder.encode(self)
    }
}
