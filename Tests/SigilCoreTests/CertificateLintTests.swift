import Foundation
import SigilCore
import SigilCrypto
import SigilTestSupport
import Testing

@Suite("CertificateLint")
struct CertificateLintTests {
    static let identity = try! SPIFFEID(parsing: "spiffe://example.org/ns/default/sa/web")
    static let now = TestPKI.referenceDate

    let pki: TestPKI

    init() throws {
        pki = try TestPKI()
    }

    /// A leaf template as `CertificateProfile` makes it, for a P-256 key, valid for an hour from `now`.
    static func leafTemplate(notAfter: Date = now + .seconds(3600)) throws -> CertificateTemplate {
        CertificateProfile.leaf(
            serial: try SerialNumber.random(), identity: identity, extraNames: [], key: .p256, notBefore: now,
            notAfter: notAfter)
    }

    /// Signs `template` for a fresh P-256 key by `issuer`; returns the leaf and its public key.
    static func sign(
        _ template: CertificateTemplate, by issuer: SigningIdentity
    ) throws -> (Certificate, PublicKeyInfo) {
        let key = try PrivateKey.generate(.p256)
        return (try CertificateSigner.sign(template, subjectKey: .key(key), issuer: issuer), try key.publicKey())
    }

    func leafProblems(_ leaf: Certificate, key: PublicKeyInfo, identity: SPIFFEID = identity) -> [String] {
        CertificateLint.leafProblems(
            leaf, issuer: pki.intermediate.certificate, identity: identity, extraNames: [], publicKey: key)
    }

    @Test("a leaf made by the profile has no problems")
    func cleanLeaf() throws {
        let (leaf, key) = try Self.sign(Self.leafTemplate(), by: pki.intermediateIdentity)
        #expect(leafProblems(leaf, key: key) == [])
        let issued = try pki.issueLeaf().issued
        #expect(leafProblems(issued.certificate, key: issued.publicKey) == [])
    }

