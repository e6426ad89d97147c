import Foundation
import SigilCrypto
import Testing

@Suite("CertificateSigner")
struct CertificateSignerTests {
    typealias Fixtures = CertificateFixtures

    @Test("a root is self-signed with SKI, matching AKI and critical CA extensions")
    func rootProfile() throws {
        let key = try PrivateKey.generate(.p256)
        let template = try Fixtures.authority("Root")
        let root = try CertificateSigner.sign(template, subjectKey: .key(key), issuer: nil)

        #expect(root.subject == Fixtures.name("Root"))
        #expect(root.issuer == root.subject)
        #expect(root.isSelfIssued)
        #expect(root.isSigned(by: root))
        #expect(root.serial == template.serial)
        #expect(root.publicKey == (try key.publicKey()))
        #expect(root.basicConstraints == Flagged(value: BasicConstraints(isCA: true), critical: true))
        #expect(root.keyUsage == Flagged(value: [.keyCertSign, .cRLSign], critical: true))
        #expect(root.extendedKeyUsage == nil)
        let ski = try #require(root.subjectKeyIdentifier)
        #expect(ski.count == 20)
        #expect(root.authorityKeyIdentifier == ski)
    }

    @Test("an intermediate chains to its root by name, key identifier and signature")
    func intermediateProfile() throws {
        let chain = try Fixtures.chain()
        let root = chain.root.certificate
        let intermediate = chain.intermediate.certificate

        #expect(intermediate.issuer == root.subject)
        #expect(intermediate.issuerNameDER == root.subjectNameDER)
        #expect(!intermediate.isSelfIssued)
        #expect(intermediate.authorityKeyIdentifier == root.subjectKeyIdentifier)
        #expect(intermediate.subjectKeyIdentifier != nil)
        #expect(intermediate.subjectKeyIdentifier != root.subjectKeyIdentifier)
        #expect(
            intermediate.basicConstraints == Flagged(value: BasicConstraints(isCA: true, pathLength: 0), critical: true)
        )
        #expect(intermediate.isSigned(by: root))
        #expect(!intermediate.isSigned(by: intermediate))
    }

    @Test("a leaf from a CSR carries the CSR's key, critical SAN and no SKI")
    func leafProfile() throws {
        let chain = try Fixtures.chain()
        let leaf = chain.leaf

        #expect(leaf.subject.isEmpty)
        #expect(leaf.publicKey == (try chain.leafKey.publicKey()))
        #expect(leaf.subjectAlternativeNames == Flagged(value: [.uri(Fixtures.leafID)], critical: true))
        #expect(leaf.basicConstraints == Flagged(value: .endEntity, critical: true))
        #expect(leaf.keyUsage == Flagged(value: [.digitalSignature], critical: true))
        #expect(leaf.extendedKeyUsage == Flagged(value: [.serverAuth, .clientAuth], critical: false))
        #expect(leaf.subjectKeyIdentifier == nil)
        #expect(leaf.authorityKeyIdentifier == chain.intermediate.certificate.subjectKeyIdentifier)
        #expect(leaf.isSigned(by: chain.intermediate.certificate))
        #expect(!leaf.isSigned(by: chain.root.certificate))
        #expect(leaf.extensionOIDs.map(\.value) == ["2.5.29.19", "2.5.29.15", "2.5.29.37", "2.5.29.17", "2.5.29.35"])
    }

    @Test("SAN is not critical when the subject is not empty")
    func sanCriticalityFollowsSubject() throws {
        let key = try PrivateKey.generate(.p256)
        var template = try Fixtures.leaf()
        template.subject = Fixtures.name("web")
        let certificate = try CertificateSigner.sign(
            template, subjectKey: .key(key), issuer: Fixtures.chain().intermediate)
        #expect(certificate.subjectAlternativeNames?.critical == false)
    }

    @Test("a CSR key cannot be self-signed")
    func csrCannotBeSelfSigned() throws {
        let csr = try CertificateSigningRequest.create(key: PrivateKey.generate(.p256), subjectAlternativeNames: [])
        let template = try Fixtures.leaf()
        expectOpenSSLError(.invalidArgument) {
            try CertificateSigner.sign(template, subjectKey: .request(csr), issuer: nil)
        }
    }

    @Test("validity is truncated to whole seconds")
    func validityIsTruncatedToSeconds() throws {
        var template = try Fixtures.authority("Root")
        template.notBefore = Fixtures.referenceDate.addingTimeInterval(0.999)
        template.notAfter = Fixtures.referenceDate.addingTimeInterval(86_400.5)
        let root = try CertificateSigner.sign(template, subjectKey: .key(PrivateKey.generate(.p256)), issuer: nil)
        #expect(root.notBefore == Fixtures.referenceDate)
        #expect(root.notAfter == Fixtures.referenceDate.addingTimeInterval(86_400))
    }

    @Test("dates from 2050 on (GeneralizedTime) read back exactly")
    func generalizedTimeReadsBack() throws {
        var template = try Fixtures.authority("Root")
        let notAfter = Date(timeIntervalSince1970: 2_556_143_999)  // 2050-12-31T23:59:59Z
        template.notAfter = notAfter
        let root = try CertificateSigner.sign(template, subjectKey: .key(PrivateKey.generate(.p256)), issuer: nil)
        #expect(root.notAfter == notAfter)
    }

    @Test(
        "the signature algorithm follows the signing key",
        arguments: [
            (KeyAlgorithm.p256, "ecdsa-with-SHA256"), (.p384, "ecdsa-with-SHA384"),
            (.rsa(bits: 2048), "sha256WithRSAEncryption"), (.ed25519, "ED25519"),
        ])
    func signatureAlgorithmFollowsKey(_ algorithm: KeyAlgorithm, _ expected: String) throws {
        let root = try CertificateSigner.sign(
            Fixtures.authority("Root"), subjectKey: .key(PrivateKey.generate(algorithm)), issuer: nil)
        #expect(root.signatureAlgorithm == expected)
        #expect(root.isSigned(by: root))
        #expect(root.publicKey.algorithm == algorithm)
    }

    @Test("a serial with its high bit set is encoded as a positive INTEGER and reads back")
    func highBitSerialStaysPositive() throws {
        var template = try Fixtures.authority("Root")
        template.serial = SerialNumber(bytes: [0x80] + [UInt8](repeating: 0xab, count: 15))
        let root = try CertificateSigner.sign(template, subjectKey: .key(PrivateKey.generate(.p256)), issuer: nil)
        #expect(root.serial == template.serial)
        let octets = try serialContentOctets(ofCertificate: root.der)
        #expect(octets == [0x00, 0x80] + [UInt8](repeating: 0xab, count: 15))
    }

    @Test("random serials are encoded as positive INTEGERs of at most 17 octets")
    func randomSerialsArePositive() throws {
        let key = try PrivateKey.generate(.p256)
        for _ in 0..<16 {
            let root = try CertificateSigner.sign(Fixtures.authority("Root"), subjectKey: .key(key), issuer: nil)
            let octets = try serialContentOctets(ofCertificate: root.der)
            #expect(octets[0] & 0x80 == 0)
            #expect(octets.count <= 17)
            #expect(SerialNumber(bytes: octets) == root.serial)
        }
    }
}
