import Foundation
import SigilCore
import SigilCrypto
import SigilTestSupport
import Testing

@Suite("CertificateIssuer")
struct CertificateIssuerTests {
    static let identity = try! SPIFFEID(parsing: "spiffe://example.org/ns/default/sa/web")
    /// Ten minutes and a fraction after the fixtures were made: well inside the intermediate's life.
    static let now = TestPKI.referenceDate + .milliseconds(600_700)

    let pki: TestPKI

    init() throws {
        pki = try TestPKI()
    }

    static func request(
        names: [GeneralName] = [.uri(identity.description)], key: KeyAlgorithm = .p256, identity: SPIFFEID = identity,
        ttl: Duration? = nil
    ) throws -> IssuanceRequest {
        IssuanceRequest(csr: try TestPKI.makeCSR(keyAlgorithm: key, names: names).csr, identity: identity, ttl: ttl)
    }

    func evaluate(
        _ request: IssuanceRequest, policy: IssuancePolicy = IssuancePolicy(), at now: Date = now
    ) -> PolicyDecision {
        CertificateIssuer(policy: policy).evaluate(
            request, trustDomain: pki.configuration.trustDomain, issuerNotAfter: pki.intermediate.notAfter, at: now)
    }

    func issue(
        _ request: IssuanceRequest, policy: IssuancePolicy = IssuancePolicy(), at now: Date = now
    ) throws -> IssuedCertificate {
        try CertificateIssuer(policy: policy).issue(request, by: pki.signingAuthority, at: now)
    }

    // MARK: Leaf profile

    @Test("a leaf has the X509-SVID profile", arguments: [KeyAlgorithm.p256, .p384, .rsa(bits: 2048), .ed25519])
    func leafProfile(_ algorithm: KeyAlgorithm) throws {
        let (csr, key) = try TestPKI.makeCSR(keyAlgorithm: algorithm, names: [.uri(Self.identity.description)])
        let issued = try issue(IssuanceRequest(csr: csr, identity: Self.identity))
        let leaf = issued.certificate

        #expect(leaf.subject.isEmpty)
        #expect(leaf.subjectAlternativeNames == Flagged(value: [.uri(Self.identity.description)], critical: true))
        #expect(leaf.basicConstraints == Flagged(value: .endEntity, critical: true))
        let usage: KeyUsage = algorithm.isRSA ? [.digitalSignature, .keyEncipherment] : [.digitalSignature]
        #expect(leaf.keyUsage == Flagged(value: usage, critical: true))
        #expect(leaf.extendedKeyUsage?.value == [.serverAuth, .clientAuth])
        #expect(leaf.subjectKeyIdentifier == nil)
        #expect(leaf.authorityKeyIdentifier == pki.intermediate.certificate.subjectKeyIdentifier)
        #expect(leaf.issuerNameDER == pki.intermediate.certificate.subjectNameDER)
        #expect(leaf.publicKey == (try key.publicKey()))
        #expect(leaf.serial.bitLength >= 64)
        #expect(leaf.isSigned(by: pki.intermediate.certificate))
        let verification = try ChainVerifier.verify(
            leaf, intermediates: issued.chain, roots: [pki.root.certificate], at: Self.now)
        #expect(verification == .valid)
    }

