import Foundation
import SigilCore
import SigilCrypto
import SigilStore
import SigilTestSupport
import Testing

@Suite("Break-glass rotation and revocation")
struct BreakGlassTests {
    static let web = try! SPIFFEID(parsing: "spiffe://example.org/ns/default/sa/web")
    static let db = try! SPIFFEID(parsing: "spiffe://example.org/ns/default/sa/db")
    static let operatorID = "admin:0"

    let clock = ManualClock(now: TestPKI.referenceDate)
    let store = InMemoryStore()
    let ca: CertificateAuthority

    init() async throws {
        ca = CertificateAuthority(
            store: store, configuration: AuthorityConfiguration(trustDomain: TestPKI.trustDomain),
            policy: IssuancePolicy(),
            clock: clock)
        try await ca.bootstrap()
    }

    @discardableResult
    func issue(_ identity: SPIFFEID = web) async throws -> IssuedCertificate {
        let csr = try TestPKI.makeCSR(names: [.uri(identity.description)]).csr
        return try await ca.issue(
            IssuanceRequest(csr: csr, identity: identity), requester: Requester(actor: "operator:cli"))
    }

    func authorities() async throws -> AuthoritySet { try await ca.snapshot().authorities }

    func verifies(_ issued: IssuedCertificate) async throws -> Bool {
        let roots = try await authorities().bundleRoots(at: clock.now).map(\.certificate)
        return try ChainVerifier.verify(issued.certificate, intermediates: issued.chain, roots: roots, at: clock.now)
            == .valid
    }

