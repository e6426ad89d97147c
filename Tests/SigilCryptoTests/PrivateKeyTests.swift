import SigilCrypto
import Testing

@Suite("PrivateKey")
struct PrivateKeyTests {
    @Test("generates every generatable algorithm", arguments: KeyAlgorithm.generatable)
    func generatesRequestedAlgorithm(_ algorithm: KeyAlgorithm) throws {
        let key = try PrivateKey.generate(algorithm)
        #expect(key.algorithm == algorithm)
        #expect(try key.publicKey().algorithm == algorithm)
    }

    @Test("PKCS#8 PEM round trip keeps the key", arguments: KeyAlgorithm.generatable)
    func pkcs8PEMRoundTripKeepsKey(_ algorithm: KeyAlgorithm) throws {
        let key = try PrivateKey.generate(algorithm)
        let pem = try key.pkcs8PEM()
        #expect(pem.hasPrefix("-----BEGIN PRIVATE KEY-----\n"))
        #expect(pem.hasSuffix("-----END PRIVATE KEY-----\n"))
        let reread = try PrivateKey(pem: pem)
        #expect(reread.algorithm == algorithm)
        #expect(try reread.publicKey() == key.publicKey())
        #expect(try reread.pkcs8DER() == key.pkcs8DER())
    }

    @Test("PKCS#8 DER round trip keeps the key", arguments: KeyAlgorithm.generatable)
    func pkcs8DERRoundTripKeepsKey(_ algorithm: KeyAlgorithm) throws {
        let key = try PrivateKey.generate(algorithm)
        let reread = try PrivateKey(pkcs8DER: key.pkcs8DER())
        #expect(try reread.publicKey() == key.publicKey())
        // The PEM form carries exactly the DER form.
        let block = try #require(PEMBlock.parseAll(key.pkcs8PEM()).first)
        #expect(block.label == "PRIVATE KEY")
        #expect(try block.der == key.pkcs8DER())
    }

    @Test("the public-key fingerprint is stable and distinguishes keys")
    func fingerprintIsStable() throws {
        let key = try PrivateKey.generate(.p256)
        let fingerprint = try key.publicKey().sha256Fingerprint
        #expect(fingerprint.count == 64)
        #expect(fingerprint.allSatisfy { $0.isHexDigit && !$0.isUppercase })
        #expect(try key.publicKey().sha256Fingerprint == fingerprint)
        #expect(try PrivateKey(pem: key.pkcs8PEM()).publicKey().sha256Fingerprint == fingerprint)
        #expect(try PrivateKey.generate(.p256).publicKey().sha256Fingerprint != fingerprint)
    }

    @Test("the public key PEM is a PUBLIC KEY block of the SubjectPublicKeyInfo")
    func publicKeyPEM() throws {
        let info = try PrivateKey.generate(.ed25519).publicKey()
        let block = try #require(PEMBlock.parseAll(info.pem).first)
        #expect(block.label == "PUBLIC KEY")
        #expect(block.der == info.der)
    }

    @Test(
        "refuses to generate algorithms outside the generatable list",
        arguments: [KeyAlgorithm.rsa(bits: 1024), .rsa(bits: 2047), .ec(curve: "P-521"), .other("DSA")])
    func refusesUngeneratableAlgorithms(_ algorithm: KeyAlgorithm) {
        expectOpenSSLError(.unsupportedKey) { try PrivateKey.generate(algorithm) }
    }

    @Test("description names the algorithm and never the key material")
    func descriptionHidesKeyMaterial() throws {
        let key = try PrivateKey.generate(.p256)
        #expect(key.description == "PrivateKey(EC P-256)")
        #expect(String(describing: key) == "PrivateKey(EC P-256)")
        #expect(try PrivateKey.generate(.rsa(bits: 2048)).description == "PrivateKey(RSA-2048)")
    }

    @Test(
        "garbage PEM is an invalid encoding",
        arguments: [
            "", "not a key", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
            "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49\n",
        ])
    func garbagePEMIsInvalidEncoding(_ pem: String) {
        expectOpenSSLError(.invalidEncoding) { try PrivateKey(pem: pem) }
    }

    @Test("garbage, truncated and padded DER is an invalid encoding")
    func garbageDERIsInvalidEncoding() throws {
        let der = try PrivateKey.generate(.p256).pkcs8DER()
        for bad in [[], [0x30, 0x03, 0x02], Array(der.dropLast(5)), der + [0x00], [UInt8](repeating: 0xff, count: 64)] {
            expectOpenSSLError(.invalidEncoding) { try PrivateKey(pkcs8DER: bad) }
        }
    }
}
