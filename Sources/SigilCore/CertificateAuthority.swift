import Foundation
import Logging
import SigilCrypto
import Synchronization

/// The CA: its authorities (cached from the store), issuance, and the rotation steps the planner asks for.
///
/// Issuance reads an immutable snapshot under a short lock and signs outside it, so concurrent requests
/// sign in parallel; only state changes go through the store.
public final class CertificateAuthority: Sendable {
    public let configuration: AuthorityConfiguration
    public let issuer: CertificateIssuer
    public let planner: RotationPlanner
    let store: any CAStore
    let clock: any WallClock
    let logger: Logger
    private let state = Mutex<Snapshot?>(nil)
    /// Set while a rotation (scheduled or break-glass) changes authorities in this process.
    private let rotating = Mutex<Bool>(false)
    /// Authority rows that failed their integrity check and were already logged and audited by this process.
    private let reportedRejections = Mutex<Set<String>>([])

    /// The cached view of the store: all authorities and the active intermediate with its key.
    public struct Snapshot: Sendable {
        public let authorities: AuthoritySet
        public let signer: SigningAuthority?
        /// The current CRL of every authority that has one, by authority id (see `RevocationLists`).
        public let crls: [String: CertificateRevocationList]
        /// Authority rows the store holds that failed their integrity check: ignored.
        public let rejected: [RejectedAuthority]
        /// The sequence kept in the store: increases when a root is added or revoked.
        public let storedBundleSequence: Int64
        /// PEM of the bundle roots when the snapshot was taken (refreshed with every reload, at least every
        /// rotation check), so issuance does not re-encode them per request.
        public let trustBundlePEM: [String]

        /// The bundle's `spiffe_sequence` at `time`: the stored sequence plus the roots that have expired by
        /// then, so it also increases when an expired root drops out of the bundle, without a write, and
        /// every replica computes the same number. (Revoking an expired root bumps the stored sequence and
        /// lowers the count by one: the bundle did not change, nor does the number.)
        public func bundleSequence(at time: Date) -> Int64 {
            storedBundleSequence + Int64(authorities.expiredRoots(at: time).count)
        }
    }

    public init(
        store: any CAStore, configuration: AuthorityConfiguration, policy: IssuancePolicy,
        rotation: RotationPolicy = RotationPolicy(), clock: any WallClock,
        logger: Logger = Logger(label: "sigil", factory: { _ in SwiftLogNoOpLogHandler() })
    ) {
        self.store = store
        self.configuration = configuration
        self.issuer = CertificateIssuer(policy: policy)
        self.planner = RotationPlanner(policy: rotation)
        self.clock = clock
        self.logger = logger
    }

    /// Creates the first root (or imports `upstream`) and intermediate when the store has none.
    /// - Returns: true if it created authorities, false if the store already had some.
    @discardableResult
    public func bootstrap(upstream: SigningIdentity? = nil) async throws -> Bool {
        guard try await store.authorities().isEmpty else {
            try await reload()
            return false
        }
        let now = clock.now
        let root: AuthorityRecord
        let rootKey: PrivateKey
        if let upstream {
            try Self.checkUpstream(upstream, trustDomain: configuration.trustDomain, at: now)
            root = AuthorityRecord(
                role: .root, state: .active, certificate: upstream.certificate, parentID: nil, isUpstream: true,
                createdAt: now)
            rootKey = upstream.key
        } else {
            (root, rootKey) = try AuthorityFactory.makeRoot(configuration, state: .active, at: now)
        }
        try await store.insertAuthority(
            root, key: rootKey,
            audit: [
                event(
                    upstream == nil ? .initialize : .keyImport, actor: "system",
                    reason: "\(root.role.rawValue) for \(configuration.trustDomain)", authorityID: root.id)
            ])
        let intermediate = try AuthorityFactory.makeIntermediate(
            configuration, parent: root, parentKey: rootKey, state: .active, at: now)
        try await store.insertAuthority(
            intermediate.record, key: intermediate.key,
            audit: [
                event(
                    .initialize, actor: "system", reason: "intermediate signed by \(root.id)",
                    authorityID: intermediate.record.id)
            ])
        try await reload()
        return true
    }

