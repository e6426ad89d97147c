@testable import SigilCrypto
import Testing

@Suite("DERStructure")
struct DERStructureTests {
    // SEQUENCE { INTEGER 0, SEQUENCE {}, SEQUENCE {}, [0] {} } inside SEQUENCE { …, SEQUENCE {}, BIT STRING 00 }
    static let minimalRequest: [UInt8] = [
        0x30, 0x10, 0x30, 0x09, 0x02, 0x01, 0x00, 0x30, 0x00, 0x30, 0x00, 0xA0, 0x00, 0x30, 0x00, 0x03, 0x01, 0x00,
    ]

    @Test("a CertificationRequest shape in strict DER passes")
    func strictShape() {
        #expect(DERStructure.isCertificationRequest(Self.minimalRequest))
    }

    @Test(
        "BER forms and missing fields are refused",
        arguments: [
            ("indefinite length", [0x30, 0x80, 0x02, 0x01, 0x00, 0x00, 0x00] as [UInt8]),
            ("long form for a short length", [0x30, 0x81, 0x03, 0x02, 0x01, 0x00]),
            ("length with a leading zero octet", [0x30, 0x82, 0x00, 0x03, 0x02, 0x01, 0x00]),
            ("length past the end", [0x30, 0x05, 0x02, 0x01, 0x00]),
            ("trailing byte", [0x30, 0x03, 0x02, 0x01, 0x00, 0x00]),
            ("empty", []),
        ])
    func refused(_ name: String, _ bytes: [UInt8]) {
        #expect(!DERStructure.isStrict(bytes), "\(name)")
        #expect(!DERStructure.isCertificationRequest(bytes), "\(name)")
    }

    @Test("a request without its attributes field is refused")
    func missingAttributes() {
        let withoutAttributes: [UInt8] = [
            0x30, 0x0E, 0x30, 0x07, 0x02, 0x01, 0x00, 0x30, 0x00, 0x30, 0x00, 0x30, 0x00, 0x03, 0x01, 0x00,
        ]
        #expect(DERStructure.isStrict(withoutAttributes))
        #expect(!DERStructure.isCertificationRequest(withoutAttributes))
    }

    @Test("a CSR made by OpenSSL passes, and the parser refuses it with a BER length")
    func realCSR() throws {
        let key = try PrivateKey.generate(.p256)
        let der = try CertificateSigningRequest.create(key: key, subjectAlternativeNames: []).der
        #expect(DERStructure.isCertificationRequest(der))
        // Re-encode the outer length in the long form with one more octet than needed.
        #expect(der[1] == 0x81 || der[1] < 0x80)
        var padded = der
        if der[1] < 0x80 {
            padded.replaceSubrange(1...1, with: [0x81, der[1]])
        } else {
            padded.replaceSubrange(1...2, with: [0x82, 0x00, der[2]])
        }
        #expect(throws: OpenSSLError.self) { try CertificateSigningRequest(der: padded) }
    }
}
