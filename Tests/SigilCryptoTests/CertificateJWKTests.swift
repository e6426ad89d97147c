import Foundation
import SigilCrypto
import Testing

@Suite("Certificate.jwkPublicParameters")
struct CertificateJWKTests {
    static func selfSigned(_ algorithm: KeyAlgorithm) throws -> Certificate {
        try CertificateSigner.sign(
            CertificateFixtures.authority("JWK"), subjectKey: .key(PrivateKey.generate(algorithm)), issuer: nil)
    }

    /// Decodes unpadded base64url (RFC 7515 §2), failing on the standard alphabet's `+`, `/` and `=`.
    static func decodeBase64URL(_ text: String) throws -> [UInt8] {
        #expect(!text.contains("+") && !text.contains("/") && !text.contains("="), "not base64url: \(text)")
        var base64 = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        base64 += String(repeating: "=", count: (4 - base64.count % 4) % 4)
        return Array(try #require(Data(base64Encoded: base64)))
    }

    @Test(
        "EC keys give crv and 32- or 48-byte x and y",
        arguments: [(KeyAlgorithm.p256, "P-256", 32), (.p384, "P-384", 48)])
    func ecParameters(_ algorithm: KeyAlgorithm, _ curve: String, _ length: Int) throws {
        let certificate = try Self.selfSigned(algorithm)
        let parameters = certificate.jwkPublicParameters
        #expect(Set(parameters.keys) == ["crv", "x", "y"])
        #expect(parameters["crv"] == curve)
        let x = try Self.decodeBase64URL(try #require(parameters["x"]))
        let y = try Self.decodeBase64URL(try #require(parameters["y"]))
        #expect(x.count == length)
        #expect(y.count == length)
        // x ‖ y is the uncompressed point at the end of the SubjectPublicKeyInfo.
        #expect(Array(certificate.publicKey.der.suffix(1 + 2 * length)) == [0x04] + x + y)
    }

    @Test("RSA keys give n and e")
    func rsaParameters() throws {
        let parameters = try Self.selfSigned(.rsa(bits: 2048)).jwkPublicParameters
        #expect(Set(parameters.keys) == ["n", "e"])
        #expect(parameters["e"] == "AQAB")
        let modulus = try Self.decodeBase64URL(try #require(parameters["n"]))
        #expect(modulus.count == 256)
        #expect(modulus.first.map { $0 & 0x80 != 0 } == true)
    }

    @Test("Ed25519 keys give crv and a 32-byte x")
    func ed25519Parameters() throws {
        let certificate = try Self.selfSigned(.ed25519)
        let parameters = certificate.jwkPublicParameters
        #expect(Set(parameters.keys) == ["crv", "x"])
        #expect(parameters["crv"] == "Ed25519")
        let x = try Self.decodeBase64URL(try #require(parameters["x"]))
        #expect(x.count == 32)
        #expect(Array(certificate.publicKey.der.suffix(32)) == x)
    }

    @Test(
        "a private key's JWK parameters are those of its certificate",
        arguments: [KeyAlgorithm.p256, .p384, .rsa(bits: 2048), .ed25519])
    func privateKeyParameters(_ algorithm: KeyAlgorithm) throws {
        let key = try PrivateKey.generate(algorithm)
        let certificate = try CertificateSigner.sign(
            CertificateFixtures.authority("JWK"), subjectKey: .key(key), issuer: nil)
        #expect(!key.jwkPublicParameters.isEmpty)
        #expect(key.jwkPublicParameters == certificate.jwkPublicParameters)
    }

    @Test("base64URL uses the URL-safe alphabet without padding")
    func base64URLAlphabet() {
        #expect(base64URL([0xfb, 0xff]) == "-_8")
        #expect(base64URL([0x01, 0x00, 0x01]) == "AQAB")
        #expect(base64URL([]) == "")
    }
}