    /// Re-reads authorities from the store (after a change here or by another replica), and signs again any
    /// CRL whose list changed or that is half way to its `nextUpdate`. Rows that fail their integrity check
    /// are left out, and each is logged and audited once per process.
    public func reload() async throws {
        let rows = try await store.loadAuthorities()
        let authorities = AuthoritySet(rows.records)
        let sequence = try await store.bundleSequence()
        let previous = state.withLock { $0 }
        var signer: SigningAuthority? = nil
        if let active = authorities.active(.intermediate) {
            let cachedKey = previous?.signer?.record.id == active.id ? previous?.signer?.identity.key : nil
            let key: PrivateKey
            if let cachedKey { key = cachedKey } else { key = try await store.authorityKey(id: active.id) }
            signer = SigningAuthority(
                record: active, key: key, chain: authorities.chain(from: active), trustDomain: configuration.trustDomain
            )
        }
        let now = clock.now
        let snapshot = Snapshot(
            authorities: authorities, signer: signer,
            crls: try await revocationLists(authorities, signer: signer, previous: previous?.crls ?? [:], at: now),
            rejected: rows.rejected, storedBundleSequence: sequence,
            trustBundlePEM: authorities.bundleRoots(at: now).map(\.certificate.pem))
        state.withLock { $0 = snapshot }
        try await report(rows.rejected)
    }

    /// The CRL of every authority that has one at `now`: live authorities' reused from `previous` while current.
    private func revocationLists(
        _ authorities: AuthoritySet, signer: SigningAuthority?, previous: [String: CertificateRevocationList],
        at now: Date
    ) async throws -> [String: CertificateRevocationList] {
        var lists: [String: CertificateRevocationList] = [:]
        for authority in authorities.records where !authority.isExpired(at: now) {
            if authority.hasKey && AuthorityRecord.keepsKey(authority.state) {
                let leaves =
                    authority.role == .intermediate
                    ? try await store.revokedCertificates(authorityID: authority.id, at: now) : []
                let entries = RevocationLists.entries(for: authority, in: authorities, revokedLeaves: leaves)
                if let current = previous[authority.id], RevocationLists.isCurrent(current, for: entries, at: now) {
                    lists[authority.id] = current
                    continue
                }
                let key: PrivateKey
                if let signer, signer.record.id == authority.id {
                    key = signer.identity.key
                } else {
                    do {
                        key = try await store.authorityKey(id: authority.id)
                    } catch let error as StorageError where error.code == .notFound {
                        continue  // an upstream root imported without its key signs no CRL
                    }
                }
                lists[authority.id] = try RevocationLists.sign(entries, by: authority, key: key, final: false, at: now)
            } else if let final = authority.finalCRL, let crl = try? CertificateRevocationList(der: final),
                crl.nextUpdate.map({ $0 > now }) ?? false
            {
                lists[authority.id] = crl
            }
        }
        return lists
    }

    /// Logs and audits each rejected authority row the first time this process sees it.
    private func report(_ rejected: [RejectedAuthority]) async throws {
        let fresh = reportedRejections.withLock { reported -> [RejectedAuthority] in
            let fresh = rejected.filter { !reported.contains($0.id) }
            reported.formUnion(fresh.map(\.id))
            return fresh
        }
        for rejection in fresh {
            logger.error(
                "ignoring an authority row that fails its integrity check",
                metadata: ["sigil.authority": "\(rejection.id)", "sigil.reason": "\(rejection.reason)"])
            try await audit(
                .integrity, actor: "system", outcome: .failure, code: "store_corrupt", reason: rejection.reason,
                authorityID: rejection.id)
        }
    }

    /// The snapshot as last loaded, without touching the store (nil before the first load).
    public var cachedSnapshot: Snapshot? { state.withLock { $0 } }

    /// The current snapshot (loads it on first use).
    public func snapshot() async throws -> Snapshot {
        if let cached = state.withLock({ $0 }) { return cached }
        try await reload()
        guard let loaded = state.withLock({ $0 }) else { throw CAError(.storeUnavailable, reason: "no snapshot") }
        return loaded
    }