    @Test("a dry run reports the blast radius and changes nothing")
    func dryRun() async throws {
        try await issue(Self.web)
        try await issue(Self.web)
        try await issue(Self.db)
        let before = try await store.authorities()
        let current = try #require(try await authorities().active(.intermediate))

        let outcome = try await ca.rotateNow(
            .intermediate, taintOld: true, dryRun: true, reason: "drill", actor: Self.operatorID)
        #expect(outcome.dryRun)
        #expect(outcome.replaced == [current.id])
        #expect(outcome.activated.isEmpty && outcome.tainted.isEmpty)
        #expect(outcome.blastRadius.authorityIDs == [current.id])
        #expect(outcome.blastRadius.liveCertificates == 3)
        #expect(outcome.blastRadius.identities == [Self.db.description, Self.web.description])
        #expect(try await store.authorities() == before)
        let event = try #require(await store.auditLog.last?.event)
        #expect(
            event.action == .adminRotate && event.actor == Self.operatorID && event.reason?.contains("drill") == true)
    }

    @Test(
        "rotating the intermediate activates a new one now and retires or taints the old one", arguments: [false, true])
    func rotateIntermediate(_ taintOld: Bool) async throws {
        let oldLeaf = try await issue()
        let old = try #require(try await authorities().active(.intermediate))
        try await ca.perform(.prepareNext, for: .intermediate)
        let stale = try #require(try await authorities().prepared(.intermediate))

        let outcome = try await ca.rotateNow(
            .intermediate, taintOld: taintOld, dryRun: false, reason: "key leak", actor: Self.operatorID)
        let actions = await store.auditLog.suffix(3).map(\.event.action)
        #expect(actions == [.adminRotate, .activate, taintOld ? .taint : .retire])
        let set = try await authorities()
        let new = try #require(set.active(.intermediate))
        #expect(outcome.activated == [new.id])
        #expect(outcome.replaced == [old.id])
        #expect(outcome.tainted == (taintOld ? [old.id] : []))
        #expect(outcome.blastRadius.liveCertificates == 1)
        #expect(new.id != stale.id)
        #expect(set.record(id: old.id)?.state == (taintOld ? .tainted : .retired))
        #expect(set.record(id: stale.id)?.state == .retired, "a stale prepared successor must not activate later")
        #expect(new.parentID == set.active(.root)?.id)

        let newLeaf = try await issue()
        #expect(newLeaf.authorityID == new.id)
        #expect(try await verifies(newLeaf))
        #expect(try await verifies(oldLeaf), "the root did not change, so old leaves still chain")
    }

    @Test(
        "rotating the root brings a new intermediate under it and retires or taints both old authorities",
        arguments: [false, true])
    func rotateRoot(_ taintOld: Bool) async throws {
        let oldLeaf = try await issue()
        let oldRoot = try #require(try await authorities().active(.root))
        let oldIntermediate = try #require(try await authorities().active(.intermediate))
        let sequence = try await ca.snapshot().bundleSequence(at: clock.now)

        let outcome = try await ca.rotateNow(
            .root, taintOld: taintOld, dryRun: false, reason: "root compromise", actor: Self.operatorID)
        let set = try await authorities()
        let newRoot = try #require(set.active(.root))
        let newIntermediate = try #require(set.active(.intermediate))
        #expect(outcome.activated == [newRoot.id, newIntermediate.id])
        #expect(Set(outcome.replaced) == [oldRoot.id, oldIntermediate.id])
        #expect(newIntermediate.parentID == newRoot.id)
        #expect(newIntermediate.certificate.isSigned(by: newRoot.certificate))
        let oldState: AuthorityState = taintOld ? .tainted : .retired
        #expect(set.record(id: oldRoot.id)?.state == oldState)
        #expect(set.record(id: oldIntermediate.id)?.state == oldState)
        #expect(Set(set.bundleRoots(at: clock.now).map(\.id)) == [oldRoot.id, newRoot.id])
        #expect(try await ca.snapshot().bundleSequence(at: clock.now) == sequence + 1, "the new root entered the bundle")

        let newLeaf = try await issue()
        #expect(
            try ChainVerifier.verify(
                newLeaf.certificate, intermediates: newLeaf.chain, roots: [newRoot.certificate], at: clock.now)
                == .valid)
        #expect(try await verifies(oldLeaf), "the old root stays in the bundle until it is revoked")
    }

    @Test("an upstream root cannot be rotated by Sigil")
    func upstreamRootRefused() async throws {
        let upstream = try TestPKI()
        let other = CertificateAuthority(
            store: InMemoryStore(), configuration: AuthorityConfiguration(trustDomain: TestPKI.trustDomain),
            policy: IssuancePolicy(), clock: clock)
        try await other.bootstrap(upstream: upstream.rootIdentity)
        await expectCAError(.conflict) {
            _ = try await other.rotateNow(.root, taintOld: false, dryRun: false, reason: "x", actor: Self.operatorID)
        }
        let outcome = try await other.rotateNow(
            .intermediate, taintOld: false, dryRun: false, reason: "x", actor: Self.operatorID)
        #expect(outcome.activated.count == 1)
    }

    @Test("only a tainted authority that is not active can be revoked")
    func revokeRules() async throws {
        let root = try #require(try await authorities().active(.root))
        let intermediate = try #require(try await authorities().active(.intermediate))
        await expectCAError(.conflict) { try await ca.revoke(root.id, reason: "x", actor: Self.operatorID) }
        await expectCAError(.conflict) { try await ca.revoke(intermediate.id, reason: "x", actor: Self.operatorID) }
        await expectCAError(.notFound) {
            try await ca.revoke("intermediate-ffffffffffffffff", reason: "x", actor: Self.operatorID)
        }
        #expect(
            await store.auditLog.suffix(3).allSatisfy {
                $0.event.action == .adminRevoke && $0.event.outcome == .failure
            })

        _ = try await ca.rotateNow(
            .intermediate, taintOld: false, dryRun: false, reason: "routine", actor: Self.operatorID)
        await expectCAError(.conflict) {
            try await ca.revoke(intermediate.id, reason: "retired is not tainted", actor: Self.operatorID)
        }
    }

    @Test("revoking a tainted root removes it from the bundle and moves the bundle sequence")
    func revokeTaintedRoot() async throws {
        let oldLeaf = try await issue()
        let oldRoot = try #require(try await authorities().active(.root))
        _ = try await ca.rotateNow(.root, taintOld: true, dryRun: false, reason: "compromise", actor: Self.operatorID)
        let sequence = try await ca.snapshot().bundleSequence(at: clock.now)

        let revoked = try await ca.revoke(oldRoot.id, reason: "compromise confirmed", actor: Self.operatorID)
        #expect(revoked.state == .revoked)
        #expect(try await ca.snapshot().bundleSequence(at: clock.now) == sequence + 1)
        #expect(
            try await authorities().bundleRoots(at: clock.now).map(\.id) == [
                try #require(try await authorities().active(.root)).id
            ])
        #expect(try await verifies(oldLeaf) == false)
        await expectCAError(.conflict) { try await ca.revoke(oldRoot.id, reason: "again", actor: Self.operatorID) }
    }

    @Test("the blast radius of a root counts the certificates of every intermediate under it")
    func rootBlastRadius() async throws {
        let root = try #require(try await authorities().active(.root))
        try await issue(Self.web)
        _ = try await ca.rotateNow(
            .intermediate, taintOld: false, dryRun: false, reason: "routine", actor: Self.operatorID)
        try await issue(Self.db)
        let radius = try await ca.blastRadius(of: [root.id])
        #expect(radius.liveCertificates == 2)
        #expect(radius.identities == [Self.db.description, Self.web.description])
        clock.advance(by: .seconds(3600))
        #expect(try await ca.blastRadius(of: [root.id]).liveCertificates == 0, "expired certificates are not at risk")
    }

    @Test("every break-glass verb is audited with its reason, refusals as failures")
    func verbsAreAudited() async throws {
        _ = try await ca.rotateNow(
            .intermediate, taintOld: true, dryRun: false, reason: "exposure drill", actor: "admin:uid=0")
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

    @Test("issuance fails closed with audit_unavailable while the commit fails, and recovers after")
    func failsClosed() async throws {
        await store.failWrites(with: StorageError(.unavailable, reason: "disk full"))
        await expectCAError(.auditUnavailable) { try await issue() }
        #expect(try await store.liveCounts(at: clock.now).isEmpty)
        await store.failWrites(with: nil)
        #expect(try await issue().authorityID.hasPrefix("intermediate-"))
    }
}
