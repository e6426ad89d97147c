import SigilCrypto
import Testing

@Suite("CertificateSigningRequest")
struct CertificateSigningRequestTests {
    static let algorithms: [KeyAlgorithm] = [.p256, .p384, .rsa(bits: 2048), .ed25519]
    static let spiffeID = "spiffe://example.org/ns/default/sa/web"

    @Test("a created CSR survives PEM and DER and verifies", arguments: algorithms)
    func createdCSRRoundTripsAndVerifies(_ algorithm: KeyAlgorithm) throws {
        let key = try PrivateKey.generate(algorithm)
        let names: [GeneralName] = [.uri(Self.spiffeID), .dns("web.default.svc")]
        let csr = try CertificateSigningRequest.create(key: key, subjectAlternativeNames: names)
        #expect(csr.verifySignature())

        let pem = try csr.pem
        #expect(pem.hasPrefix("-----BEGIN CERTIFICATE REQUEST-----\n"))
        let fromPEM = try CertificateSigningRequest(pem: pem)
        let fromDER = try CertificateSigningRequest(der: csr.der)
        for parsed in [fromPEM, fromDER] {
            #expect(parsed.verifySignature())
            #expect(try parsed.der == csr.der)
            #expect(parsed.publicKey == (try key.publicKey()))
            #expect(parsed.subject.isEmpty)
            #expect(parsed.requestedExtensions.subjectAlternativeNames == names)
            #expect(parsed.requestedExtensions.oids == ["2.5.29.17"])
            #expect(!parsed.requestedExtensions.requestsCA)
            #expect(!parsed.requestedExtensions.malformed)
        }
    }

    @Test("subject and every SAN type survive parsing")
    func subjectAndNamesSurvive() throws {
        let subject = DistinguishedName([.init("O", "Example, Inc."), .init("CN", "web")])
        let names: [GeneralName] = [
            .uri(Self.spiffeID), .dns("web.example.org"), .ip("192.0.2.7"), .ip("2001:db8::1"),
            .email("ops@example.org"),
        ]
        let key = try PrivateKey.generate(.p256)
        let csr = try CertificateSigningRequest(
            der: CertificateSigningRequest.create(key: key, subject: subject, subjectAlternativeNames: names).der)
        #expect(csr.subject == subject)
        #expect(csr.requestedExtensions.subjectAlternativeNames == names)
    }

    @Test("a CSR without SANs requests no extensions")
    func noNamesNoExtensions() throws {
        let csr = try CertificateSigningRequest.create(key: PrivateKey.generate(.p256), subjectAlternativeNames: [])
        #expect(csr.verifySignature())
        let extensions = csr.requestedExtensions
        #expect(extensions.subjectAlternativeNames.isEmpty && extensions.oids.isEmpty)
        #expect(!extensions.requestsCA && !extensions.malformed)
    }

    @Test("an IP SAN that is not an address cannot be encoded")
    func invalidIPAddressIsRejected() throws {
        let key = try PrivateKey.generate(.p256)
        expectOpenSSLError(.invalidArgument) {
            try CertificateSigningRequest.create(key: key, subjectAlternativeNames: [.ip("not-an-ip")])
        }
    }

    @Test("a flipped byte in the signature breaks proof of possession", arguments: algorithms)
    func tamperedSignatureDoesNotVerify(_ algorithm: KeyAlgorithm) throws {
        let csr = try CertificateSigningRequest.create(
            key: PrivateKey.generate(algorithm), subjectAlternativeNames: [.uri(Self.spiffeID)])
        var der = try csr.der
        // The signature BIT STRING is the last field of the CertificationRequest SEQUENCE, so the last byte
        // of the encoding lies inside the signature value.
        der[der.count - 1] ^= 0x01
        do {
            let tampered = try CertificateSigningRequest(der: der)
            #expect(!tampered.verifySignature())
        } catch let error as OpenSSLError {
            #expect(error.code == .invalidEncoding)
        }
    }

    @Test("a flipped byte in the requested names breaks the signature")
    func tamperedContentDoesNotVerify() throws {
        let csr = try CertificateSigningRequest.create(
            key: PrivateKey.generate(.p256), subjectAlternativeNames: [.uri(Self.spiffeID)])
        var der = try csr.der
        let position = try #require(findSubsequence(Array("default".utf8), in: der))
        der[position] = UInt8(ascii: "D")
        let tampered = try CertificateSigningRequest(der: der)
        #expect(
            tampered.requestedExtensions.subjectAlternativeNames == [.uri("spiffe://example.org/ns/Default/sa/web")])
        #expect(!tampered.verifySignature())
    }

    @Test("the legacy NEW CERTIFICATE REQUEST label is accepted")
    func legacyLabelIsAccepted() throws {
        let csr = try CertificateSigningRequest.create(key: PrivateKey.generate(.p256), subjectAlternativeNames: [])
        let pem = PEMBlock(label: "NEW CERTIFICATE REQUEST", der: try csr.der).encoded
        #expect(try CertificateSigningRequest(pem: pem).verifySignature())
    }

    @Test("PEM with zero or two CSR blocks is an invalid encoding")
    func wrongNumberOfBlocks() throws {
        let pem = try CertificateSigningRequest.create(key: PrivateKey.generate(.p256), subjectAlternativeNames: []).pem
        let key = try PrivateKey.generate(.p256).pkcs8PEM()
        for text in [key, pem + pem, ""] {
            expectOpenSSLError(.invalidEncoding) { try CertificateSigningRequest(pem: text) }
        }
    }

    @Test("garbage and truncated PEM is an invalid encoding")
    func garbagePEM() throws {
        let pem = try CertificateSigningRequest.create(key: PrivateKey.generate(.p256), subjectAlternativeNames: []).pem
        let truncated = String(pem.dropLast(30))
        let garbled = "-----BEGIN CERTIFICATE REQUEST-----\nnot base64!\n-----END CERTIFICATE REQUEST-----\n"
        let wrongContent = PEMBlock(label: "CERTIFICATE REQUEST", der: [0x30, 0x03, 0x02, 0x01, 0x00]).encoded
        for text in [truncated, garbled, wrongContent] {
            expectOpenSSLError(.invalidEncoding) { try CertificateSigningRequest(pem: text) }
        }
    }

    @Test("garbage, truncated and padded DER is an invalid encoding")
    func garbageDER() throws {
        let der = try CertificateSigningRequest.create(key: PrivateKey.generate(.p256), subjectAlternativeNames: []).der
        for bad in [[], [0x30], Array(der.dropLast()), der + [0x00], Array(der.dropFirst()), Array("hello".utf8)] {
            expectOpenSSLError(.invalidEncoding) { try CertificateSigningRequest(der: bad) }
        }
    }
}

/// The index of the first occurrence of `needle` in `haystack`.
func findSubsequence(_ needle: [UInt8], in haystack: [UInt8]) -> Int? {
    guard needle.count <= haystack.count else { return nil }
    return (0...(haystack.count - needle.count)).first { Array(haystack[$0..<($0 + needle.count)]) == needle }
}