    /// The active intermediate, or `no_active_authority`.
    public func signingAuthority() async throws -> SigningAuthority {
        guard let signer = try await snapshot().signer else {
            throw CAError(.noActiveAuthority, reason: "no active intermediate authority")
        }
        return signer
    }

    /// Signs a leaf for `request` (policy → sign → self-check). Does not record it: the caller commits the
    /// inventory row (and audit record) before the certificate leaves.
    public func sign(_ request: IssuanceRequest) async throws -> IssuedCertificate {
        let signer = try await signingAuthority()
        return try issuer.issue(request, by: signer, at: clock.now)
    }

    /// Signs a leaf and commits its inventory row and audit record durably before returning it; a refusal is
    /// audited as a denial (if that record cannot be written either, the answer is `audit_unavailable`).
    /// - Throws: the policy's `CAError`; `audit_unavailable` when the commit fails (the certificate is withheld).
    public func issue(_ request: IssuanceRequest, requester: Requester) async throws -> IssuedCertificate {
        let issued: IssuedCertificate
        do {
            issued = try await sign(request)
        } catch let error as CAError {
            do {
                _ = try await store.appendAudit(
                    requester.denial(error, subject: request.identity.description, at: clock.now))
            } catch {
                throw CAError(.auditUnavailable, reason: "denial could not be audited: \(error)")
            }
            throw error
        }
        let now = clock.now
        var event = requester.event(requester.isRenewal ? .renew : .issue, at: now)
        event.reason = requester.reason(requester.renewing.map { "renewal of \($0.hex)" })
        event.subject = issued.spiffeID.description
        event.serial = issued.serial.hex
        event.authorityID = issued.authorityID
        event.publicKeySHA256 = issued.publicKey.sha256Fingerprint
        do {
            _ = try await store.commitIssuance(
                issued.inventoryRecord(issuedAt: now, authenticatedAt: requester.authenticatedAt), event: event)
        } catch {
            throw CAError(.auditUnavailable, reason: "audit/inventory commit failed, certificate withheld: \(error)")
        }
        return issued
    }

    /// Appends an audit event for an action outside issuance (rotation, admin verbs, start/stop).
    public func audit(
        _ action: AuditAction, actor: String, outcome: AuditOutcome = .success, code: String? = nil,
        reason: String? = nil,
        authorityID: String? = nil
    ) async throws {
        _ = try await store.appendAudit(
            event(action, actor: actor, outcome: outcome, code: code, reason: reason, authorityID: authorityID))
    }

    /// An audit event at the clock's now, to append alone (`audit`) or with the change it records.
    func event(
        _ action: AuditAction, actor: String, outcome: AuditOutcome = .success, code: String? = nil,
        reason: String? = nil,
        authorityID: String? = nil
    ) -> AuditEvent {
        AuditEvent(
            time: clock.now, actor: actor, action: action, outcome: outcome, code: code, reason: reason,
            authorityID: authorityID)
    }

    /// The planner's slot for `role` in `authorities`.
    public func slot(for role: AuthorityRole, in authorities: AuthoritySet) -> AuthoritySlot {
        func validity(_ record: AuthorityRecord?) -> AuthoritySlot.Validity? {
            record.map { AuthoritySlot.Validity(notBefore: $0.notBefore, notAfter: $0.notAfter) }
        }
        let active = authorities.active(role)
        switch role {
        case .root:
            return AuthoritySlot(active: validity(active), prepared: validity(authorities.prepared(.root)))
        case .intermediate:
            let currentRoot = authorities.active(.root)?.id
            return AuthoritySlot(
                active: validity(active), prepared: validity(authorities.prepared(.intermediate)),
                issuerIsCurrent: active == nil || active?.parentID == currentRoot,
                minimumRemaining: issuer.policy.defaultTTL)
        }
    }

    /// Asks the planner what to do for `role` now. Upstream roots are never rotated by Sigil.
    public func plan(_ role: AuthorityRole) async throws -> RotationAction {
        let authorities = try await snapshot().authorities
        let now = clock.now
        if role == .root, let root = authorities.active(.root), root.isUpstream {
            return root.isExpired(at: now)
                ? .renew(reason: "upstream root expired: import a new one")
                : .none(nextCheck: root.notAfter)
        }
        return planner.action(for: slot(for: role, in: authorities), at: now)
    }

