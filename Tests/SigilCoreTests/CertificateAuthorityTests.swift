import Foundation
import SigilCore
import SigilCrypto
import SigilStore
import SigilTestSupport
import Testing

@Suite("CertificateAuthority")
struct CertificateAuthorityTests {
    static let identity = try! SPIFFEID(parsing: "spiffe://example.org/ns/default/sa/web")

    let clock = ManualClock(now: TestPKI.referenceDate)
    let store = InMemoryStore()
    let ca: CertificateAuthority

    init() {
        ca = CertificateAuthority(
            store: store, configuration: AuthorityConfiguration(trustDomain: TestPKI.trustDomain),
            policy: IssuancePolicy(),
            clock: clock)
    }

    static func request(identity: SPIFFEID = identity) throws -> IssuanceRequest {
        IssuanceRequest(csr: try TestPKI.makeCSR(names: [.uri(identity.description)]).csr, identity: identity)
    }

    func authorities() async throws -> AuthoritySet { try await ca.snapshot().authorities }

    /// The point at which the planner prepares a successor for `record` (½ of its lifetime remaining).
    static func prepareAt(_ record: AuthorityRecord) -> Date {
        record.notAfter.addingTimeInterval(-record.notAfter.timeIntervalSince(record.notBefore) / 2)
    }

    /// The point at which the planner activates the successor of `record` (⅙ of its lifetime remaining).
    static func activateAt(_ record: AuthorityRecord) -> Date {
        record.notAfter.addingTimeInterval(-record.notAfter.timeIntervalSince(record.notBefore) / 6)
    }

    /// Signs a leaf now and verifies it up to the roots of the current bundle.
    func signAndVerify() async throws -> IssuedCertificate {
        let issued = try await ca.sign(Self.request())
        let roots = try await authorities().bundleRoots(at: clock.now).map(\.certificate)
        let result = try ChainVerifier.verify(
            issued.certificate, intermediates: issued.chain, roots: roots, at: clock.now)
        #expect(result == .valid)
        return issued
    }

    // MARK: Bootstrap and issuance

    @Test("bootstrap creates an active root and an active intermediate under it, once")
    func bootstrap() async throws {
        #expect(try await ca.bootstrap())
        let set = try await authorities()
        let root = try #require(set.active(.root))
        let intermediate = try #require(set.active(.intermediate))
        #expect(set.records.count == 2)
        #expect(intermediate.parentID == root.id)
        #expect(root.createdAt == TestPKI.referenceDate)
        #expect(intermediate.certificate.isSigned(by: root.certificate))
        #expect(try await ca.signingAuthority().record == intermediate)
        #expect(try await ca.signingAuthority().chain == [intermediate.certificate])
        #expect(try await ca.snapshot().bundleSequence(at: clock.now) == 1)

        #expect(try await ca.bootstrap() == false)
        #expect(try await store.authorities().count == 2)
        let events = await store.auditLog.map(\.event)
        #expect(events.map(\.action) == [.initialize, .initialize])
        #expect(events.map(\.authorityID) == [root.id, intermediate.id])
    }

    @Test("sign issues a leaf that verifies against the bundle, without recording it")
    func signDoesNotRecord() async throws {
        try await ca.bootstrap()
        clock.advance(by: .seconds(600))
        let issued = try await signAndVerify()
        #expect(issued.notBefore == clock.now - .seconds(30))
        #expect(issued.authorityID == (try await ca.signingAuthority().record.id))
        #expect(await store.recordedCertificates.isEmpty)
    }

    @Test("issue commits the inventory row and an issue audit record")
    func issueRecords() async throws {
        try await ca.bootstrap()
        let requester = Requester(actor: Self.identity.description, requestID: "req-1", clientAddress: "192.0.2.1")
        let issued = try await ca.issue(Self.request(), requester: requester)
        let live = try await store.liveCertificates(spiffeID: Self.identity, at: clock.now)
        #expect(live == [issued.inventoryRecord(issuedAt: clock.now)])

        let event = try #require(await store.auditLog.last?.event)
        #expect(event.action == .issue)
        #expect(event.outcome == .success)
        #expect(event.actor == Self.identity.description)
        #expect(event.subject == Self.identity.description)
        #expect(event.serial == issued.serial.hex)
        #expect(event.authorityID == issued.authorityID)
        #expect(event.publicKeySHA256 == issued.publicKey.sha256Fingerprint)
        #expect(event.requestID == "req-1")
    }

