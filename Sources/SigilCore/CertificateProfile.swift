import Foundation
import SigilCrypto

/// The three certificate profiles Sigil issues (X509-SVID.md and RFC 5280).
public enum CertificateProfile {
    /// Leaf X509-SVID: empty subject, exactly one URI SAN (the SPIFFE ID) in a critical SAN extension,
    /// cA=false, keyUsage digitalSignature (+ keyEncipherment for RSA keys, which TLS 1.2 RSA key
    /// exchange needs), EKU serverAuth + clientAuth.
    public static func leaf(
        serial: SerialNumber, identity: SPIFFEID, extraNames: [GeneralName], key: KeyAlgorithm,
        notBefore: Date, notAfter: Date
    ) -> CertificateTemplate {
        CertificateTemplate(
            serial: serial, subject: .empty, notBefore: notBefore, notAfter: notAfter,
            basicConstraints: .endEntity, keyUsage: leafKeyUsage(for: key),
            extendedKeyUsage: [.serverAuth, .clientAuth],
            subjectAlternativeNames: [.uri(identity.description)] + extraNames)
    }

    /// keyUsage of a leaf with `key`.
    public static func leafKeyUsage(for key: KeyAlgorithm) -> KeyUsage {
        key.isRSA ? [.digitalSignature, .keyEncipherment] : [.digitalSignature]
    }

    /// Signing (intermediate) authority: cA=true with pathLen 0 (it signs leaves only),
    /// keyCertSign + cRLSign, URI SAN `spiffe://<td>` (X509-SVID.md §5.1).
    public static func intermediate(
        serial: SerialNumber, trustDomain: TrustDomain, name: String, notBefore: Date, notAfter: Date
    ) -> CertificateTemplate {
        CertificateTemplate(
            serial: serial, subject: authoritySubject(trustDomain: trustDomain, name: name),
            notBefore: notBefore, notAfter: notAfter,
            basicConstraints: BasicConstraints(isCA: true, pathLength: 0), keyUsage: [.keyCertSign, .cRLSign],
            subjectAlternativeNames: [.uri(trustDomain.id.description)])
    }

    /// Root authority: self-signed, cA=true, keyCertSign + cRLSign, URI SAN `spiffe://<td>`.
    public static func root(
        serial: SerialNumber, trustDomain: TrustDomain, name: String, notBefore: Date, notAfter: Date
    ) -> CertificateTemplate {
        CertificateTemplate(
            serial: serial, subject: authoritySubject(trustDomain: trustDomain, name: name),
            notBefore: notBefore, notAfter: notAfter,
            basicConstraints: BasicConstraints(isCA: true), keyUsage: [.keyCertSign, .cRLSign],
            subjectAlternativeNames: [.uri(trustDomain.id.description)])
    }

    /// Subject of an authority: unique per authority (the serial-derived `name`) so that path building
    /// never confuses two generations of the same role.
    static func authoritySubject(trustDomain: TrustDomain, name: String) -> DistinguishedName {
        DistinguishedName([.init("O", "Sigil"), .init("OU", trustDomain.name), .init("CN", name)])
    }
}