    @Test("validity: notBefore backdated 30 s, default TTL 1 h, whole seconds, renewAfter at half-life")
    func leafValidity() throws {
        let issued = try issue(Self.request())
        let start = Self.now.truncatedToSecond
        #expect(issued.notBefore == start - .seconds(30))
        #expect(issued.notAfter == start + .seconds(3600))
        #expect(issued.renewAfter == issued.notBefore + .seconds(1815))
        #expect(
            issued.renewAfter
                == issued.notBefore.addingTimeInterval(issued.notAfter.timeIntervalSince(issued.notBefore) / 2))
    }

    @Test("the requested TTL is honoured")
    func requestedTTL() throws {
        let issued = try issue(Self.request(ttl: .seconds(600)))
        #expect(issued.notAfter == Self.now.truncatedToSecond + .seconds(600))
    }

    @Test("notBefore is never earlier than the issuer's")
    func notBeforeClampedToIssuer() throws {
        let issued = try issue(Self.request(), at: pki.intermediate.notBefore + .seconds(5))
        #expect(issued.notBefore == pki.intermediate.notBefore)
    }

    @Test("the result carries chain, identity, authority, key and an inventory row")
    func issuedCertificateFields() throws {
        let (csr, key) = try TestPKI.makeCSR(names: [])
        let issued = try issue(IssuanceRequest(csr: csr, identity: Self.identity))
        #expect(issued.chain == [pki.intermediate.certificate])
        #expect(issued.chainPEM == [issued.certificate.pem, pki.intermediate.certificate.pem])
        #expect(issued.spiffeID == Self.identity)
        #expect(issued.authorityID == pki.intermediate.id)
        #expect(issued.publicKey == (try key.publicKey()))
        #expect(issued.serial == issued.certificate.serial)

        let row = issued.inventoryRecord(issuedAt: Self.now)
        #expect(row.serial == issued.serial)
        #expect(row.spiffeID == Self.identity)
        #expect(row.authorityID == pki.intermediate.id)
        #expect(row.notBefore == issued.notBefore && row.notAfter == issued.notAfter)
        #expect(row.publicKeySHA256 == (try key.publicKey().sha256Fingerprint))
        #expect(row.issuedAt == Self.now)
        #expect(row.revokedAt == nil)
    }

    @Test("a CSR without a URI SAN gets the caller's identity")
    func csrWithoutURI() throws {
        let issued = try issue(Self.request(names: []))
        #expect(issued.certificate.subjectAlternativeNames?.value == [.uri(Self.identity.description)])
    }

    @Test("serials differ between leaves")
    func distinctSerials() throws {
        let serials = try (0..<8).map { _ in try issue(Self.request()).serial }
        #expect(Set(serials).count == 8)
    }

    // MARK: Denials

    @Test("a CSR whose signature does not verify is refused: no proof of possession")
    func badCSRSignature() throws {
        var der = try TestPKI.makeCSR(names: [.uri(Self.identity.description)]).csr.der
        der[der.count - 1] ^= 0x01  // inside the signature, the CSR's last field
        let request = IssuanceRequest(csr: try CertificateSigningRequest(der: der), identity: Self.identity)
        expectDenied(evaluate(request), .csrSignatureInvalid)
        expectCAError(.csrSignatureInvalid) { try issue(request) }
    }

    @Test("two URI SANs are an identity mismatch, even if one is the caller's")
    func twoURISANs() throws {
        let request = try Self.request(names: [
            .uri(Self.identity.description), .uri("spiffe://example.org/ns/default/sa/db"),
        ])
        expectDenied(evaluate(request), .identityMismatch)
        expectCAError(.identityMismatch) { try issue(request) }
    }

    @Test(
        "a URI SAN other than the caller's identity is an identity mismatch",
        arguments: [
            "spiffe://example.org/ns/default/sa/admin", "spiffe://example.org/ns/default/sa/web/x",
            "spiffe://other.org/ns/default/sa/web", "SPIFFE://example.org/ns/default/sa/web", "https://example.org/",
        ])
    func mismatchingURISAN(_ uri: String) throws {
        let request = try Self.request(names: [.uri(uri)])
        expectDenied(evaluate(request), .identityMismatch)
        expectCAError(.identityMismatch) { try issue(request) }
    }

    @Test("a CSR asking for a CA certificate is refused")
    func requestsCA() throws {
        let csr = try CertificateSigningRequest(pem: CSRFixtures.requestsCA)
        #expect(csr.verifySignature())
        #expect(csr.requestedExtensions.requestsCA)
        let request = IssuanceRequest(csr: csr, identity: Self.identity)
        expectDenied(evaluate(request), .policyDenied)
        expectCAError(.policyDenied) { try issue(request) }
    }

    @Test("a 1024-bit RSA key is not allowed")
    func rsa1024KeyNotAllowed() throws {
        let csr = try CertificateSigningRequest(pem: CSRFixtures.rsa1024)
        #expect(csr.verifySignature())
        #expect(csr.publicKey?.algorithm == .rsa(bits: 1024))
        let request = IssuanceRequest(
            csr: csr, identity: try SPIFFEID(parsing: "spiffe://example.org/ns/default/sa/legacy"))
        expectDenied(evaluate(request), .keyNotAllowed)
        expectCAError(.keyNotAllowed) { try issue(request) }
    }

    @Test("a key type outside the policy's list is not allowed")
    func keyTypeOutsidePolicy() throws {
        let policy = IssuancePolicy(allowedKeys: [.p256])
        expectDenied(evaluate(try Self.request(key: .ed25519), policy: policy), .keyNotAllowed)
        expectDenied(evaluate(try Self.request(key: .p384), policy: policy), .keyNotAllowed)
        #expect(evaluate(try Self.request(key: .p256), policy: policy) == .allowed(subjectAlternativeNames: []))
    }

    @Test(
        "IP and email SANs are refused",
        arguments: [GeneralName.ip("10.0.0.1"), .ip("2001:db8::1"), .email("web@example.org")])
    func ipAndEmailSANs(_ name: GeneralName) throws {
        let request = try Self.request(names: [.uri(Self.identity.description), name])
        expectDenied(evaluate(request), .policyDenied)
        expectCAError(.policyDenied) { try issue(request) }
    }

    @Test("a DNS SAN is refused unless a DNS template allows it")
    func dnsSANNeedsTemplate() throws {
        let request = try Self.request(names: [.uri(Self.identity.description), .dns("web.default.svc")])
        expectDenied(evaluate(request), .policyDenied)

        let policy = IssuancePolicy(dnsTemplates: ["{service_account}.{namespace}.svc"])
        let issued = try issue(request, policy: policy)
        #expect(
            issued.certificate.subjectAlternativeNames?.value == [
                .uri(Self.identity.description), .dns("web.default.svc"),
            ])

        let other = try Self.request(names: [.dns("db.default.svc")])
        expectDenied(evaluate(other, policy: policy), .policyDenied)
        let otherNamespace = try Self.request(names: [.dns("web.prod.svc")])
        expectDenied(evaluate(otherNamespace, policy: policy), .policyDenied)
    }

    @Test("allowed DNS SANs are lowercased and deduplicated")
    func dnsSANsNormalised() throws {
        let policy = IssuancePolicy(dnsTemplates: ["{service_account}.{namespace}.svc", "*.{namespace}.svc"])
        let request = try Self.request(names: [.dns("WEB.default.svc"), .dns("web.default.svc"), .dns("*.default.svc")])
        #expect(
            evaluate(request, policy: policy)
                == .allowed(subjectAlternativeNames: [.dns("web.default.svc"), .dns("*.default.svc")]))
    }

    @Test(
        "a TTL outside min…max is refused, never adjusted",
        arguments: [Duration.seconds(59), .seconds(86_401), .seconds(30 * 86_400), .zero])
    func ttlOutOfPolicyRange(_ ttl: Duration) throws {
        let request = try Self.request(ttl: ttl)
        expectDenied(evaluate(request), .ttlOutOfRange)
        expectCAError(.ttlOutOfRange) { try issue(request) }
    }

    @Test("the TTL bounds themselves are allowed", arguments: [Duration.seconds(60), .seconds(86_400)])
    func ttlBoundsAllowed(_ ttl: Duration) throws {
        let issued = try issue(Self.request(ttl: ttl))
        #expect(issued.notAfter == Self.now.truncatedToSecond + ttl)
    }

    @Test("a namespace TTL limit applies to that namespace only")
    func namespaceTTLLimit() throws {
        let policy = IssuancePolicy(namespaceMaxTTL: ["default": .seconds(1800)])
        expectDenied(evaluate(try Self.request(ttl: .seconds(3600)), policy: policy), .ttlOutOfRange)
        let prod = try SPIFFEID(parsing: "spiffe://example.org/ns/prod/sa/web")
        #expect(
            evaluate(try Self.request(names: [], identity: prod, ttl: .seconds(3600)), policy: policy)
                == .allowed(subjectAlternativeNames: []))
    }

    @Test("a leaf that would outlive its issuer is refused, not cut short")
    func ttlBeyondIssuer() throws {
        let late = pki.intermediate.notAfter - .seconds(1800)
        expectDenied(evaluate(try Self.request(), at: late), .ttlOutOfRange)
        expectCAError(.ttlOutOfRange) { try issue(Self.request(), at: late) }
        // A TTL that fits is issued and ends inside the issuer's life.
        let issued = try issue(Self.request(ttl: .seconds(1800)), at: late)
        #expect(issued.notAfter == pki.intermediate.notAfter)
        let tooLong = try Self.request(ttl: .seconds(1801))
        expectCAError(.ttlOutOfRange) { try issue(tooLong, at: late) }
    }

    @Test("denied namespaces and namespaces outside the allow list get no certificate")
    func namespaceDenyList() throws {
        let denying = IssuancePolicy(deniedNamespaces: ["default"])
        expectDenied(evaluate(try Self.request(), policy: denying), .policyDenied)
        expectCAError(.policyDenied) { try issue(Self.request(), policy: denying) }
        let allowing = IssuancePolicy(allowedNamespaces: ["prod"])
        expectDenied(evaluate(try Self.request(), policy: allowing), .policyDenied)
    }

    @Test("the trust domain's own ID is not a workload identity")
    func trustDomainIDRefused() throws {
        let request = try Self.request(names: [], identity: TestPKI.trustDomain.id)
        expectDenied(evaluate(request), .invalidSPIFFEID)
    }
}