    @Test("a refused issuance is audited as a denial with its code")
    func denialIsAudited() async throws {
        try await ca.bootstrap()
        let request = try Self.request(identity: try SPIFFEID(parsing: "spiffe://example.org/ns/default/sa/db"))
        let mismatched = IssuanceRequest(csr: request.csr, identity: Self.identity)
        await expectCAError(.identityMismatch) {
            try await ca.issue(mismatched, requester: Requester(actor: "operator:cli"))
        }
        let event = try #require(await store.auditLog.last?.event)
        #expect(event.action == .deny)
        #expect(event.outcome == .failure)
        #expect(event.code == "identity_mismatch")
        #expect(await store.recordedCertificates.isEmpty)
    }

    @Test("when the audit record cannot be written, no certificate leaves")
    func auditFailureWithholdsCertificate() async throws {
        try await ca.bootstrap()
        await store.failWrites(with: StorageError(.unavailable, reason: "disk full"))
        await expectCAError(.auditUnavailable) {
            try await ca.issue(Self.request(), requester: Requester(actor: "operator:cli"))
        }
        await store.failWrites(with: nil)
        #expect(await store.recordedCertificates.isEmpty)
    }

    @Test("without an active intermediate nothing is signed")
    func noActiveAuthority() async throws {
        await expectCAError(.noActiveAuthority) { try await ca.sign(Self.request()) }
    }

    @Test("a policy denial surfaces with its code")
    func policyDenial() async throws {
        try await ca.bootstrap()
        let request = IssuanceRequest(
            csr: try TestPKI.makeCSR(names: [.uri("spiffe://example.org/ns/default/sa/admin")]).csr,
            identity: Self.identity)
        await expectCAError(.identityMismatch) { try await ca.sign(request) }
    }

