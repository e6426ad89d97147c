import SigilCrypto
import Testing

@Suite("Digest")
struct DigestTests {
    @Test("SHA-256 matches the FIPS 180-2 vectors")
    func sha256Vectors() {
        #expect(
            hexString(Digest.sha256(Array("abc".utf8)))
                == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(
            hexString(Digest.sha256([UInt8]())) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    }

    @Test("HMAC-SHA256 matches RFC 4231 test cases 2 and 6, message after message under one key")
    func hmacVector() {
        let jefe = HMACSHA256(key: Array("Jefe".utf8))
        for _ in 0..<2 {
            #expect(
                hexString(jefe.authenticate(Array("what do ya want for nothing?".utf8)))
                    == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
        }
        // Test case 6: a key longer than the block size is hashed first.
        let long = HMACSHA256(key: [UInt8](repeating: 0xaa, count: 131))
        #expect(
            hexString(long.authenticate(Array("Test Using Larger Than Block-Size Key - Hash Key First".utf8)))
                == "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54")
    }

    @Test("secure random bytes have the requested length and differ")
    func randomBytes() throws {
        #expect(try SecureRandom.bytes(0).isEmpty)
        let first = try SecureRandom.bytes(32)
        #expect(first.count == 32)
        #expect(try SecureRandom.bytes(32) != first)
    }

    @Test("hexString is lowercase with no separators")
    func hex() {
        #expect(hexString([0x00, 0x0f, 0xa0, 0xff]) == "000fa0ff")
        #expect(hexString([UInt8]()) == "")
    }
}
