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
        "rotating the intermediate activates a new one now and retires or taints the old one and its prepared successor",
        arguments: [false, true])
    func rotateIntermediate(_ taintOld: Bool) async throws {
        let oldLeaf = try await issue()
        let old = try #require(try await authorities().active(.intermediate))
        try await ca.perform(.prepareNext, for: .intermediate)
        let stale = try #require(try await authorities().prepared(.intermediate))

        let outcome = try await ca.rotateNow(
            .intermediate, taintOld: taintOld, dryRun: false, reason: "key leak", actor: Self.operatorID)
        let records = await store.auditLog.suffix(6).map(\.event)
        let replacedState: AuditAction = taintOld ? .taint : .retire
        #expect(records.map(\.action) == [.adminRotate, .activate, replacedState, replacedState, .eraseKey, .eraseKey])
        #expect(records.suffix(2).map(\.authorityID) == [old.id, stale.id], "both keys are erased, in the same commit")
        let set = try await authorities()
        let new = try #require(set.active(.intermediate))
        #expect(outcome.activated == [new.id])
        #expect(outcome.replaced == [old.id, stale.id])
        #expect(outcome.tainted == (taintOld ? [old.id, stale.id] : []))
        #expect(outcome.blastRadius.liveCertificates == 1)
        #expect(new.id != stale.id)
        #expect(set.record(id: old.id)?.state == (taintOld ? .tainted : .retired))
        // A stale prepared successor must not activate later; made while the compromise was in effect, it is
        // tainted with --taint-old.
        #expect(set.record(id: stale.id)?.state == (taintOld ? .tainted : .retired))
        #expect(set.record(id: old.id)?.hasKey == false && set.record(id: stale.id)?.hasKey == false)
        await #expect(throws: StorageError.self) { try await store.authorityKey(id: old.id) }
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
        #expect(
            try await ca.snapshot().bundleSequence(at: clock.now) == sequence + 1, "the new root entered the bundle")

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
        var verifier = AuditChainVerifier(key: await store.auditChainKey())
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

    // MARK: Taint, leaf revocation, keys and CRLs

    /// Rotates the intermediate (routine, no taint) and returns the now retired one.
    func retireIntermediate() async throws -> AuthorityRecord {
        let old = try #require(try await authorities().active(.intermediate))
        _ = try await ca.rotateNow(
            .intermediate, taintOld: false, dryRun: false, reason: "routine", actor: Self.operatorID)
        return try #require(try await authorities().record(id: old.id))
    }

    @Test("a retired intermediate can be tainted (dry run first) and then revoked into its root's CRL")
    func taintRetiredIntermediate() async throws {
        try await issue(Self.web)
        let retired = try await retireIntermediate()
        #expect(retired.state == .retired && !retired.hasKey, "retiring erased the key")
        let root = try #require(try await authorities().active(.root))

        let dry = try await ca.taint(retired.id, reason: "backup leaked", dryRun: true, actor: Self.operatorID)
        #expect(dry.dryRun && dry.previousState == "retired" && dry.blastRadius.liveCertificates == 1)
        #expect(try await authorities().record(id: retired.id)?.state == .retired)

        let outcome = try await ca.taint(retired.id, reason: "backup leaked", dryRun: false, actor: Self.operatorID)
        #expect(!outcome.dryRun && outcome.blastRadius.identities == [Self.web.description])
        #expect(try await authorities().record(id: retired.id)?.state == .tainted)
        let taintRecord = try #require(await store.auditLog.last?.event)
        #expect(
            taintRecord.action == .adminTaint && taintRecord.actor == Self.operatorID
                && taintRecord.reason == "backup leaked")

        _ = try await ca.revoke(retired.id, reason: "confirmed", actor: Self.operatorID)
        let crl = try #require(try await ca.snapshot().crls[root.id])
        #expect(crl.isSigned(by: root.certificate))
        #expect(crl.entries.map(\.serial) == [retired.certificate.serial])
        var verifier = AuditChainVerifier(key: await store.auditChainKey())
        for record in await store.auditLog { #expect(verifier.check(record) == nil) }
    }

    @Test("tainting a prepared intermediate erases its key, with a final CRL, and it never activates")
    func taintPrepared() async throws {
        try await ca.perform(.prepareNext, for: .intermediate)
        let prepared = try #require(try await authorities().prepared(.intermediate))
        #expect(prepared.hasKey)
        _ = try await ca.taint(prepared.id, reason: "made on a compromised host", dryRun: false, actor: Self.operatorID)
        let tainted = try #require(try await authorities().record(id: prepared.id))
        #expect(tainted.state == .tainted && !tainted.hasKey && tainted.finalCRL != nil)
        #expect(await store.auditLog.suffix(2).map(\.event.action) == [.adminTaint, .eraseKey])
        #expect(try await authorities().prepared(.intermediate) == nil)
        await #expect(throws: StorageError.self) { try await store.authorityKey(id: prepared.id) }
    }

    @Test(
        "taint refuses the active authority (rotate first), repeats, unknown ids and a root still signing the active intermediate"
    )
    func taintRefusals() async throws {
        let active = try #require(try await authorities().active(.intermediate))
        let error = await expectCAError(.conflict) {
            _ = try await ca.taint(active.id, reason: "x", dryRun: false, actor: Self.operatorID)
        }
        #expect(error?.reason.contains("sigil admin rotate intermediate --taint-old") == true)
        await expectCAError(.notFound) {
            _ = try await ca.taint("intermediate-ffffffffffffffff", reason: "x", dryRun: false, actor: Self.operatorID)
        }
        let retired = try await retireIntermediate()
        _ = try await ca.taint(retired.id, reason: "x", dryRun: false, actor: Self.operatorID)
        await expectCAError(.conflict) {
            _ = try await ca.taint(retired.id, reason: "again", dryRun: false, actor: Self.operatorID)
        }

        // Right after a root rotation by the planner, the active intermediate is still under the old root.
        let oldRoot = try #require(try await authorities().active(.root))
        try await ca.perform(.prepareNext, for: .root)
        try await ca.perform(.activateNext, for: .root)
        #expect(try await authorities().active(.intermediate)?.parentID == oldRoot.id)
        let refusal = await expectCAError(.conflict) {
            _ = try await ca.taint(oldRoot.id, reason: "x", dryRun: false, actor: Self.operatorID)
        }
        #expect(refusal?.reason.contains("rotate the intermediate first") == true)
        #expect(
            await store.auditLog.filter { $0.event.action == .adminTaint && $0.event.outcome == .failure }.count == 4)
    }

    @Test("a revoked leaf is refused for renewal and listed in its intermediate's CRL until it expires")
    func revokeLeaf() async throws {
        let leaf = try await issue(Self.web)
        let outcome = try await ca.revokeCertificate(leaf.serial, reason: "stolen", actor: Self.operatorID)
        #expect(outcome.inCRL && !outcome.expired && outcome.spiffeID == Self.web.description)
        let record = try #require(await store.auditLog.last?.event)
        #expect(
            record.action == .adminRevoke && record.serial == leaf.serial.hex && record.subject == Self.web.description)
        let snapshot = try await ca.snapshot()
        let set = snapshot.authorities
        let issuer = try #require(set.record(id: leaf.authorityID))
        let root = try #require(set.active(.root))
        let crl = try #require(snapshot.crls[leaf.authorityID])
        let rootCRL = try #require(snapshot.crls[root.id])
        #expect(crl.entries.map(\.serial) == [leaf.serial] && crl.isSigned(by: issuer.certificate))
        let checked = try ChainVerifier.verify(
            leaf.certificate, intermediates: leaf.chain, roots: set.bundleRoots(at: clock.now).map(\.certificate),
            crls: [crl, rootCRL],
            at: clock.now)
        #expect(checked != .valid, "openssl's CRL check refuses it")
        let row = try await store.certificate(serial: leaf.serial)
        let decision = CertificateAuthority.authorizeRenewal(
            leaf: leaf.certificate, authorities: set, inventory: row, trustDomain: TestPKI.trustDomain,
            maxAge: .seconds(86_400), at: clock.now)
        guard case .refused(let error) = decision else {
            Issue.record("a revoked certificate must not renew")
            return
        }
        #expect(error.code == .unauthenticated)
        await expectCAError(.conflict) {
            _ = try await ca.revokeCertificate(leaf.serial, reason: "again", actor: Self.operatorID)
        }
        await expectCAError(.notFound) {
            _ = try await ca.revokeCertificate(try SerialNumber.random(), reason: "x", actor: Self.operatorID)
        }
        clock.advance(by: .seconds(3700))
        try await ca.reload()
        #expect(
            try await ca.snapshot().crls[leaf.authorityID]?.entries.isEmpty == true, "an expired leaf leaves the CRL")
    }

    @Test(
        "a leaf revoked after its intermediate lost its key is recorded but cannot enter a CRL; the final CRL keeps earlier ones"
    )
    func revokeLeafOfRetiredIntermediate() async throws {
        let early = try await issue(Self.web)
        let late = try await issue(Self.db)
        _ = try await ca.revokeCertificate(early.serial, reason: "stolen", actor: Self.operatorID)
        let retired = try await retireIntermediate()
        let outcome = try await ca.revokeCertificate(late.serial, reason: "stolen later", actor: Self.operatorID)
        #expect(!outcome.inCRL)
        let final = try #require(try await ca.snapshot().crls[retired.id])
        #expect(final.entries.map(\.serial) == [early.serial] && final.nextUpdate == retired.notAfter)
    }

    @Test("keys an older version kept for authorities that no longer sign are erased at start-up, each audited")
    func eraseStaleKeys() async throws {
        let active = try #require(try await authorities().active(.intermediate))
        let root = try #require(try await authorities().active(.root))
        let rootKey = try await store.authorityKey(id: root.id)
        let stale = try AuthorityFactory.makeIntermediate(
            AuthorityConfiguration(trustDomain: TestPKI.trustDomain), parent: root, parentKey: rootKey, state: .retired,
            at: clock.now)
        try await store.insertAuthority(stale.record, key: stale.key)
        #expect(try await ca.eraseKeysOfNonSigningAuthorities() == [stale.record.id])
        #expect(try await authorities().record(id: stale.record.id)?.hasKey == false)
        #expect(try await authorities().record(id: active.id)?.hasKey == true)
        #expect(await store.auditLog.last?.event.action == .eraseKey)
        #expect(try await ca.eraseKeysOfNonSigningAuthorities().isEmpty, "nothing left to erase")
    }

    @Test("CRLs are signed when their list changes, not on every reload")
    func crlsAreCached() async throws {
        let root = try #require(try await authorities().active(.root))
        let first = try #require(try await ca.snapshot().crls[root.id])
        try await ca.reload()
        #expect(try await ca.snapshot().crls[root.id] === first)
        clock.advance(by: .seconds(13 * 3600))
        try await ca.reload()
        let resigned = try #require(try await ca.snapshot().crls[root.id])
        #expect(resigned !== first && resigned.thisUpdate > first.thisUpdate, "signed again past half of its validity")
    }
}
