import Foundation
import SigilCore
import SigilCrypto

/// A root → intermediate chain built in code from one fixed instant, so that no fixture on disk can expire
/// and every test that needs a PKI shares the same shape (STYLE.md, "Tests").
///
/// Authorities come from SigilCore's `AuthorityFactory` and leaves from its `CertificateIssuer`, exactly as
/// the CA makes them.
public struct TestPKI: Sendable {
    /// 2026-01-01T00:00:00Z: the instant every fixture is built at.
    public static let referenceDate = Date(timeIntervalSince1970: 1_767_225_600)

    /// `example.org`, the trust domain of the fixtures.
    // A literal that satisfies every trust-domain rule; `try!` cannot fail here.
    public static let trustDomain = try! TrustDomain("example.org")

    /// The configuration the authorities were made with.
    public let configuration: AuthorityConfiguration
    /// When the authorities were made (their notBefore is this minus the configured backdate).
    public let createdAt: Date
    /// The active, self-signed root.
    public let root: AuthorityRecord
    public let rootKey: PrivateKey
    /// The active intermediate, signed by `root`.
    public let intermediate: AuthorityRecord
    public let intermediateKey: PrivateKey

    /// Builds a root and an intermediate at `createdAt`.
    /// - Parameters:
    ///   - keyAlgorithm: key type of both authorities. Default EC P-256 (fast to generate).
    ///   - trustDomain: default `example.org`.
    ///   - rootLifetime: default 365 days, as `AuthorityConfiguration`.
    ///   - intermediateLifetime: default 48 hours, as `AuthorityConfiguration`.
    ///   - createdAt: default `referenceDate`.
    public init(
        keyAlgorithm: KeyAlgorithm = .p256, trustDomain: TrustDomain = TestPKI.trustDomain,
        rootLifetime: Duration = .seconds(365 * 86_400), intermediateLifetime: Duration = .seconds(48 * 3600),
        createdAt: Date = TestPKI.referenceDate
    ) throws {
        let configuration = AuthorityConfiguration(
            trustDomain: trustDomain, keyAlgorithm: keyAlgorithm, rootLifetime: rootLifetime,
            intermediateLifetime: intermediateLifetime)
        let root = try AuthorityFactory.makeRoot(configuration, state: .active, at: createdAt)
        let intermediate = try AuthorityFactory.makeIntermediate(
            configuration, parent: root.record, parentKey: root.key, state: .active, at: createdAt)
        self.configuration = configuration
        self.createdAt = createdAt
        self.root = root.record
        self.rootKey = root.key
        self.intermediate = intermediate.record
        self.intermediateKey = intermediate.key
    }

    public var trustDomain: TrustDomain { configuration.trustDomain }

    /// Both authorities as the CA would hold them.
    public var authorities: AuthoritySet { AuthoritySet([root, intermediate]) }

    /// The root certificate with its key, for signing by hand.
    public var rootIdentity: SigningIdentity { SigningIdentity(certificate: root.certificate, key: rootKey) }

    /// The intermediate certificate with its key, for signing by hand.
    public var intermediateIdentity: SigningIdentity {
        SigningIdentity(certificate: intermediate.certificate, key: intermediateKey)
    }

    /// The intermediate as the issuer uses it, with its chain (`[intermediate]`).
    public var signingAuthority: SigningAuthority {
        SigningAuthority(
            record: intermediate, key: intermediateKey, chain: authorities.chain(from: intermediate),
            trustDomain: configuration.trustDomain)
    }

    /// `spiffe://<trust domain>/ns/<namespace>/sa/<serviceAccount>`.
    public func workloadID(namespace: String = "default", serviceAccount: String = "web") throws -> SPIFFEID {
        try WorkloadIdentity(namespace: namespace, serviceAccount: serviceAccount).spiffeID(in: trustDomain)
    }

    /// A leaf with the key it was issued for.
    public struct Leaf: Sendable {
        public let issued: IssuedCertificate
        public let key: PrivateKey
        public var certificate: Certificate { issued.certificate }
    }

    /// Generates a key, makes a CSR naming `identity` (or no SAN at all if `includeURI` is false) and issues
    /// a leaf for it through `CertificateIssuer`, signed by the intermediate.
    /// - Parameters:
    ///   - identity: default `spiffe://example.org/ns/default/sa/web`.
    ///   - at: issuance time; default `createdAt`.
    public func issueLeaf(
        for identity: SPIFFEID? = nil, keyAlgorithm: KeyAlgorithm = .p256, extraNames: [GeneralName] = [],
        includeURI: Bool = true, ttl: Duration? = nil, policy: IssuancePolicy = IssuancePolicy(), at: Date? = nil
    ) throws -> Leaf {
        let identity = try identity ?? workloadID()
        let key = try PrivateKey.generate(keyAlgorithm)
        let names = (includeURI ? [GeneralName.uri(identity.description)] : []) + extraNames
        let csr = try CertificateSigningRequest.create(key: key, subjectAlternativeNames: names)
        let issued = try CertificateIssuer(policy: policy).issue(
            IssuanceRequest(csr: csr, identity: identity, ttl: ttl), by: signingAuthority, at: at ?? createdAt)
        return Leaf(issued: issued, key: key)
    }

    /// A CSR for a fresh key of `keyAlgorithm` carrying `names` (empty subject).
    public static func makeCSR(
        keyAlgorithm: KeyAlgorithm = .p256, names: [GeneralName]
    ) throws -> (csr: CertificateSigningRequest, key: PrivateKey) {
        let key = try PrivateKey.generate(keyAlgorithm)
        return (try CertificateSigningRequest.create(key: key, subjectAlternativeNames: names), key)
    }
}