    /// Carries out `action` for `role` and audits each step; returns the ids of authorities created or changed.
    @discardableResult
    public func perform(
        _ action: RotationAction, for role: AuthorityRole, actor: String = "system", reason: String? = nil
    ) async throws -> [String] {
        if case .none = action { return [] }
        return try await exclusively { try await self.performUnlocked(action, for: role, actor: actor, reason: reason) }
    }

    /// Runs `body` as the only rotation in this process; refuses with `conflict` if another is in progress.
    func exclusively<T: Sendable>(_ body: () async throws -> T) async throws -> T {
        let acquired = rotating.withLock { busy -> Bool in
            if busy { return false }
            busy = true
            return true
        }
        guard acquired else { throw CAError(.conflict, reason: "another rotation is in progress") }
        defer { rotating.withLock { $0 = false } }
        return try await body()
    }

    private func performUnlocked(
        _ action: RotationAction, for role: AuthorityRole, actor: String, reason: String?
    ) async throws -> [String] {
        let authorities = try await snapshot().authorities
        let now = clock.now
        var changed: [String] = []
        switch action {
        case .none:
            return []
        case .prepareNext:
            let created = try await makeSuccessor(role, state: .prepared, authorities: authorities, at: now) {
                self.event(
                    .prepare, actor: actor, reason: reason ?? "scheduled: \(role.rawValue) successor", authorityID: $0)
            }
            changed.append(created)
        case .activateNext:
            guard let next = authorities.prepared(role) else { return [] }
            var updates: [(id: String, state: AuthorityState)] = [(next.id, .active)]
            if let current = authorities.active(role) { updates.append((current.id, .retired)) }
            let events =
                [
                    event(
                        .activate, actor: actor, reason: reason ?? "scheduled: \(role.rawValue) successor activated",
                        authorityID: next.id)
                ]
                + updates.dropFirst().map {
                    event(.retire, actor: actor, reason: reason ?? "replaced by \(next.id)", authorityID: $0.id)
                }
            try await applyStateChanges(updates, in: authorities, actor: actor, audit: events)
            changed = updates.map(\.id)
        case .renew(let why):
            if role == .root, authorities.active(.root)?.isUpstream == true {
                throw CAError(.noActiveAuthority, reason: "the upstream root has expired; import a new upstream CA")
            }
            // Two commits, each with its record: a crash between them leaves an audited prepared successor.
            let created = try await makeSuccessor(role, state: .prepared, authorities: authorities, at: now) {
                self.event(.prepare, actor: actor, reason: reason ?? "repair: \(why)", authorityID: $0)
            }
            var updates: [(id: String, state: AuthorityState)] = [(created, .active)]
            if let current = authorities.active(role) { updates.append((current.id, .retired)) }
            // A stale prepared successor would otherwise be activated later in place of the new one.
            if let stale = authorities.prepared(role) { updates.append((stale.id, .retired)) }
            try await applyStateChanges(
                updates, in: authorities, actor: actor,
                audit: [event(.rotate, actor: actor, reason: reason ?? "repair: \(why)", authorityID: created)])
            changed = updates.map(\.id)
        }
        try await reload()
        return changed
    }

