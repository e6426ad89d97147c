import Foundation
import SigilCrypto

/// What replacing some authorities would touch: live certificates chaining to them and their identities.
public struct BlastRadius: Sendable, Equatable {
    public let authorityIDs: [String]
    public let liveCertificates: Int
    public let identities: [String]
}

/// The outcome of a break-glass rotation.
public struct RotationOutcome: Sendable, Equatable {
    public let role: String
    public let dryRun: Bool
    /// Authorities replaced (retired, or tainted with `--taint-old`), prepared successors included.
    public let replaced: [String]
    public let tainted: [String]
    /// Authorities created and activated.
    public let activated: [String]
    public let blastRadius: BlastRadius
}

extension CertificateAuthority {
    /// Live certificates issued by `ids` (for a root: by every intermediate it signed).
    public func blastRadius(of ids: [String]) async throws -> BlastRadius {
        let authorities = try await snapshot().authorities
        var issuing: [String] = []
        for id in ids {
            guard let record = authorities.record(id: id) else { continue }
            if record.role == .root {
                issuing += authorities.records.filter { $0.parentID == id }.map(\.id)
            } else {
                issuing.append(id)
            }
        }
        var count = 0
        var identities = Set<String>()
        for id in issuing {
            let live = try await store.liveCertificates(authorityID: id, at: clock.now)
            count += live.count
            identities.formUnion(live.map(\.spiffeID.description))
        }
        return BlastRadius(authorityIDs: ids, liveCertificates: count, identities: identities.sorted())
    }

    /// Break-glass: prepares and activates a successor for `role` now. A new root comes with a new intermediate
    /// signed by it. With `taintOld` the replaced authorities become `tainted` (agents renew at once) instead of
    /// `retired`. With `dryRun` nothing changes and only the blast radius is returned. Audited with `reason`.
    public func rotateNow(
        _ role: AuthorityRole, taintOld: Bool, dryRun: Bool, reason: String, actor: String
    ) async throws -> RotationOutcome {
        try await exclusively {
            try await reload()
            let authorities = try await snapshot().authorities
            let now = clock.now
            guard let current = authorities.active(role) else {
                throw CAError(.noActiveAuthority, reason: "no active \(role.rawValue)")
            }
            if role == .root && current.isUpstream {
                throw CAError(
                    .conflict, reason: "the root is an upstream CA; Sigil rotates only intermediates under it")
            }
            var replaced = [current.id]
            if role == .root {
                replaced += authorities.records.filter {
                    $0.parentID == current.id && ($0.state == .active || $0.state == .prepared)
                }.map(\.id)
            }
            // Prepared successors of the replaced generation would otherwise activate later. With --taint-old they
            // are tainted too: they were made while the compromise was in effect (their keys sat in the same store).
            replaced += authorities.records.filter {
                $0.state == .prepared && ($0.role == role || role == .root) && !replaced.contains($0.id)
            }
            .map(\.id)
            let radius = try await blastRadius(of: [current.id])
            if dryRun {
                try await audit(
                    .adminRotate, actor: actor, reason: "dry-run \(role.rawValue): \(reason)", authorityID: current.id)
                return RotationOutcome(
                    role: role.rawValue, dryRun: true, replaced: replaced, tainted: [], activated: [],
                    blastRadius: radius)
            }
            var created: [String] = []
            var updates: [(id: String, state: AuthorityState)] = []
            let oldState: AuthorityState = taintOld ? .tainted : .retired
            // Each successor is committed with its own record, the switch-over with the rest: a crash at any
            // point leaves only audited authorities (found by scripts/crashtest).
            let prepared = { (id: String) in
                self.event(.prepare, actor: actor, reason: "admin rotate \(role.rawValue): \(reason)", authorityID: id)
            }
            switch role {
            case .intermediate:
                created.append(
                    try await makeSuccessor(
                        .intermediate, state: .prepared, authorities: authorities, at: now, audit: prepared))
            case .root:
                let rootID = try await makeSuccessor(
                    .root, state: .prepared, authorities: authorities, at: now, audit: prepared)
                let refreshed = AuthoritySet(try await store.authorities())
                guard let newRoot = refreshed.record(id: rootID) else {
                    throw CAError(.internalError, reason: "new root vanished")
                }
                created.append(rootID)
                created.append(
                    try await makeSuccessor(
                        .intermediate, state: .prepared, authorities: refreshed, at: now, parent: newRoot,
                        audit: prepared))
            }
            updates += created.map { ($0, AuthorityState.active) }
            updates += replaced.map { ($0, oldState) }
            let events =
                [
                    event(
                        .adminRotate, actor: actor, reason: "\(role.rawValue) rotated: \(reason)",
                        authorityID: created.first)
                ]
                + created.map { event(.activate, actor: actor, reason: reason, authorityID: $0) }
                + replaced.map { event(taintOld ? .taint : .retire, actor: actor, reason: reason, authorityID: $0) }
            try await applyStateChanges(updates, in: authorities, actor: actor, audit: events)
            try await reload()
            return RotationOutcome(
                role: role.rawValue, dryRun: false, replaced: replaced, tainted: taintOld ? replaced : [],
                activated: created, blastRadius: radius)
        }
    }

