import Foundation
import SigilCrypto
import Testing

@Suite("ChainVerifier")
struct ChainVerifierTests {
    static let now = CertificateFixtures.referenceDate

    @Test(
        "a root → intermediate → leaf chain verifies",
        arguments: [
            (KeyAlgorithm.p256, KeyAlgorithm.p256), (.p384, .ed25519), (.rsa(bits: 2048), .rsa(bits: 2048)),
            (.ed25519, .p384),
        ])
    func validChainVerifies(_ authorityKey: KeyAlgorithm, _ leafKey: KeyAlgorithm) throws {
        let chain = try CertificateFixtures.chain(keyAlgorithm: authorityKey, leafKeyAlgorithm: leafKey)
        let result = try ChainVerifier.verify(
            chain.leaf, intermediates: [chain.intermediate.certificate], roots: [chain.root.certificate], at: Self.now)
        #expect(result == .valid)
    }

    @Test("a leaf does not verify against another root, even one with the same name")
    func wrongRootIsInvalid() throws {
        let chain = try CertificateFixtures.chain()
        let other = try CertificateFixtures.chain()  // same subject names, different keys
        for roots in [[other.root.certificate], []] {
            let result = try ChainVerifier.verify(
                chain.leaf, intermediates: [chain.intermediate.certificate], roots: roots, at: Self.now)
            #expect(result != .valid)
        }
    }

    @Test("a leaf does not verify without its intermediate")
    func missingIntermediateIsInvalid() throws {
        let chain = try CertificateFixtures.chain()
        let result = try ChainVerifier.verify(
            chain.leaf, intermediates: [], roots: [chain.root.certificate], at: Self.now)
        #expect(result != .valid)
    }

    @Test(
        "verification honours the time it is given",
        arguments: [
            // The leaf is valid from referenceDate - 60 s to referenceDate + 1 h. (RFC 5280 makes notAfter
            // inclusive; OpenSSL treats that very second as expired, so the test stays a second clear of it.)
            (-61.0, false), (-60.0, true), (0.0, true), (3599.0, true), (3601.0, false), (-86_400.0 * 30, false),
        ])
    func verificationTime(_ offset: TimeInterval, _ valid: Bool) throws {
        let chain = try CertificateFixtures.chain()
        let result = try ChainVerifier.verify(
            chain.leaf, intermediates: [chain.intermediate.certificate], roots: [chain.root.certificate],
            at: Self.now.addingTimeInterval(offset))
        #expect((result == .valid) == valid, "\(result)")
    }

    @Test("an expired leaf is reported with OpenSSL's reason at depth 0")
    func expiredLeafReason() throws {
        let chain = try CertificateFixtures.chain()
        let result = try ChainVerifier.verify(
            chain.leaf, intermediates: [chain.intermediate.certificate], roots: [chain.root.certificate],
            at: Self.now.addingTimeInterval(7200))
        guard case .invalid(let reason, let depth) = result else {
            Issue.record("expected invalid, got \(result)")
            return
        }
        #expect(reason.contains("expired"))
        #expect(depth == 0)
    }

    @Test("a leaf signed by a different key under the right issuer name is invalid")
    func forgedSignatureIsInvalid() throws {
        let chain = try CertificateFixtures.chain()
        // An impostor intermediate with the real one's name but another key.
        let impostorKey = try PrivateKey.generate(.p256)
        var template = try CertificateFixtures.authority("Test Root Intermediate", days: 30, pathLength: 0)
        template.subject = chain.intermediate.certificate.subject
        let impostor = try CertificateSigner.sign(template, subjectKey: .key(impostorKey), issuer: chain.root)
        let forged = try CertificateSigner.sign(
            CertificateFixtures.leaf(), subjectKey: .key(PrivateKey.generate(.p256)),
            issuer: SigningIdentity(certificate: impostor, key: impostorKey))
        let result = try ChainVerifier.verify(
            forged, intermediates: [chain.intermediate.certificate], roots: [chain.root.certificate], at: Self.now)
        #expect(result != .valid)
    }
}
