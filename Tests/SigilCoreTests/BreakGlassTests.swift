import Foundation
import SigilCore
import SigilCrypto
import SigilStore
import SigilTestSupport
import Testing

@Suite("Break-glass rotation and revocation")
struct BreakGlassTests {
    static let identity = try! SPIFFEID(parsing: "spiffe://example.org/ns/default/sa/web")

    let clock = ManualClock(now: TestPKI.referenceDate)
    let store = InMemoryStore()
    let ca: CertificateAuthority

    init() async throws {
        ca = CertificateAuthority(
            store: store, configuration: AuthorityConfiguration(trustDomain: TestPKI.trustDomain), policy: IssuancePolicy(), clock: clock)
        try await ca.bootstrap()
    }

    func issue() async throws -> IssuedCertificate {
        let csr = try TestPKI.makeCSR(names: [.uri(Self.identity.description)]).csr
        return try await ca.issue(IssuanceRequest(csr: csr, identity: Self.identity), requester: Requester(actor: "test"))
    }

    func authorities() async throws -> AuthoritySet { try await ca.snapshot().authorities }

    @Test("a dry run reports the live certificates under the intermediate and changes nothing")
    func dryRunChangesNothing() async throws {
        _ = try await issue()
        _ = try await issue()
        let before = try await authorities().records
        let outcome = try await ca.rotateNow(.intermediate, taintOld: true, dryRun: true, reason: "drill", actor: "admin")
        #expect(outcome.dryRun)
        #expect(outcome.blastRadius.liveCertificates == 2)
        #expect(outcome.blastRadius.identities == [Self.identity.description])
        #expect(outcome.activated.isEmpty)
        #expect(try await authorities().records == before)
    }

    @Test("rotating the intermediate with --taint-old activates a successor under the same root and taints the old one")
    func rotateIntermediateTaintsOld() async throws {
        let old = try #require(try await authorities().active(.intermediate))
        let outcome = try await ca.rotateNow(.intermediate, taintOld: true, dryRun: false, reason: "key exposure", actor: "admin")
        let set = try await authorities()
        let new = try #require(set.active(.intermediate))
        #expect(new.id != old.id)
        #expect(outcome.activated == [new.id])
        #expect(set.record(id: old.id)?.state == .tainted)
        #expect(new.parentID == old.parentID)
        // New leaves come from the new intermediate.
        #expect(try await issue().authorityID == new.id)
    }

    @Test("rotating the root brings a new intermediate signed by the new root, and keeps the old root in the bundle")
    func rotateRoot() async throws {
        let oldRoot = try #require(try await authorities().active(.root))
        _ = try await ca.rotateNow(.root, taintOld: false, dryRun: false, reason: "scheduled drill", actor: "admin")
        let set = try await authorities()
        let newRoot = try #require(set.active(.root))
        let intermediate = try #require(set.active(.intermediate))
        #expect(newRoot.id != oldRoot.id)
        #expect(intermediate.parentID == newRoot.id)
        #expect(intermediate.certificate.isSigned(by: newRoot.certificate))
        #expect(set.record(id: oldRoot.id)?.state == .retired)
        #expect(Set(set.bundleRoots(at: clock.now).map(\.id)) == [oldRoot.id, newRoot.id])
    }

    @Test("revoke refuses the active authority and an untainted one, and accepts a tainted one")
    func revokeRules() async throws {
        let first = try #require(try await authorities().active(.intermediate))
        await #expect(throws: CAError(.conflict, reason: "")) { _ = try await ca.revoke(first.id, reason: "no", actor: "admin") }
        _ = try await ca.rotateNow(.intermediate, taintOld: false, dryRun: false, reason: "routine", actor: "admin")
        // Retired, not tainted: still refused.
        await #expect(throws: CAError(.conflict, reason: "")) { _ = try await ca.revoke(first.id, reason: "no", actor: "admin") }
        let second = try #require(try await authorities().active(.intermediate))
        _ = try await ca.rotateNow(.intermediate, taintOld: true, dryRun: false, reason: "exposure", actor: "admin")
        let revoked = try await ca.revoke(second.id, reason: "confirmed", actor: "admin")
        #expect(revoked.state == .revoked)
        await #expect(throws: CAError(.notFound, reason: "")) { _ = try await ca.revoke("intermediate-none", reason: "x", actor: "admin") }
    }

    @Test("revoking a tainted root removes it from the bundle and increases the bundle sequence")
    func revokeRootLeavesBundle() async throws {
        let oldRoot = try #require(try await authorities().active(.root))
        _ = try await ca.rotateNow(.root, taintOld: true, dryRun: false, reason: "exposure", actor: "admin")
        let before = try await ca.snapshot().bundleSequence
        _ = try await ca.revoke(oldRoot.id, reason: "confirmed", actor: "admin")
        let after = try await ca.snapshot()
        #expect(after.bundleSequence > before)
        #expect(!after.authorities.bundleRoots(at: clock.now).contains { $0.id == oldRoot.id })
    }

    @Test("every break-glass verb is audited with its reason, refusals as failures")
    func verbsAreAudited() async throws {
        _ = try await ca.rotateNow(.intermediate, taintOld: true, dryRun: false, reason: "exposure drill", actor: "admin:uid=0")
        let active = try #require(try await authorities().active(.intermediate))
        _ = try? await ca.revoke(active.id, reason: "wrong one", actor: "admin:uid=0")
        let records = try await store.auditRecords(AuditQuery())
        let rotate = try #require(records.first { $0.event.action == .adminRotate })
        #expect(rotate.event.reason?.contains("exposure drill") == true)
        #expect(rotate.event.actor == "admin:uid=0")
        #expect(records.contains { $0.event.action == .taint })
        let refusal = try #require(records.first { $0.event.action == .adminRevoke })
        #expect(refusal.event.outcome == .failure)
        #expect(refusal.event.code == "conflict")
        var verifier = AuditChainVerifier()
        for record in records { #expect(verifier.check(record) == nil) }
    }

    @Test("a denial is audited with its code and no certificate reaches the inventory")
    func denialAudited() async throws {
        let other = try SPIFFEID(parsing: "spiffe://example.org/ns/default/sa/other")
        let csr = try TestPKI.makeCSR(names: [.uri(other.description)]).csr
        await #expect(throws: CAError(.identityMismatch, reason: "")) {
            _ = try await ca.issue(IssuanceRequest(csr: csr, identity: Self.identity), requester: Requester(actor: "test"))
        }
        let denial = try #require(try await store.auditRecords(AuditQuery(action: .deny)).first)
        #expect(denial.event.code == "identity_mismatch")
        #expect(try await store.liveCounts(at: clock.now).isEmpty)
    }

    @Test("issuance fails closed with audit_unavailable when the commit fails")
    func failsClosed() async throws {
        await store.failWrites(with: StorageError(.unavailable, reason: "disk full"))
        await #expect(throws: CAError(.auditUnavailable, reason: "")) { _ = try await issue() }
        await store.failWrites(with: nil)
        #expect(try await issue().authorityID.hasPrefix("intermediate-"))
    }
}