    /// Taints an authority that is not active (prepared, retired): agents holding certificates that chain to it
    /// renew at once, renewals by those certificates are refused, and it may then be revoked. Its key, if
    /// any, is erased with its final CRL. The active authority of a role is refused: rotate it with
    /// `--taint-old`, which puts a successor in its place first. With `dryRun` only the blast radius is returned.
    public func taint(_ id: String, reason: String, dryRun: Bool, actor: String) async throws -> TaintOutcome {
        try await exclusively {
            try await reload()
            let authorities = try await snapshot().authorities
            func refuse(_ code: CAError.Code, _ why: String) async throws -> Never {
                try await audit(
                    .adminTaint, actor: actor, outcome: .failure, code: code.rawValue, reason: "\(reason) — \(why)",
                    authorityID: id)
                throw CAError(code, reason: why)
            }
            guard let record = authorities.record(id: id) else { try await refuse(.notFound, "no authority \(id)") }
            switch record.state {
            case .active:
                try await refuse(
                    .conflict,
                    "refusing to taint the active \(record.role.rawValue): rotate it first (sigil admin rotate \(record.role.rawValue) --taint-old), which activates a successor and taints this one"
                )
            case .tainted, .revoked:
                try await refuse(.conflict, "\(id) is already \(record.state.rawValue)")
            case .prepared, .retired:
                break
            }
            // New leaves must never chain to a tainted root: while the active intermediate is still signed by
            // this root (just after a root rotation), the intermediate has to move first.
            if record.role == .root, let active = authorities.active(.intermediate), active.parentID == id {
                try await refuse(
                    .conflict,
                    "the active intermediate \(active.id) is signed by \(id): rotate the intermediate first (sigil admin rotate intermediate)"
                )
            }
            let radius = try await blastRadius(of: [id])
            if dryRun {
                try await audit(.adminTaint, actor: actor, reason: "dry-run: \(reason)", authorityID: id)
                return TaintOutcome(
                    authorityID: id, role: record.role.rawValue, dryRun: true, previousState: record.state.rawValue,
                    blastRadius: radius)
            }
            try await applyStateChanges(
                [(id, .tainted)], in: authorities, actor: actor,
                audit: [event(.adminTaint, actor: actor, reason: reason, authorityID: id)])
            try await reload()
            return TaintOutcome(
                authorityID: id, role: record.role.rawValue, dryRun: false, previousState: record.state.rawValue,
                blastRadius: radius)
        }
    }

