import Foundation
import SigilCrypto

/// How Sigil's own authorities are made.
public struct AuthorityConfiguration: Sendable, Equatable {
    public var trustDomain: TrustDomain
    /// Key type of roots and intermediates. Default EC P-256.
    public var keyAlgorithm: KeyAlgorithm
    /// Root lifetime. Default 365 days.
    public var rootLifetime: Duration
    /// Intermediate lifetime (capped at the root's notAfter). Default 48 hours.
    public var intermediateLifetime: Duration
    /// Backdating of authority notBefore, for clock skew. Default 30 s.
    public var backdate: Duration

    public init(
        trustDomain: TrustDomain, keyAlgorithm: KeyAlgorithm = .p256, rootLifetime: Duration = .seconds(365 * 86_400),
        intermediateLifetime: Duration = .seconds(48 * 3600), backdate: Duration = .seconds(30)
    ) {
        self.trustDomain = trustDomain
        self.keyAlgorithm = keyAlgorithm
        self.rootLifetime = rootLifetime
        self.intermediateLifetime = intermediateLifetime
        self.backdate = backdate
    }

    /// Cross-field rules: an intermediate must fit well inside a root, and leaves inside an intermediate.
    public func validate(leafPolicy: IssuancePolicy) throws {
        guard KeyAlgorithm.generatable.contains(keyAlgorithm) else {
            throw CAError.configuration(reason: "authority key type \(keyAlgorithm) cannot be generated")
        }
        guard intermediateLifetime * 2 <= rootLifetime else {
            throw CAError.configuration(reason: "intermediate lifetime must be at most half the root lifetime")
        }
        // Activation happens at 1/6 of remaining life; a default leaf must still fit then.
        guard leafPolicy.defaultTTL * 6 <= intermediateLifetime else {
            throw CAError.configuration(reason: "default leaf TTL must be at most 1/6 of the intermediate lifetime")
        }
    }
}

/// Makes new root and intermediate authorities (no I/O: the caller stores them).
public enum AuthorityFactory {
    /// A new self-signed root, self-checked.
    public static func makeRoot(
        _ configuration: AuthorityConfiguration, state: AuthorityState, at now: Date
    ) throws -> (record: AuthorityRecord, key: PrivateKey) {
        let key = try PrivateKey.generate(configuration.keyAlgorithm)
        let serial = try SerialNumber.random()
        let notBefore = (now - configuration.backdate).truncatedToSecond
        let template = CertificateProfile.root(
            serial: serial, trustDomain: configuration.trustDomain, name: "Sigil Root \(serial.hex.prefix(8))",
            notBefore: notBefore, notAfter: (now + configuration.rootLifetime).truncatedToSecond)
        let certificate = try CertificateSigner.sign(template, subjectKey: .key(key), issuer: nil)
        try check(certificate, role: .root, issuer: certificate, configuration)
        return (
            AuthorityRecord(role: .root, state: state, certificate: certificate, parentID: nil, createdAt: now), key
        )
    }

    /// A new intermediate signed by `parent`, lifetime capped at the parent's notAfter, self-checked.
    public static func makeIntermediate(
        _ configuration: AuthorityConfiguration, parent: AuthorityRecord, parentKey: PrivateKey, state: AuthorityState,
        at now: Date
    ) throws -> (record: AuthorityRecord, key: PrivateKey) {
        let key = try PrivateKey.generate(configuration.keyAlgorithm)
        let serial = try SerialNumber.random()
        let notBefore = max((now - configuration.backdate).truncatedToSecond, parent.notBefore)
        let notAfter = min((now + configuration.intermediateLifetime).truncatedToSecond, parent.notAfter)
        guard notAfter > now else {
            throw CAError(.noActiveAuthority, reason: "root \(parent.id) has expired; rotate the root first")
        }
        let template = CertificateProfile.intermediate(
            serial: serial, trustDomain: configuration.trustDomain, name: "Sigil Intermediate \(serial.hex.prefix(8))",
            notBefore: notBefore, notAfter: notAfter)
        let certificate = try CertificateSigner.sign(
            template, subjectKey: .key(key), issuer: SigningIdentity(certificate: parent.certificate, key: parentKey))
        try check(certificate, role: .intermediate, issuer: parent.certificate, configuration)
        let record = AuthorityRecord(
            role: .intermediate, state: state, certificate: certificate, parentID: parent.id, createdAt: now)
        return (record, key)
    }

    private static func check(
        _ certificate: Certificate, role: AuthorityRole, issuer: Certificate, _ configuration: AuthorityConfiguration
    ) throws {
        let problems = CertificateLint.authorityProblems(
            certificate, role: role, issuer: issuer, trustDomain: configuration.trustDomain)
        guard problems.isEmpty else {
            throw CAError(
                .selfCheckFailed, reason: "new \(role.rawValue) failed self-check: \(problems.joined(separator: "; "))")
        }
    }
}
