import Foundation
import SigilCore
import SigilCrypto

/// Issues many leaves in one process so LeakSanitizer (scripts/leakcheck) can prove SigilCrypto frees every
/// OpenSSL object: key generation, CSR create/parse/verify, signing, self-check, PEM, chain verification, CRL.
@main
struct LeakCheck {
    static func main() throws {
        var count = 10_000
        var arguments = CommandLine.arguments.dropFirst()
        while let argument = arguments.popFirst() {
            if argument == "--count", let value = arguments.popFirst().flatMap(Int.init) { count = value }
        }
        let clock = SystemClock()
        let configuration = AuthorityConfiguration(trustDomain: try TrustDomain("leak.test"))
        let root = try AuthorityFactory.makeRoot(configuration, state: .active, at: clock.now)
        let intermediate = try AuthorityFactory.makeIntermediate(
            configuration, parent: root.record, parentKey: root.key, state: .active, at: clock.now)
        let signer = SigningAuthority(
            record: intermediate.record, key: intermediate.key, chain: [intermediate.record.certificate],
            trustDomain: configuration.trustDomain)
        let issuer = CertificateIssuer(policy: IssuancePolicy())
        let identity = try SPIFFEID(parsing: "spiffe://leak.test/ns/default/sa/web")
        var issued: [SerialNumber] = []
        for index in 0..<count {
            let algorithm: KeyAlgorithm = index % 50 == 0 ? .ed25519 : .p256
            let key = try PrivateKey.generate(algorithm)
            let csr = try CertificateSigningRequest.create(
                key: key, subjectAlternativeNames: [.uri(identity.description)])
            let parsed = try CertificateSigningRequest(pem: try csr.pem)
            let leaf = try issuer.issue(IssuanceRequest(csr: parsed, identity: identity), by: signer, at: clock.now)
            _ = leaf.chainPEM
            _ = try key.pkcs8PEM()
            if index % 100 == 0 {
                let verdict = try ChainVerifier.verify(
                    leaf.certificate, intermediates: leaf.chain, roots: [root.record.certificate], at: clock.now)
                guard verdict == .valid else {
                    throw CAError(.internalError, reason: "leaf \(index) does not verify: \(verdict)")
                }
                issued.append(leaf.serial)
            }
        }
        // Refusals take the error paths that drain the OpenSSL error queue.
        for garbage in ["", "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"] {
            _ = try? CertificateSigningRequest(pem: garbage)
        }
        let crl = try CertificateRevocationList.sign(
            entries: issued.map { .init(serial: $0, revokedAt: clock.now) }, number: 1, thisUpdate: clock.now,
            nextUpdate: clock.now + .seconds(3600),
            issuer: SigningIdentity(certificate: intermediate.record.certificate, key: intermediate.key))
        print("issued \(count) leaves; CRL with \(crl.entries.count) entries")
    }
}
