import Foundation
@testable import SigilCrypto
import Testing

@Suite("LeafEncoder")
struct LeafEncoderTests {
    typealias Fixtures = CertificateFixtures

    /// The TBSCertificate of a DER certificate (its first element).
    static func tbs(_ certificate: Certificate) throws -> [UInt8] {
        let der = certificate.der
        let outer = try #require(DERStructure.element(der, at: 0, limit: der.count))
        let tbs = try #require(
            DERStructure.element(der, at: outer.contents.lowerBound, limit: outer.contents.upperBound))
        return Array(der[outer.contents.lowerBound..<tbs.contents.upperBound])
    }

    @Test(
        "a leaf written directly is byte for byte the TBSCertificate OpenSSL writes",
        arguments: [KeyAlgorithm.p256, .p384, .rsa(bits: 2048), .ed25519])
    func matchesOpenSSL(issuerKey: KeyAlgorithm) throws {
        let chain = try Fixtures.chain(keyAlgorithm: issuerKey)
        let issuer = chain.intermediate
        let encoder = try LeafEncoder(issuer: issuer.certificate, key: issuer.key)
        for leafKey in [KeyAlgorithm.p256, .p384, .rsa(bits: 2048), .ed25519] {
            let key = try PrivateKey.generate(leafKey)
            let csr = try CertificateSigningRequest.create(key: key, subjectAlternativeNames: [.uri(Fixtures.leafID)])
            var template = try Fixtures.leaf(
                keyUsage: leafKey.isRSA ? [.digitalSignature, .keyEncipherment] : [.digitalSignature])
            template.subjectAlternativeNames += [.dns("web.default.svc"), .email("ops@example.org")]
            // A serial with the high bit set needs the leading zero; a long lifetime crosses into GeneralizedTime.
            template.serial = SerialNumber(bytes: [0x80] + (try SecureRandom.bytes(15)))
            template.notAfter = Date(timeIntervalSince1970: 2_556_143_999)  // 2050-12-31T23:59:59Z
            #expect(LeafEncoder.canEncode(template))

            let viaOpenSSL = try CertificateSigner.signWithOpenSSL(template, subjectKey: .request(csr), issuer: issuer)
            let spki = try #require(csr.publicKey).der
            #expect(
                encoder.tbsCertificate(template, subjectPublicKeyInfo: spki) == (try Self.tbs(viaOpenSSL)),
                "\(issuerKey) → \(leafKey)")

            let direct = try CertificateSigner.sign(template, subjectKey: .request(csr), issuer: issuer)
            #expect(try Self.tbs(direct) == (try Self.tbs(viaOpenSSL)))
            #expect(direct.isSigned(by: issuer.certificate))
            #expect(direct.publicKey == (try key.publicKey()))
        }
    }

    static let keyUsageCases: [(KeyUsage, [UInt8])] = [
        (.digitalSignature, [0x03, 0x02, 0x07, 0x80]),
        ([.digitalSignature, .keyEncipherment], [0x03, 0x02, 0x05, 0xA0]),
        ([.keyCertSign, .cRLSign], [0x03, 0x02, 0x01, 0x06]),
        ([.digitalSignature, .decipherOnly], [0x03, 0x03, 0x07, 0x80, 0x80]),
    ]

    @Test("keyUsage bit strings drop trailing zero bits", arguments: keyUsageCases)
    func keyUsageBits(usage: KeyUsage, expected: [UInt8]) {
        #expect(LeafEncoder.keyUsage(usage) == expected)
    }

    @Test("templates outside the leaf shape go through OpenSSL")
    func fallback() throws {
        var template = try Fixtures.leaf()
        #expect(LeafEncoder.canEncode(template))
        template.subjectAlternativeNames.append(.ip("10.0.0.1"))
        #expect(!LeafEncoder.canEncode(template))
        template = try Fixtures.leaf()
        template.extendedKeyUsage.append(.other("1.3.6.1.5.5.7.3.4"))
        #expect(!LeafEncoder.canEncode(template))
        #expect(!LeafEncoder.canEncode(try Fixtures.authority("CA")))

        // Such a leaf is still issued, by the OpenSSL path.
        let chain = try Fixtures.chain()
        let key = try PrivateKey.generate(.p256)
        let csr = try CertificateSigningRequest.create(key: key, subjectAlternativeNames: [.uri(Fixtures.leafID)])
        var withIP = try Fixtures.leaf()
        withIP.subjectAlternativeNames.append(.ip("10.0.0.1"))
        let leaf = try CertificateSigner.sign(withIP, subjectKey: .request(csr), issuer: chain.intermediate)
        #expect(leaf.subjectAlternativeNames?.value == [.uri(Fixtures.leafID), .ip("10.0.0.1")])
        #expect(leaf.isSigned(by: chain.intermediate.certificate))
    }
}
