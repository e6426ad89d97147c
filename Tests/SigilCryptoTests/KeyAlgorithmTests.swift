import SigilCrypto
import Testing

@Suite("KeyAlgorithm")
struct KeyAlgorithmTests {
    @Test("configuration names round trip for every generatable algorithm", arguments: KeyAlgorithm.generatable)
    func configurationNameRoundTrip(_ algorithm: KeyAlgorithm) {
        #expect(KeyAlgorithm(configurationName: algorithm.configurationName) == algorithm)
    }

    @Test(
        "configuration spellings",
        arguments: [
            ("ec-p256", KeyAlgorithm.p256), ("P-256", .p256), ("EC-P384", .p384), ("p384", .p384),
            ("rsa-2048", .rsa(bits: 2048)),
            ("RSA-4096", .rsa(bits: 4096)), ("ed25519", .ed25519),
        ])
    func spellings(_ name: String, _ algorithm: KeyAlgorithm) {
        #expect(KeyAlgorithm(configurationName: name) == algorithm)
    }

    @Test(
        "unknown or weak spellings are refused",
        arguments: ["rsa-1024", "rsa-", "rsa-abc", "ec-p521", "ed448", "", "dsa"])
    func refusedSpellings(_ name: String) {
        #expect(KeyAlgorithm(configurationName: name) == nil)
    }

    @Test(
        "JWK key types",
        arguments: [(KeyAlgorithm.p256, "EC"), (.p384, "EC"), (.rsa(bits: 3072), "RSA"), (.ed25519, "OKP")])
    func jwkKeyTypes(_ algorithm: KeyAlgorithm, _ kty: String) {
        #expect(algorithm.jwkKeyType == kty)
    }
}