    /// Moves authorities to new states in one store transaction with `audit`. Each authority that loses its
    /// key with this change (it held one, and its new state does not sign) signs its final CRL first, and
    /// the erasure is audited in the same transaction: an authority without a key can never sign again.
    func applyStateChanges(
        _ updates: [(id: String, state: AuthorityState)], in authorities: AuthoritySet, actor: String,
        audit: [AuditEvent]
    ) async throws {
        let now = clock.now
        var finalCRLs: [String: [UInt8]] = [:]
        var erasures: [AuditEvent] = []
        for update in updates where !AuthorityRecord.keepsKey(update.state) {
            guard let record = authorities.record(id: update.id), record.hasKey else { continue }
            var reason = "\(record.role.rawValue) no longer signs (\(update.state.rawValue)): its private key is erased"
            do {
                let key = try await store.authorityKey(id: record.id)
                let leaves =
                    record.role == .intermediate
                    ? try await store.revokedCertificates(authorityID: record.id, at: now) : []
                let entries = RevocationLists.entries(for: record, in: authorities, revokedLeaves: leaves)
                finalCRLs[record.id] = try RevocationLists.sign(entries, by: record, key: key, final: true, at: now).der
                reason += "; final CRL of \(entries.count) entr\(entries.count == 1 ? "y" : "ies") kept"
            } catch let error as StorageError where error.code == .notFound {
                reason += " (no key was stored)"
            }
            erasures.append(event(.eraseKey, actor: actor, reason: reason, authorityID: record.id))
        }
        try await store.updateAuthorityStates(updates, at: now, finalCRLs: finalCRLs, audit: audit + erasures)
    }

    /// Erases the keys that an earlier version kept for authorities that no longer sign (retired, tainted,
    /// revoked), each with its final CRL and an audit record. Run at start-up; does nothing when there are none.
    /// - Returns: the ids whose keys were erased.
    @discardableResult
    public func eraseKeysOfNonSigningAuthorities() async throws -> [String] {
        try await exclusively {
            try await reload()
            let authorities = try await snapshot().authorities
            let stale = authorities.records.filter { $0.hasKey && !AuthorityRecord.keepsKey($0.state) }
            guard !stale.isEmpty else { return [] }
            try await applyStateChanges(stale.map { ($0.id, $0.state) }, in: authorities, actor: "system", audit: [])
            try await reload()
            return stale.map(\.id)
        }
    }

    /// Creates and stores a successor; `audit` makes the record committed with it, given the new id.
    func makeSuccessor(
        _ role: AuthorityRole, state: AuthorityState, authorities: AuthoritySet, at now: Date,
        parent explicitParent: AuthorityRecord? = nil,
        audit: (String) -> AuditEvent
    ) async throws -> String {
        switch role {
        case .root:
            let root = try AuthorityFactory.makeRoot(configuration, state: state, at: now)
            try await store.insertAuthority(root.record, key: root.key, audit: [audit(root.record.id)])
            return root.record.id
        case .intermediate:
            // A successor intermediate is signed by the root that will be active when it activates.
            guard let parent = explicitParent ?? authorities.active(.root), !parent.isExpired(at: now) else {
                throw CAError(.noActiveAuthority, reason: "no unexpired active root to sign an intermediate")
            }
            let parentKey = try await store.authorityKey(id: parent.id)
            let made = try AuthorityFactory.makeIntermediate(
                configuration, parent: parent, parentKey: parentKey, state: state, at: now)
            try await store.insertAuthority(made.record, key: made.key, audit: [audit(made.record.id)])
            return made.record.id
        }
    }

    /// An upstream CA must be a CA that may sign CA certificates, valid now, with the key that matches.
    public static func checkUpstream(_ upstream: SigningIdentity, trustDomain: TrustDomain, at now: Date) throws {
        let certificate = upstream.certificate
        guard let constraints = certificate.basicConstraints?.value, constraints.isCA else {
            throw CAError.configuration(reason: "upstream certificate is not a CA (basicConstraints cA=false)")
        }
        if let pathLength = constraints.pathLength, pathLength < 1 {
            throw CAError.configuration(reason: "upstream CA pathLen \(pathLength) forbids an intermediate below it")
        }
        if let usage = certificate.keyUsage?.value, !usage.contains(.keyCertSign) {
            throw CAError.configuration(reason: "upstream CA keyUsage lacks keyCertSign")
        }
        guard certificate.notBefore <= now, now < certificate.notAfter else {
            throw CAError.configuration(reason: "upstream CA is not valid now")
        }
        guard try upstream.key.publicKey().der == certificate.publicKey.der else {
            throw CAError.configuration(reason: "upstream key does not match the upstream certificate")
        }
        guard certificate.subjectKeyIdentifier != nil else {
            throw CAError.configuration(reason: "upstream CA has no subjectKeyIdentifier")
        }
    }
}