    @Test("an identity outside the CA's trust domain is refused")
    func foreignTrustDomain() async throws {
        try await ca.bootstrap()
        let foreign = try SPIFFEID(parsing: "spiffe://other.org/ns/default/sa/web")
        await #expect(throws: CAError(.identityMismatch, reason: "")) {
            try await ca.sign(Self.request(identity: foreign))
        }
    }

    // MARK: Rotation steps

    @Test("a fresh CA plans nothing until the intermediate's and the root's prepare points")
    func freshPlan() async throws {
        try await ca.bootstrap()
        let set = try await authorities()
        let intermediate = try #require(set.active(.intermediate))
        let root = try #require(set.active(.root))
        #expect(try await ca.plan(.intermediate) == .none(nextCheck: Self.prepareAt(intermediate)))
        #expect(try await ca.plan(.root) == .none(nextCheck: Self.prepareAt(root)))
    }

    @Test("prepareNext adds a prepared intermediate and keeps signing with the active one")
    func prepareIntermediate() async throws {
        try await ca.bootstrap()
        let before = try await ca.signingAuthority().record
        let changed = try await ca.perform(.prepareNext, for: .intermediate)
        let set = try await authorities()
        let prepared = try #require(set.prepared(.intermediate))
        #expect(changed == [prepared.id])
        #expect(prepared.parentID == set.active(.root)?.id)
        #expect(set.active(.intermediate) == before)
        #expect(try await ca.signingAuthority().record == before)
        #expect(try await ca.snapshot().bundleSequence(at: clock.now) == 1, "intermediates are not in the bundle")
    }

    @Test("activateNext activates the prepared intermediate, retires the old one and erases its key")
    func activateIntermediate() async throws {
        try await ca.bootstrap()
        let old = try await ca.signingAuthority().record
        try await ca.perform(.prepareNext, for: .intermediate)
        let next = try #require(try await authorities().prepared(.intermediate))

        let changed = try await ca.perform(.activateNext, for: .intermediate)
        #expect(Set(changed) == [old.id, next.id])
        let events = await store.auditLog.suffix(4).map(\.event)
        #expect(events.map(\.action) == [.prepare, .activate, .retire, .eraseKey])
        #expect(events.map(\.authorityID) == [next.id, next.id, old.id, old.id])
        let set = try await authorities()
        #expect(set.active(.intermediate)?.id == next.id)
        #expect(set.record(id: old.id)?.state == .retired)
        #expect(set.record(id: old.id)?.hasKey == false, "a retired authority can never sign again")
        let final = try CertificateRevocationList(der: try #require(set.record(id: old.id)?.finalCRL))
        #expect(final.isSigned(by: old.certificate) && final.nextUpdate == old.notAfter && final.entries.isEmpty)
        #expect(set.record(id: old.id)?.updatedAt == clock.now)
        #expect(try await ca.signingAuthority().record.id == next.id)
        #expect(try await signAndVerify().authorityID == next.id)
    }

    @Test("activateNext with nothing prepared changes nothing")
    func activateWithoutPrepared() async throws {
        try await ca.bootstrap()
        let before = try await store.authorities()
        #expect(try await ca.perform(.activateNext, for: .intermediate) == [])
        #expect(try await store.authorities() == before)
    }

    @Test("none changes nothing")
    func performNone() async throws {
        try await ca.bootstrap()
        #expect(try await ca.perform(.none(nextCheck: clock.now), for: .intermediate) == [])
        #expect(try await store.authorities().count == 2)
    }

    @Test("renew replaces the active intermediate at once and retires a stale prepared one")
    func renewIntermediate() async throws {
        try await ca.bootstrap()
        let old = try await ca.signingAuthority().record
        try await ca.perform(.prepareNext, for: .intermediate)
        let stale = try #require(try await authorities().prepared(.intermediate))
        clock.advance(by: .seconds(60))

        let changed = try await ca.perform(.renew(reason: "test"), for: .intermediate)
        let set = try await authorities()
        let renewed = try #require(set.active(.intermediate))
        #expect(Set(changed) == [renewed.id, old.id, stale.id])
        #expect(renewed.id != old.id && renewed.id != stale.id)
        #expect(set.record(id: old.id)?.state == .retired)
        #expect(set.record(id: stale.id)?.state == .retired)
        #expect(set.prepared(.intermediate) == nil)
        #expect(try await signAndVerify().authorityID == renewed.id)
    }

    @Test("a prepared root enters the bundle before it signs; activating it makes the intermediate renew")
    func rootRotation() async throws {
        try await ca.bootstrap()
        let oldRoot = try #require(try await authorities().active(.root))
        let oldLeaf = try await signAndVerify()

        try await ca.perform(.prepareNext, for: .root)
        var set = try await authorities()
        let newRoot = try #require(set.prepared(.root))
        #expect(Set(set.bundleRoots(at: clock.now).map(\.id)) == [oldRoot.id, newRoot.id])
        #expect(try await ca.snapshot().bundleSequence(at: clock.now) == 2)

        try await ca.perform(.activateNext, for: .root)
        set = try await authorities()
        #expect(set.active(.root)?.id == newRoot.id)
        #expect(set.record(id: oldRoot.id)?.state == .retired)
        #expect(set.bundleRoots(at: clock.now).count == 2, "the retired root stays while its chains live")

        let action = try await ca.plan(.intermediate)
        guard case .renew = action else {
            Issue.record("expected the intermediate under the retired root to renew, got \(action)")
            return
        }
        try await ca.perform(action, for: .intermediate)
        let intermediate = try await ca.signingAuthority().record
        #expect(intermediate.parentID == newRoot.id)
        let newLeaf = try await signAndVerify()
        #expect(newLeaf.certificate.isSigned(by: intermediate.certificate))
        // A leaf issued before the rotation still verifies against the bundle.
        let roots = try await authorities().bundleRoots(at: clock.now).map(\.certificate)
        #expect(
            try ChainVerifier.verify(oldLeaf.certificate, intermediates: oldLeaf.chain, roots: roots, at: clock.now)
                == .valid)
    }

    @Test("the bundle sequence increases when an expired root drops out, and not again when that root is revoked")
    func expiredRootLeavesBundle() async throws {
        try await ca.bootstrap()
        let oldRoot = try #require(try await authorities().active(.root))
        clock.set(Self.prepareAt(oldRoot))
        _ = try await ca.rotateNow(.root, taintOld: true, dryRun: false, reason: "test", actor: "test")
        let newRoot = try #require(try await authorities().active(.root))
        let before = try await ca.snapshot().bundleSequence(at: clock.now)
        #expect(Set(try await authorities().bundleRoots(at: clock.now).map(\.id)) == [oldRoot.id, newRoot.id])

        clock.set(oldRoot.notAfter - .seconds(1))
        #expect(try await ca.snapshot().bundleSequence(at: clock.now) == before)
        clock.set(oldRoot.notAfter + .seconds(1))
        #expect(try await authorities().bundleRoots(at: clock.now).map(\.id) == [newRoot.id])
        #expect(try await ca.snapshot().bundleSequence(at: clock.now) == before + 1)

        _ = try await ca.revoke(oldRoot.id, reason: "test", actor: "test")
        #expect(
            try await ca.snapshot().bundleSequence(at: clock.now) == before + 1,
            "revoking an expired root changes no bundle")
    }

    @Test("following the planner as the clock moves prepares at ½ life and activates at ⅙")
    func rotationFollowsClock() async throws {
        try await ca.bootstrap()
        let first = try await ca.signingAuthority().record

        clock.set(Self.prepareAt(first) - .seconds(1))
        #expect(try await ca.plan(.intermediate) == .none(nextCheck: Self.prepareAt(first)))
        clock.set(Self.prepareAt(first))
        #expect(try await ca.plan(.intermediate) == .prepareNext)
        try await ca.perform(.prepareNext, for: .intermediate)
        #expect(try await ca.plan(.intermediate) == .none(nextCheck: Self.activateAt(first)))

        clock.set(Self.activateAt(first))
        #expect(try await ca.plan(.intermediate) == .activateNext)
        try await ca.perform(.activateNext, for: .intermediate)
        let second = try await ca.signingAuthority().record
        #expect(second.id != first.id)
        #expect(try await ca.plan(.intermediate) == .none(nextCheck: Self.prepareAt(second)))
        _ = try await signAndVerify()
    }

    @Test("a clock that jumps past the intermediate's expiry renews it")
    func clockJumpRenews() async throws {
        try await ca.bootstrap()
        let first = try await ca.signingAuthority().record
        clock.set(first.notAfter + .seconds(3600))
        let action = try await ca.plan(.intermediate)
        guard case .renew = action else {
            Issue.record("expected renew, got \(action)")
            return
        }
        try await ca.perform(action, for: .intermediate)
        #expect(try await ca.signingAuthority().record.notAfter > clock.now)
        _ = try await signAndVerify()
    }

    @Test("a failed store write leaves the authorities as they were")
    func storeFailure() async throws {
        try await ca.bootstrap()
        let before = try await store.authorities()
        await store.failWrites(with: StorageError(.unavailable, reason: "disk full"))
        await #expect(throws: StorageError.self) { try await ca.perform(.prepareNext, for: .intermediate) }
        await #expect(throws: StorageError.self) { try await ca.perform(.renew(reason: "test"), for: .intermediate) }
        #expect(try await store.authorities() == before)
        #expect(try await ca.snapshot().authorities.records == AuthoritySet(before).records)
    }

    @Test("a second CA on the same store follows a rotation after reload")
    func replicaFollowsAfterReload() async throws {
        try await ca.bootstrap()
        let replica = CertificateAuthority(
            store: store, configuration: AuthorityConfiguration(trustDomain: TestPKI.trustDomain),
            policy: IssuancePolicy(),
            clock: clock)
        #expect(try await replica.bootstrap() == false)
        let before = try await replica.signingAuthority().record.id
        try await ca.perform(.renew(reason: "test"), for: .intermediate)
        #expect(try await replica.signingAuthority().record.id == before, "the snapshot is cached")
        try await replica.reload()
        #expect(try await replica.signingAuthority().record.id == (try await ca.signingAuthority().record.id))
        #expect(try await replica.sign(Self.request()).authorityID != before)
    }

    // MARK: Upstream CA

    @Test("an upstream CA becomes the active root and is never rotated by Sigil")
    func upstreamRoot() async throws {
        let upstream = try TestPKI()
        #expect(try await ca.bootstrap(upstream: upstream.rootIdentity))
        let set = try await authorities()
        let root = try #require(set.active(.root))
        #expect(root.isUpstream)
        #expect(root.certificate == upstream.root.certificate)
        #expect(set.active(.intermediate)?.parentID == root.id)
        #expect(try await ca.plan(.root) == .none(nextCheck: root.notAfter))
        await expectCAError(.noActiveAuthority) { try await ca.perform(.renew(reason: "test"), for: .root) }

        clock.set(root.notAfter)
        guard case .renew = try await ca.plan(.root) else {
            Issue.record("an expired upstream root must be reported")
            return
        }
    }

    @Test("an upstream certificate that is not a usable CA, or whose key does not match, is refused")
    func upstreamChecks() async throws {
        let upstream = try TestPKI()
        let leaf = try upstream.issueLeaf()
        let candidates = [
            SigningIdentity(certificate: leaf.certificate, key: leaf.key),
            SigningIdentity(certificate: upstream.root.certificate, key: upstream.intermediateKey),
            // pathLen 0 leaves no room for an intermediate below it.
            SigningIdentity(certificate: upstream.intermediate.certificate, key: upstream.intermediateKey),
        ]
        for candidate in candidates {
            await expectCAError(.configurationInvalid) { try await ca.bootstrap(upstream: candidate) }
        }
        #expect(try await store.authorities().isEmpty)
    }
}
