import Foundation
import SigilCore
import SigilCrypto
import SigilTestSupport
import Testing

/// `CertificateAuthority.authorizeRenewal`, the whole decision of a renewal by client certificate, as a table:
/// one leaf Sigil issued and its inventory row, then one change per case, without TLS or a store.
@Suite("Renewal authorization")
struct RenewalAuthorizationTests {
    static let now = TestPKI.referenceDate + .seconds(600)
    static let maxAge: Duration = .seconds(86_400)

    /// What a case changes, and what it expects.
    struct Case: Sendable, CustomTestStringConvertible {
        let name: String
        var issuerState: AuthorityState = .active
        var rootState: AuthorityState = .active
        var row: RowChange = .none
        var leaf: LeafChange = .issued
        var at: Date = RenewalAuthorizationTests.now
        let expected: Expected
        var testDescription: String { name }
    }

    enum RowChange: Sendable {
        case none, missing, otherIdentity, otherKey, otherAuthority, revoked, authenticatedLongAgo,
            authenticatedJustInTime
    }
    enum LeafChange: Sendable { case issued, forgedWithLeakedKey, otherCA, otherTrustDomain }
    enum Expected: Sendable, Equatable { case granted, refused(String) }

    static let cases: [Case] = [
        Case(name: "a leaf Sigil issued, under the active intermediate", expected: .granted),
        Case(name: "issuer retired: its leaves still renew", issuerState: .retired, expected: .granted),
        Case(name: "issuer prepared: it never issued", issuerState: .prepared, expected: .refused("unauthenticated")),
        Case(name: "issuer tainted", issuerState: .tainted, expected: .refused("unauthenticated")),
        Case(name: "issuer revoked", issuerState: .revoked, expected: .refused("unauthenticated")),
        Case(name: "root tainted", rootState: .tainted, expected: .refused("unauthenticated")),
        Case(name: "root revoked (out of the bundle)", rootState: .revoked, expected: .refused("unauthenticated")),
        Case(name: "not in the inventory", row: .missing, expected: .refused("unauthenticated")),
        Case(
            name: "a forged leaf signed with a leaked key", leaf: .forgedWithLeakedKey,
            expected: .refused("unauthenticated")),
        Case(name: "inventory names another identity", row: .otherIdentity, expected: .refused("unauthenticated")),
        Case(name: "inventory names another key", row: .otherKey, expected: .refused("unauthenticated")),
        Case(name: "inventory names another issuer", row: .otherAuthority, expected: .refused("unauthenticated")),
        Case(name: "revoked certificate", row: .revoked, expected: .refused("unauthenticated")),
        Case(
            name: "identity proven over renewal_max_age ago", row: .authenticatedLongAgo,
            expected: .refused("reauthentication_required")),
        Case(name: "identity proven just inside renewal_max_age", row: .authenticatedJustInTime, expected: .granted),
        Case(name: "expired leaf", at: TestPKI.referenceDate + .seconds(7200), expected: .refused("unauthenticated")),
        Case(name: "a leaf of another CA", leaf: .otherCA, expected: .refused("unauthenticated")),
        Case(name: "an SVID of another trust domain", leaf: .otherTrustDomain, expected: .refused("unauthenticated")),
    ]

    @Test("renewal is granted only for a certificate Sigil issued and still stands behind", arguments: cases)
    func decide(_ test: Case) throws {
        let pki = try TestPKI()
        let identity = try pki.workloadID()
        let issued = try pki.issueLeaf(for: identity, at: TestPKI.referenceDate)
        var leaf = issued.certificate
        switch test.leaf {
        case .issued: break
        case .forgedWithLeakedKey:
            // Same issuer key, another identity: a perfect signature, but Sigil never issued it.
            leaf = try pki.issueLeaf(
                for: try pki.workloadID(namespace: "prod", serviceAccount: "admin"), at: TestPKI.referenceDate
            ).certificate
        case .otherCA:
            leaf = try TestPKI().issueLeaf(for: identity, at: TestPKI.referenceDate).certificate
        case .otherTrustDomain:
            let other = try TestPKI(trustDomain: try TrustDomain("elsewhere.test"))
            leaf = try other.issueLeaf(for: try other.workloadID(), at: TestPKI.referenceDate).certificate
        }
        var root = pki.root
        root.state = test.rootState
        var intermediate = pki.intermediate
        intermediate.state = test.issuerState
        let authorities = AuthoritySet([root, intermediate])

        var row: InventoryRecord? = issued.issued.inventoryRecord(issuedAt: TestPKI.referenceDate)
        func replacing(
            spiffeID: SPIFFEID? = nil, key: String? = nil, authority: String? = nil, revokedAt: Date? = nil,
            authenticatedAt: Date? = nil
        ) -> InventoryRecord? {
            guard let base = row else { return nil }
            return InventoryRecord(
                serial: base.serial, spiffeID: spiffeID ?? base.spiffeID, authorityID: authority ?? base.authorityID,
                notBefore: base.notBefore,
                notAfter: base.notAfter, publicKeySHA256: key ?? base.publicKeySHA256, issuedAt: base.issuedAt,
                authenticatedAt: authenticatedAt ?? base.authenticatedAt, revokedAt: revokedAt)
        }
        switch test.row {
        case .none: break
        case .missing: row = nil
        case .otherIdentity: row = replacing(spiffeID: try pki.workloadID(serviceAccount: "db"))
        case .otherKey: row = replacing(key: String(repeating: "0", count: 64))
        case .otherAuthority: row = replacing(authority: "intermediate-0000000000000000")
        case .revoked: row = replacing(revokedAt: TestPKI.referenceDate + .seconds(60))
        case .authenticatedLongAgo: row = replacing(authenticatedAt: test.at - Self.maxAge - .seconds(1))
        case .authenticatedJustInTime: row = replacing(authenticatedAt: test.at - Self.maxAge + .seconds(1))
        }
        // The forged leaf has its own serial: the row of the real one does not match it.
        let decision = CertificateAuthority.authorizeRenewal(
            leaf: leaf, authorities: authorities, inventory: row, trustDomain: pki.trustDomain, maxAge: Self.maxAge,
            at: test.at)
        switch (decision, test.expected) {
        case (.granted(let grant), .granted):
            #expect(grant.identity == identity && grant.serial == leaf.serial)
            #expect(grant.authenticatedAt == row?.authenticatedAt, "the proof's time is carried, not renewed")
        case (.refused(let error), .refused(let code)):
            #expect(error.code.rawValue == code, "\(error)")
        default:
            Issue.record("expected \(test.expected), got \(decision)")
        }
    }

    @Test("a client certificate OpenSSL cannot read is a refusal (a 401 with its denial), never an error")
    func unreadableCertificate() async throws {
        let ca = CertificateAuthority(
            store: InMemoryStore(), configuration: AuthorityConfiguration(trustDomain: TestPKI.trustDomain),
            policy: IssuancePolicy(),
            clock: ManualClock(now: Self.now))
        try await ca.bootstrap()
        for chain in [[[0x30, 0x03, 0x02, 0x01]], [], [Array(repeating: 0xff, count: 64)]] as [[[UInt8]]] {
            guard case .refused(let error) = try await ca.renewalIdentity(peerChain: chain) else {
                Issue.record("\(chain) must be refused")
                continue
            }
            #expect(error.code == .unauthenticated)
        }
    }
}
