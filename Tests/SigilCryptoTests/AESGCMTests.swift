import SigilCrypto
import Testing

@Suite("AESGCM")
struct AESGCMTests {
    static let associatedData = Array("authority:intermediate-0123".utf8)

    @Test("seal then open returns the plaintext", arguments: [0, 1, 15, 16, 17, 4096])
    func roundTrip(_ length: Int) throws {
        let key = try SecureRandom.bytes(AESGCM.keyLength)
        let plaintext = try SecureRandom.bytes(length)
        let sealed = try AESGCM.seal(plaintext, key: key, associatedData: Self.associatedData)
        #expect(sealed.count == 12 + length + 16)
        #expect(try AESGCM.open(sealed, key: key, associatedData: Self.associatedData) == plaintext)
    }

    @Test("round trip with empty associated data")
    func emptyAssociatedData() throws {
        let key = try SecureRandom.bytes(AESGCM.keyLength)
        let sealed = try AESGCM.seal(Array("secret".utf8), key: key, associatedData: [])
        #expect(try AESGCM.open(sealed, key: key, associatedData: []) == Array("secret".utf8))
        expectOpenSSLError(.decryptionFailed) { try AESGCM.open(sealed, key: key, associatedData: [0]) }
    }

    @Test("each seal uses a fresh nonce")
    func freshNonce() throws {
        let key = try SecureRandom.bytes(AESGCM.keyLength)
        let first = try AESGCM.seal(Array("same".utf8), key: key, associatedData: [])
        let second = try AESGCM.seal(Array("same".utf8), key: key, associatedData: [])
        #expect(first.prefix(12) != second.prefix(12))
        #expect(first != second)
    }

    @Test("the wrong key fails authentication")
    func wrongKey() throws {
        let sealed = try AESGCM.seal(
            Array("secret".utf8), key: SecureRandom.bytes(AESGCM.keyLength), associatedData: Self.associatedData)
        let otherKey = try SecureRandom.bytes(AESGCM.keyLength)
        expectOpenSSLError(.decryptionFailed) {
            try AESGCM.open(sealed, key: otherKey, associatedData: Self.associatedData)
        }
    }

    @Test("flipping any byte (nonce, ciphertext or tag) fails authentication", arguments: [0, 11, 12, 20, 27, 28, 43])
    func tamperedByte(_ index: Int) throws {
        let key = try SecureRandom.bytes(AESGCM.keyLength)
        var sealed = try AESGCM.seal(Array("sixteen byte msg".utf8), key: key, associatedData: Self.associatedData)
        #expect(sealed.count == 44)
        sealed[index] ^= 0x80
        expectOpenSSLError(.decryptionFailed) { try AESGCM.open(sealed, key: key, associatedData: Self.associatedData) }
    }

    @Test("different associated data fails authentication")
    func wrongAssociatedData() throws {
        let key = try SecureRandom.bytes(AESGCM.keyLength)
        let sealed = try AESGCM.seal(Array("secret".utf8), key: key, associatedData: Array("root-a".utf8))
        expectOpenSSLError(.decryptionFailed) {
            try AESGCM.open(sealed, key: key, associatedData: Array("root-b".utf8))
        }
        expectOpenSSLError(.decryptionFailed) { try AESGCM.open(sealed, key: key, associatedData: []) }
    }

    @Test("truncated input and bad key lengths are refused")
    func badLengths() throws {
        let key = try SecureRandom.bytes(AESGCM.keyLength)
        let sealed = try AESGCM.seal(Array("secret".utf8), key: key, associatedData: [])
        expectOpenSSLError(.decryptionFailed) {
            try AESGCM.open(Array(sealed.prefix(27)), key: key, associatedData: [])
        }
        expectOpenSSLError(.decryptionFailed) {
            try AESGCM.open(Array(sealed.dropLast()), key: key, associatedData: [])
        }
        expectOpenSSLError(.decryptionFailed) {
            try AESGCM.open(sealed, key: Array(key.prefix(16)), associatedData: [])
        }
        expectOpenSSLError(.invalidArgument) { try AESGCM.seal([1], key: Array(key.prefix(31)), associatedData: []) }
    }
}
