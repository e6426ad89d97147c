import SigilCore
import SigilCrypto
import SigilTestSupport
import Testing

@Suite("IssuancePolicy")
struct IssuancePolicyTests {
    static func id(_ namespace: String, _ serviceAccount: String = "web") throws -> SPIFFEID {
        try SPIFFEID(parsing: "spiffe://example.org/ns/\(namespace)/sa/\(serviceAccount)")
    }

    @Test("defaults are those documented: 1 h default, 24 h max, 1 min min, 30 s backdate, every generatable key")
    func defaults() throws {
        let policy = IssuancePolicy()
        #expect(policy.defaultTTL == .seconds(3600))
        #expect(policy.maxTTL == .seconds(86_400))
        #expect(policy.minTTL == .seconds(60))
        #expect(policy.backdate == .seconds(30))
        #expect(policy.allowedKeys == Set(KeyAlgorithm.generatable))
        #expect(policy.dnsTemplates.isEmpty)
        #expect(policy.allowedNamespaces.isEmpty && policy.deniedNamespaces.isEmpty && policy.namespaceMaxTTL.isEmpty)
        try policy.validate()
    }

    @Test(
        "validate refuses inconsistent TTLs, backdate and key lists",
        arguments: [
            IssuancePolicy(minTTL: .zero), IssuancePolicy(defaultTTL: .seconds(30)),
            IssuancePolicy(maxTTL: .seconds(1800)),
            IssuancePolicy(backdate: .seconds(-1)), IssuancePolicy(backdate: .seconds(60)),
            IssuancePolicy(allowedKeys: []),
        ])
    func validateRefuses(_ policy: IssuancePolicy) {
        expectCAError(.configurationInvalid) { try policy.validate() }
    }

    @Test("a namespace limit tightens the maximum TTL but never loosens it")
    func namespaceMaxTTL() throws {
        let policy = IssuancePolicy(namespaceMaxTTL: ["batch": .seconds(600), "loose": .seconds(7 * 86_400)])
        #expect(policy.maxTTL(for: try Self.id("batch")) == .seconds(600))
        #expect(policy.maxTTL(for: try Self.id("loose")) == .seconds(86_400))
        #expect(policy.maxTTL(for: try Self.id("default")) == .seconds(86_400))
        #expect(policy.maxTTL(for: try SPIFFEID(parsing: "spiffe://example.org/batch")) == .seconds(86_400))
    }

    @Test("deny and allow lists decide which namespaces may obtain certificates")
    func namespaceLists() throws {
        let denying = IssuancePolicy(deniedNamespaces: ["kube-system"])
        #expect(!denying.admits(try Self.id("kube-system")))
        #expect(denying.admits(try Self.id("default")))
        #expect(denying.admits(try SPIFFEID(parsing: "spiffe://example.org/not/a/template")))

        let allowing = IssuancePolicy(allowedNamespaces: ["prod", "kube-system"], deniedNamespaces: ["kube-system"])
        #expect(allowing.admits(try Self.id("prod")))
        #expect(!allowing.admits(try Self.id("dev")))
        #expect(!allowing.admits(try Self.id("kube-system")), "the deny list wins")
        #expect(!allowing.admits(try SPIFFEID(parsing: "spiffe://example.org/not/a/template")))
    }

    @Test("DNS templates expand {namespace} and {service_account} in lowercase")
    func dnsTemplates() throws {
        let policy = IssuancePolicy(dnsTemplates: [
            "{service_account}.{namespace}.svc", "*.{namespace}.svc.cluster.local",
        ])
        #expect(
            policy.allowedDNSNames(for: try Self.id("Prod", "Web")) == ["web.prod.svc", "*.prod.svc.cluster.local"])
        #expect(policy.allowedDNSNames(for: try SPIFFEID(parsing: "spiffe://example.org/other")).isEmpty)
        #expect(IssuancePolicy().allowedDNSNames(for: try Self.id("prod")).isEmpty)
    }
}

@Suite("AuthorityConfiguration")
struct AuthorityConfigurationTests {
    static let domain = try! TrustDomain("example.org")

    @Test("defaults: EC P-256, 365 d root, 48 h intermediate, 30 s backdate; valid with the default leaf policy")
    func defaults() throws {
        let configuration = AuthorityConfiguration(trustDomain: Self.domain)
        #expect(configuration.keyAlgorithm == .p256)
        #expect(configuration.rootLifetime == .seconds(365 * 86_400))
        #expect(configuration.intermediateLifetime == .seconds(48 * 3600))
        #expect(configuration.backdate == .seconds(30))
        try configuration.validate(leafPolicy: IssuancePolicy())
    }

    @Test("validate refuses lifetimes that do not nest and ungeneratable key types")
    func validateRefuses() {
        let cases = [
            AuthorityConfiguration(trustDomain: Self.domain, intermediateLifetime: .seconds(200 * 86_400)),
            AuthorityConfiguration(trustDomain: Self.domain, intermediateLifetime: .seconds(5 * 3600)),
            AuthorityConfiguration(trustDomain: Self.domain, keyAlgorithm: .rsa(bits: 1024)),
        ]
        for configuration in cases {
            expectCAError(.configurationInvalid) { try configuration.validate(leafPolicy: IssuancePolicy()) }
        }
        // Exactly 6 default leaves fit in the intermediate.
        let tight = AuthorityConfiguration(trustDomain: Self.domain, intermediateLifetime: .seconds(6 * 3600))
        #expect(throws: Never.self) { try tight.validate(leafPolicy: IssuancePolicy()) }
    }
}
