import Foundation
import SigilCrypto
import Testing

@Suite("Certificate parsing")
struct CertificateTests {
    @Test("PEM and DER round trips give equal certificates")
    func pemAndDERRoundTrip() throws {
        let leaf = try CertificateFixtures.chain().leaf
        #expect(leaf.pem.hasPrefix("-----BEGIN CERTIFICATE-----\n"))
        #expect(try Certificate(pem: leaf.pem) == leaf)
        #expect(try Certificate(der: leaf.der) == leaf)
        #expect(try Certificate(der: leaf.der).hashValue == leaf.hashValue)
    }

    @Test("the fingerprint is the SHA-256 of the DER")
    func fingerprintIsSHA256OfDER() throws {
        let leaf = try CertificateFixtures.chain().leaf
        #expect(leaf.sha256Fingerprint == hexString(Digest.sha256(leaf.der)))
        #expect(leaf.sha256Fingerprint.count == 64)
    }

    @Test("parseChain keeps order and skips other blocks; init(pem:) takes the first certificate")
    func chainParsing() throws {
        let chain = try CertificateFixtures.chain()
        let key = try PrivateKey.generate(.p256).pkcs8PEM()
        let text = "leading text\n" + key + chain.leaf.pem + "between\n" + chain.intermediate.certificate.pem
        #expect(try Certificate.parseChain(pem: text) == [chain.leaf, chain.intermediate.certificate])
        #expect(try Certificate(pem: text) == chain.leaf)
        #expect(try Certificate.parseChain(pem: key).isEmpty)
    }

    @Test("text without a CERTIFICATE block is an invalid encoding")
    func noCertificateBlock() throws {
        let key = try PrivateKey.generate(.p256).pkcs8PEM()
        for text in ["", "hello", key] {
            expectOpenSSLError(.invalidEncoding) { try Certificate(pem: text) }
        }
    }

    @Test("truncated or garbled certificate PEM is an invalid encoding")
    func garbagePEM() throws {
        let pem = try CertificateFixtures.chain().leaf.pem
        let unterminated = pem.replacingOccurrences(of: "-----END CERTIFICATE-----\n", with: "")
        let truncatedBody = PEMBlock(label: "CERTIFICATE", der: Array(try Certificate(pem: pem).der.prefix(100)))
            .encoded
        let badBase64 = "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n"
        for text in [unterminated, truncatedBody, badBase64] {
            expectOpenSSLError(.invalidEncoding) { try Certificate(pem: text) }
        }
    }

    @Test("garbage, truncated and padded DER is an invalid encoding")
    func garbageDER() throws {
        let der = try CertificateFixtures.chain().leaf.der
        for bad in [
            [], [0x30, 0x00], Array(der.dropLast(1)), der + [0x00], Array(der.dropFirst(4)),
            [UInt8](repeating: 0x30, count: 8),
        ] {
            expectOpenSSLError(.invalidEncoding) { try Certificate(der: bad) }
        }
    }
}