    @Test("a leaf whose AKI names another key than the issuer's is caught")
    func akiMismatch() throws {
        // An impostor CA with the real intermediate's subject name (so the issuer name matches) but its own key.
        let impostorKey = try PrivateKey.generate(.p256)
        var template = CertificateProfile.intermediate(
            serial: try SerialNumber.random(), trustDomain: TestPKI.trustDomain, name: "impostor",
            notBefore: pki.intermediate.notBefore, notAfter: pki.intermediate.notAfter)
        template.subject = pki.intermediate.certificate.subject
        let impostor = try CertificateSigner.sign(template, subjectKey: .key(impostorKey), issuer: pki.rootIdentity)
        #expect(impostor.subjectNameDER == pki.intermediate.certificate.subjectNameDER)

        let (leaf, key) = try Self.sign(
            Self.leafTemplate(), by: SigningIdentity(certificate: impostor, key: impostorKey))
        #expect(
            leafProblems(leaf, key: key) == ["authorityKeyIdentifier does not match the issuer's subjectKeyIdentifier"])
    }

    @Test("a leaf from an unrelated issuer fails name chaining and key identifiers")
    func unrelatedIssuer() throws {
        let other = try TestPKI()
        let (leaf, key) = try Self.sign(Self.leafTemplate(), by: other.intermediateIdentity)
        let problems = leafProblems(leaf, key: key)
        #expect(problems.contains("issuer name differs from the issuer's subject"))
        #expect(problems.contains("authorityKeyIdentifier does not match the issuer's subjectKeyIdentifier"))
    }

    @Test("a leaf that outlives its issuer is caught")
    func outlivesIssuer() throws {
        let template = try Self.leafTemplate(notAfter: pki.intermediate.notAfter + .seconds(1))
        let (leaf, key) = try Self.sign(template, by: pki.intermediateIdentity)
        #expect(leafProblems(leaf, key: key) == ["notAfter outlives the issuer"])
    }

    @Test("a leaf that starts before its issuer or ends before it starts is caught")
    func validityOrder() throws {
        var early = try Self.leafTemplate()
        early.notBefore = pki.intermediate.notBefore - .seconds(1)
        let (earlyLeaf, earlyKey) = try Self.sign(early, by: pki.intermediateIdentity)
        #expect(leafProblems(earlyLeaf, key: earlyKey) == ["notBefore precedes the issuer's"])

        var inverted = try Self.leafTemplate()
        inverted.notAfter = inverted.notBefore
        let (invertedLeaf, invertedKey) = try Self.sign(inverted, by: pki.intermediateIdentity)
        #expect(leafProblems(invertedLeaf, key: invertedKey) == ["notBefore is not before notAfter"])
    }

    @Test("a SAN or key other than requested is caught")
    func sanAndKeyMismatch() throws {
        let (leaf, key) = try Self.sign(Self.leafTemplate(), by: pki.intermediateIdentity)
        let other = try SPIFFEID(parsing: "spiffe://example.org/ns/default/sa/db")
        #expect(leafProblems(leaf, key: key, identity: other).count == 1)
        #expect(leafProblems(leaf, key: key, identity: other).first?.hasPrefix("SAN ") == true)
        let otherKey = try PrivateKey.generate(.p256).publicKey()
        #expect(leafProblems(leaf, key: otherKey) == ["public key differs from the CSR's"])
    }

    @Test("CA bits, certificate-signing usage and missing EKU on a leaf are caught")
    func wrongExtensions() throws {
        var template = try Self.leafTemplate()
        template.basicConstraints = BasicConstraints(isCA: true)
        template.keyUsage = [.digitalSignature, .keyCertSign]
        template.extendedKeyUsage = [.serverAuth]
        let (leaf, key) = try Self.sign(template, by: pki.intermediateIdentity)
        let problems = leafProblems(leaf, key: key)
        #expect(problems.contains("basicConstraints is not critical cA=false"))
        #expect(problems.contains { $0.hasPrefix("keyUsage is not critical") })
        #expect(problems.contains("EKU is not serverAuth+clientAuth"))
        #expect(problems.contains("leaf carries a subjectKeyIdentifier"))
    }

    @Test("a short serial is caught")
    func shortSerial() throws {
        var template = try Self.leafTemplate()
        template.serial = SerialNumber(bytes: [0x7f, 0xff, 0xff, 0xff])
        let (leaf, key) = try Self.sign(template, by: pki.intermediateIdentity)
        #expect(leafProblems(leaf, key: key) == ["serial shorter than 64 bits"])
    }

    @Test("authorities made by AuthorityFactory have no problems")
    func cleanAuthorities() {
        let domain = TestPKI.trustDomain
        #expect(
            CertificateLint.authorityProblems(
                pki.root.certificate, role: .root, issuer: pki.root.certificate, trustDomain: domain) == [])
        #expect(
            CertificateLint.authorityProblems(
                pki.intermediate.certificate, role: .intermediate, issuer: pki.root.certificate, trustDomain: domain)
                == [])
    }

    @Test("a leaf, a wrong pathLen or a foreign trust domain is caught on an authority")
    func authorityProblems() throws {
        let domain = TestPKI.trustDomain
        let leaf = try pki.issueLeaf().certificate
        #expect(
            CertificateLint.authorityProblems(
                leaf, role: .intermediate, issuer: pki.intermediate.certificate, trustDomain: domain
            )
            .contains("basicConstraints is not critical cA=true"))
        #expect(
            CertificateLint.authorityProblems(
                pki.root.certificate, role: .intermediate, issuer: pki.root.certificate, trustDomain: domain)
                == ["intermediate pathLen is not 0"])
        let foreign = try TrustDomain("other.org")
        #expect(
            CertificateLint.authorityProblems(
                pki.root.certificate, role: .root, issuer: pki.root.certificate, trustDomain: foreign)
                == ["SAN [URI:spiffe://example.org] is not the trust domain ID"])
        #expect(
            CertificateLint.authorityProblems(
                pki.intermediate.certificate, role: .intermediate, issuer: try TestPKI().root.certificate,
                trustDomain: domain
            ).contains("issuer name differs from the issuer's subject"))
    }
}