    /// Revokes a tainted, non-active authority: a revoked root leaves the bundle (its sequence increases), a
    /// revoked intermediate enters its root's CRL. Refuses anything else with `conflict`.
    public func revoke(_ id: String, reason: String, actor: String) async throws -> AuthorityRecord {
        try await exclusively {
            try await reload()
            let authorities = try await snapshot().authorities
            guard let record = authorities.record(id: id) else {
                try? await audit(
                    .adminRevoke, actor: actor, outcome: .failure, code: CAError.Code.notFound.rawValue, reason: reason,
                    authorityID: id)
                throw CAError(.notFound, reason: "no authority \(id)")
            }
            let refusal: String?
            switch record.state {
            case .active:
                refusal =
                    "refusing to revoke the active \(record.role.rawValue): rotate it first (sigil admin rotate \(record.role.rawValue) --taint-old)"
            case .revoked: refusal = "\(id) is already revoked"
            case .tainted: refusal = nil
            case .prepared, .retired:
                refusal =
                    "refusing to revoke an untainted authority (\(record.state.rawValue)): taint it first (sigil admin taint \(id))"
            }
            if let refusal {
                try await audit(
                    .adminRevoke, actor: actor, outcome: .failure, code: CAError.Code.conflict.rawValue,
                    reason: "\(reason) — \(refusal)", authorityID: id)
                throw CAError(.conflict, reason: refusal)
            }
            try await applyStateChanges(
                [(id, .revoked)], in: authorities, actor: actor,
                audit: [event(.adminRevoke, actor: actor, reason: reason, authorityID: id)])
            try await reload()
            guard let revoked = try await snapshot().authorities.record(id: id) else {
                throw CAError(.internalError, reason: "authority vanished")
            }
            return revoked
        }
    }

    /// Revokes one leaf: it can no longer renew, and until it expires its intermediate's CRL lists it (if the
    /// intermediate still holds its key; otherwise the outcome says so). Audited with `reason`.
    public func revokeCertificate(
        _ serial: SerialNumber, reason: String, actor: String
    ) async throws -> CertificateRevocation {
        try await exclusively {
            let now = clock.now
            var record = event(.adminRevoke, actor: actor, reason: reason)
            record.serial = serial.hex
            let revoked: InventoryRecord
            do {
                // The record names the certificate from its row (a row never changes but for revoked_at).
                guard let row = try await store.certificate(serial: serial) else {
                    throw StorageError(.notFound, reason: "")
                }
                record.subject = row.spiffeID.description
                record.authorityID = row.authorityID
                record.publicKeySHA256 = row.publicKeySHA256
                revoked = try await store.revokeCertificate(serial: serial, at: now, audit: [record])
            } catch let error as StorageError where error.code == .notFound || error.code == .conflict {
                let code: CAError.Code = error.code == .notFound ? .notFound : .conflict
                let why =
                    error.code == .notFound
                    ? "no certificate with serial \(serial.hex) in the inventory"
                    : "certificate \(serial.hex) is already revoked"
                record.outcome = .failure
                record.code = code.rawValue
                record.reason = "\(reason) — \(why)"
                _ = try? await store.appendAudit(record)
                throw CAError(code, reason: why)
            }
            try await reload()
            let snapshot = try await snapshot()
            let listed = snapshot.crls[revoked.authorityID]?.entries.contains { $0.serial == serial } ?? false
            return CertificateRevocation(
                serial: serial.hex, spiffeID: revoked.spiffeID.description, authorityID: revoked.authorityID,
                notAfter: revoked.notAfter, inCRL: listed, expired: revoked.notAfter <= now)
        }
    }
}

/// The outcome of `sigil admin taint`.
public struct TaintOutcome: Sendable, Equatable {
    public let authorityID: String
    public let role: String
    public let dryRun: Bool
    public let previousState: String
    public let blastRadius: BlastRadius
}

/// The outcome of revoking one leaf.
public struct CertificateRevocation: Sendable, Equatable {
    public let serial: String
    public let spiffeID: String
    public let authorityID: String
    public let notAfter: Date
    /// Whether its intermediate's current CRL lists it. False when the intermediate's key is erased (its final
    /// CRL is frozen) or the certificate has expired (nothing to list).
    public let inCRL: Bool
    public let expired: Bool
}
