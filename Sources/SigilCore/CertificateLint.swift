import Foundation
import SigilCrypto

/// Structural checks of a signed certificate against its profile, run on every certificate before it
/// leaves (as Let's Encrypt lints every certificate). Not a signature check: tests cover signatures,
/// and a second verification per leaf would double the costliest step of issuance.
public enum CertificateLint {
    /// Problems with a leaf; empty when it matches the X509-SVID leaf profile and its issuer.
    public static func leafProblems(
        _ leaf: Certificate, issuer: Certificate, identity: SPIFFEID, extraNames: [GeneralName],
        publicKey: PublicKeyInfo
    ) -> [String] {
        var problems = issuerProblems(leaf, issuer: issuer)
        if leaf.serial.bitLength < 64 { problems.append("serial shorter than 64 bits") }
        if leaf.subjectPublicKeyInfoDER != publicKey.der { problems.append("public key differs from the CSR's") }
        let expectedNames: [GeneralName] = [.uri(identity.description)] + extraNames
        if let sans = leaf.subjectAlternativeNames {
            if sans.value != expectedNames { problems.append("SAN \(sans.value) != \(expectedNames)") }
            if leaf.subject.isEmpty && !sans.critical { problems.append("SAN not critical with an empty subject") }
        } else {
            problems.append("no SAN extension")
        }
        if leaf.basicConstraints != Flagged(value: .endEntity, critical: true) {
            problems.append("basicConstraints is not critical cA=false")
        }
        let usage = CertificateProfile.leafKeyUsage(for: publicKey.algorithm)
        if leaf.keyUsage != Flagged(value: usage, critical: true) {
            problems.append("keyUsage is not critical \(usage)")
        }
        if leaf.extendedKeyUsage?.value != [.serverAuth, .clientAuth] {
            problems.append("EKU is not serverAuth+clientAuth")
        }
        if leaf.subjectKeyIdentifier != nil { problems.append("leaf carries a subjectKeyIdentifier") }
        return problems
    }

    /// Problems with an authority certificate of `role` signed by `issuer` (itself for a root).
    public static func authorityProblems(
        _ certificate: Certificate, role: AuthorityRole, issuer: Certificate, trustDomain: TrustDomain
    ) -> [String] {
        var problems = issuerProblems(certificate, issuer: issuer)
        if certificate.subject.isEmpty { problems.append("authority subject is empty") }
        guard let constraints = certificate.basicConstraints, constraints.critical, constraints.value.isCA else {
            return problems + ["basicConstraints is not critical cA=true"]
        }
        if role == .intermediate, constraints.value.pathLength != 0 { problems.append("intermediate pathLen is not 0") }
        if certificate.keyUsage != Flagged(value: [.keyCertSign, .cRLSign], critical: true) {
            problems.append("keyUsage is not critical keyCertSign+cRLSign")
        }
        if certificate.subjectKeyIdentifier == nil { problems.append("no subjectKeyIdentifier") }
        if let sans = certificate.subjectAlternativeNames?.value, sans != [.uri(trustDomain.id.description)] {
            problems.append("SAN \(sans) is not the trust domain ID")
        }
        return problems
    }

    /// Name chaining, key identifiers and validity nesting (RFC 5280 §4.1.2.4, §4.2.1.1, §6.1.3).
    static func issuerProblems(_ certificate: Certificate, issuer: Certificate) -> [String] {
        var problems: [String] = []
        if certificate.issuerNameDER != issuer.subjectNameDER {
            problems.append("issuer name differs from the issuer's subject")
        }
        if let keyID = issuer.subjectKeyIdentifier, certificate.authorityKeyIdentifier != keyID {
            problems.append("authorityKeyIdentifier does not match the issuer's subjectKeyIdentifier")
        }
        if certificate.notBefore >= certificate.notAfter { problems.append("notBefore is not before notAfter") }
        if certificate.notBefore < issuer.notBefore { problems.append("notBefore precedes the issuer's") }
        if certificate.notAfter > issuer.notAfter { problems.append("notAfter outlives the issuer") }
        return problems
    }
}
