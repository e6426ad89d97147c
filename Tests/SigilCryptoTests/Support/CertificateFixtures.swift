import Foundation
import SigilCrypto
import SigilTestSupport

/// Certificates built with `CertificateSigner` alone (no SigilCore profile), from `TestPKI.referenceDate`.
enum CertificateFixtures {
    static let referenceDate = TestPKI.referenceDate
    static let leafID = "spiffe://example.org/ns/default/sa/web"

    static func name(_ commonName: String) -> DistinguishedName {
        DistinguishedName([.init("O", "Sigil Tests"), .init("CN", commonName)])
    }

    /// A CA template valid from one hour before `referenceDate` for `days` days.
    static func authority(
        _ commonName: String, days: Int = 365, pathLength: Int? = nil,
        from notBefore: Date = referenceDate.addingTimeInterval(-3600)
    ) throws -> CertificateTemplate {
        CertificateTemplate(
            serial: try SerialNumber.random(), subject: name(commonName), notBefore: notBefore,
            notAfter: referenceDate.addingTimeInterval(TimeInterval(days) * 86_400),
            basicConstraints: BasicConstraints(isCA: true, pathLength: pathLength), keyUsage: [.keyCertSign, .cRLSign])
    }

    /// An X509-SVID-shaped leaf template: empty subject, one URI SAN, valid for an hour around `referenceDate`.
    static func leaf(uri: String = leafID, keyUsage: KeyUsage = [.digitalSignature]) throws -> CertificateTemplate {
        CertificateTemplate(
            serial: try SerialNumber.random(), subject: .empty, notBefore: referenceDate.addingTimeInterval(-60),
            notAfter: referenceDate.addingTimeInterval(3600), basicConstraints: .endEntity, keyUsage: keyUsage,
            extendedKeyUsage: [.serverAuth, .clientAuth], subjectAlternativeNames: [.uri(uri)])
    }

    /// A self-signed root, an intermediate under it and a leaf under that.
    struct Chain {
        let root: SigningIdentity
        let intermediate: SigningIdentity
        let leaf: Certificate
        let leafKey: PrivateKey
    }

    static func chain(
        keyAlgorithm: KeyAlgorithm = .p256, leafKeyAlgorithm: KeyAlgorithm = .p256, rootName: String = "Test Root"
    ) throws -> Chain {
        let rootKey = try PrivateKey.generate(keyAlgorithm)
        let root = try CertificateSigner.sign(authority(rootName), subjectKey: .key(rootKey), issuer: nil)
        let rootIdentity = SigningIdentity(certificate: root, key: rootKey)
        let intermediateKey = try PrivateKey.generate(keyAlgorithm)
        let intermediate = try CertificateSigner.sign(
            authority("\(rootName) Intermediate", days: 30, pathLength: 0), subjectKey: .key(intermediateKey),
            issuer: rootIdentity)
        let intermediateIdentity = SigningIdentity(certificate: intermediate, key: intermediateKey)
        let leafKey = try PrivateKey.generate(leafKeyAlgorithm)
        let csr = try CertificateSigningRequest.create(key: leafKey, subjectAlternativeNames: [.uri(leafID)])
        let leaf = try CertificateSigner.sign(
            leaf(keyUsage: leafKeyAlgorithm.isRSA ? [.digitalSignature, .keyEncipherment] : [.digitalSignature]),
            subjectKey: .request(csr), issuer: intermediateIdentity)
        return Chain(root: rootIdentity, intermediate: intermediateIdentity, leaf: leaf, leafKey: leafKey)
    }
}
