import Foundation
import SigilAPIModels
import SigilCore
import SigilServer
import SigilCrypto
import SigilTestSupport
import Testing

@Suite("SPIFFEBundle")
struct SPIFFEBundleTests {
    /// The bundle's JSON as plain dictionaries, the way a relying party reads it.
    static func jsonObject(_ bundle: SPIFFEBundle) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: bundle.json()) as? [String: Any])
    }

    @Test("each root is one x509-svid key with exactly one standard-base64 x5c and no kid")
    func keysFollowTheSPIFFEFormat() throws {
        let roots = [try TestPKI().root.certificate, try TestPKI(keyAlgorithm: .rsa(bits: 2048)).root.certificate]
        let object = try Self.jsonObject(SPIFFEBundle(roots: roots, sequence: 7, refreshHint: .seconds(300)))
        #expect(object["spiffe_sequence"] as? Int == 7)
        #expect(object["spiffe_refresh_hint"] as? Int == 300)
        let keys = try #require(object["keys"] as? [[String: Any]])
        #expect(keys.count == 2)
        for (key, root) in zip(keys, roots) {
            #expect(key["use"] as? String == "x509-svid")
            #expect(key["kid"] == nil)
            let x5c = try #require(key["x5c"] as? [String])
            #expect(x5c.count == 1)
            let der = try #require(Data(base64Encoded: x5c[0]))
            #expect(Array(der) == root.der)
        }
        #expect(keys[0]["kty"] as? String == "EC")
        #expect(keys[0]["crv"] as? String == "P-256")
        #expect((keys[0]["x"] as? String)?.isEmpty == false && (keys[0]["y"] as? String)?.isEmpty == false)
        #expect(keys[0]["n"] == nil)
        #expect(keys[1]["kty"] as? String == "RSA")
        #expect(keys[1]["e"] as? String == "AQAB")
        #expect(keys[1]["crv"] == nil && keys[1]["x"] == nil)
    }

    @Test("the key parameters are the certificate's public key")
    func keyParametersMatchCertificate() throws {
        let root = try TestPKI().root.certificate
        let key = try #require(SPIFFEBundle(roots: [root], sequence: 1, refreshHint: .seconds(60)).keys.first)
        let parameters = root.jwkPublicParameters
        #expect(key.x == parameters["x"] && key.y == parameters["y"] && key.crv == parameters["crv"])
    }

    @Test("equal bundles encode to equal bytes and decode back")
    func canonicalJSON() throws {
        let roots = [try TestPKI().root.certificate]
        let first = SPIFFEBundle(roots: roots, sequence: 3, refreshHint: .seconds(60))
        let second = SPIFFEBundle(roots: roots, sequence: 3, refreshHint: .seconds(60))
        #expect(try first.json() == second.json())
        #expect(try JSONDecoder().decode(SPIFFEBundle.self, from: first.json()) == first)
        let text = String(decoding: try first.json(), as: UTF8.self)
        #expect(!text.contains("\\/"), "slashes in base64 are not escaped")
    }

    @Test("an empty root list is an empty key set")
    func emptyBundle() throws {
        let object = try Self.jsonObject(SPIFFEBundle(roots: [], sequence: 0, refreshHint: .seconds(60)))
        #expect((object["keys"] as? [Any])?.isEmpty == true)
    }

    @Test("the PEM form concatenates the roots in order")
    func pem() throws {
        let roots = [try TestPKI().root.certificate, try TestPKI().root.certificate]
        #expect(try Certificate.parseChain(pem: SPIFFEBundle.pem(roots)) == roots)
    }
}
