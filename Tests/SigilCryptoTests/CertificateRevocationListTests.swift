import Foundation
import SigilCrypto
import Testing

@Suite("CertificateRevocationList")
struct CertificateRevocationListTests {
    static let now = CertificateFixtures.referenceDate

    static func crl(
        _ serials: [SerialNumber], by issuer: SigningIdentity, number: UInt64 = 1
    ) throws -> CertificateRevocationList {
        try CertificateRevocationList.sign(
            entries: serials.map { .init(serial: $0, revokedAt: now.addingTimeInterval(-10)) }, number: number,
            thisUpdate: now.addingTimeInterval(-60), nextUpdate: now.addingTimeInterval(86_400), issuer: issuer)
    }

    @Test("a signed CRL lists its entries and names and is signed by its issuer")
    func signedCRLContents() throws {
        let chain = try CertificateFixtures.chain()
        let other = try SerialNumber.random()
        let crl = try Self.crl([chain.leaf.serial, other], by: chain.intermediate)

        #expect(Set(crl.entries.map(\.serial)) == [chain.leaf.serial, other])
        #expect(crl.entries.allSatisfy { $0.revokedAt == Self.now.addingTimeInterval(-10) })
        #expect(crl.issuer == chain.intermediate.certificate.subject)
        #expect(crl.thisUpdate == Self.now.addingTimeInterval(-60))
        #expect(crl.nextUpdate == Self.now.addingTimeInterval(86_400))
        #expect(crl.isSigned(by: chain.intermediate.certificate))
        #expect(!crl.isSigned(by: chain.root.certificate))
    }

    @Test("a CRL survives DER and PEM")
    func roundTrip() throws {
        let chain = try CertificateFixtures.chain()
        let crl = try Self.crl([chain.leaf.serial], by: chain.intermediate, number: 42)
        let parsed = try CertificateRevocationList(der: crl.der)
        #expect(parsed.der == crl.der)
        #expect(parsed.entries == crl.entries)
        #expect(parsed.isSigned(by: chain.intermediate.certificate))
        let block = try #require(PEMBlock.parseAll(crl.pem).first)
        #expect(block.label == "X509 CRL")
        #expect(block.der == crl.der)
    }

    @Test("an empty CRL has no entries")
    func emptyCRL() throws {
        let chain = try CertificateFixtures.chain()
        let crl = try Self.crl([], by: chain.root, number: 0)
        #expect(crl.entries.isEmpty)
        #expect(crl.isSigned(by: chain.root.certificate))
    }

    @Test("a revoked leaf fails verification; the same chain with clean CRLs passes")
    func revokedLeafIsInvalid() throws {
        let chain = try CertificateFixtures.chain()
        let rootCRL = try Self.crl([], by: chain.root)
        let clean = try Self.crl([], by: chain.intermediate)
        let revoking = try Self.crl([chain.leaf.serial], by: chain.intermediate, number: 2)

        func verify(_ crls: [CertificateRevocationList]) throws -> ChainVerification {
            try ChainVerifier.verify(
                chain.leaf, intermediates: [chain.intermediate.certificate], roots: [chain.root.certificate],
                crls: crls,
                at: Self.now)
        }
        #expect(try verify([rootCRL, clean]) == .valid)
        let result = try verify([rootCRL, revoking])
        guard case .invalid(let reason, let depth) = result else {
            Issue.record("expected a revoked leaf to be invalid, got \(result)")
            return
        }
        #expect(reason.contains("revoked"))
        #expect(depth == 0)
    }

    @Test("a revoked intermediate fails verification of every leaf under it")
    func revokedIntermediateIsInvalid() throws {
        let chain = try CertificateFixtures.chain()
        let rootCRL = try Self.crl([chain.intermediate.certificate.serial], by: chain.root)
        let intermediateCRL = try Self.crl([], by: chain.intermediate)
        let result = try ChainVerifier.verify(
            chain.leaf, intermediates: [chain.intermediate.certificate], roots: [chain.root.certificate],
            crls: [rootCRL, intermediateCRL], at: Self.now)
        guard case .invalid(let reason, let depth) = result else {
            Issue.record("expected a revoked intermediate to be invalid, got \(result)")
            return
        }
        #expect(reason.contains("revoked"))
        #expect(depth == 1)
    }

    @Test("garbage DER is an invalid encoding")
    func garbageDER() throws {
        let chain = try CertificateFixtures.chain()
        let der = try Self.crl([chain.leaf.serial], by: chain.intermediate).der
        for bad in [[], Array(der.dropLast()), der + [0x00], chain.leaf.der] {
            expectOpenSSLError(.invalidEncoding) { try CertificateRevocationList(der: bad) }
        }
    }
}
