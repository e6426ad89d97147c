import Foundation
import SigilCrypto

/// What replacing some authorities would touch: live certificates chaining to them and their identities.
public struct BlastRadius: Sendable, Equatable, Codable {
    public let authorityIDs: [String]
    public let liveCertificates: Int
    public let identities: [String]

    enum CodingKeys: String, CodingKey {
        case authorityIDs = "authority_ids"
        case liveCertificates = "live_certificates"
        case identities
    }
}

/// The outcome of a break-glass rotation.
public struct RotationOutcome: Sendable, Equatable, Codable {
    public let role: String
    public let dryRun: Bool
    /// Authorities replaced (retired, or tainted with `--taint-old`).
    public let replaced: [String]
    public let tainted: [String]
    /// Authorities created and activated.
    public let activated: [String]
    public let blastRadius: BlastRadius

    enum CodingKeys: String, CodingKey {
        case role, replaced, tainted, activated
        case dryRun = "dry_run"
        case blastRadius = "blast_radius"
    }
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
    public func rotateNow(_ role: AuthorityRole, taintOld: Bool, dryRun: Bool, reason: String, actor: String) async throws -> RotationOutcome {
        try await exclusively {
            try await reload()
            let authorities = try await snapshot().authorities
            let now = clock.now
            guard let current = authorities.active(role) else { throw CAError(.noActiveAuthority, reason: "no active \(role.rawValue)") }
            if role == .root && current.isUpstream {
                throw CAError(.conflict, reason: "the root is an upstream CA; Sigil rotates only intermediates under it")
            }
            var replaced = [current.id]
            if role == .root {
                replaced += authorities.records.filter {
                    $0.parentID == current.id && ($0.state == .active || $0.state == .prepared)
                }.map(\.id)
            }
            let radius = try await blastRadius(of: [current.id])
            if dryRun {
                try await audit(.adminRotate, actor: actor, reason: "dry-run \(role.rawValue): \(reason)", authorityID: current.id)
                return RotationOutcome(role: role.rawValue, dryRun: true, replaced: replaced, tainted: [], activated: [], blastRadius: radius)
            }
            var created: [String] = []
            var updates: [(id: String, state: AuthorityState)] = []
            let oldState: AuthorityState = taintOld ? .tainted : .retired
            // Each successor is committed with its own record, the switch-over with the rest: a crash at any
            // point leaves only audited authorities (found by scripts/crashtest).
            let prepared = { (id: String) in self.event(.prepare, actor: actor, reason: "admin rotate \(role.rawValue): \(reason)", authorityID: id) }
            switch role {
            case .intermediate:
                created.append(try await makeSuccessor(.intermediate, state: .prepared, authorities: authorities, at: now, audit: prepared))
            case .root:
                let rootID = try await makeSuccessor(.root, state: .prepared, authorities: authorities, at: now, audit: prepared)
                let refreshed = AuthoritySet(try await store.authorities())
                guard let newRoot = refreshed.record(id: rootID) else { throw CAError(.internalError, reason: "new root vanished") }
                created.append(rootID)
                created.append(
                    try await makeSuccessor(.intermediate, state: .prepared, authorities: refreshed, at: now, parent: newRoot, audit: prepared))
            }
            updates += created.map { ($0, AuthorityState.active) }
            updates += replaced.map { ($0, oldState) }
            // Stale prepared successors of the replaced generation would otherwise activate later.
            updates += authorities.records.filter { $0.state == .prepared && ($0.role == role || role == .root) && !replaced.contains($0.id) }
                .map { ($0.id, AuthorityState.retired) }
            let events = [event(.adminRotate, actor: actor, reason: "\(role.rawValue) rotated: \(reason)", authorityID: created.first)]
                + created.map { event(.activate, actor: actor, reason: reason, authorityID: $0) }
                + replaced.map { event(taintOld ? .taint : .retire, actor: actor, reason: reason, authorityID: $0) }
            try await store.updateAuthorityStates(updates, at: now, audit: events)
            try await reload()
            return RotationOutcome(
                role: role.rawValue, dryRun: false, replaced: replaced, tainted: taintOld ? replaced : [], activated: created, blastRadius: radius)
        }
    }

    /// Revokes a tainted, non-active authority: a revoked root leaves the bundle (its sequence increases), a
    /// revoked intermediate enters the CRL. Refuses anything else with `conflict`.
    public func revoke(_ id: String, reason: String, actor: String) async throws -> AuthorityRecord {
        try await exclusively {
            try await reload()
            let authorities = try await snapshot().authorities
            guard let record = authorities.record(id: id) else {
                try? await audit(.adminRevoke, actor: actor, outcome: .failure, code: CAError.Code.notFound.rawValue, reason: reason, authorityID: id)
                throw CAError(.notFound, reason: "no authority \(id)")
            }
            let refusal: String?
            switch record.state {
            case .active: refusal = "refusing to revoke the active \(record.role.rawValue): rotate it first (sigil admin rotate \(record.role.rawValue) --taint-old)"
            case .revoked: refusal = "\(id) is already revoked"
            case .tainted: refusal = nil
            default: refusal = "refusing to revoke an untainted authority (\(record.state.rawValue)): taint it first with rotate --taint-old"
            }
            if let refusal {
                try await audit(.adminRevoke, actor: actor, outcome: .failure, code: CAError.Code.conflict.rawValue, reason: "\(reason) — \(refusal)", authorityID: id)
                throw CAError(.conflict, reason: refusal)
            }
            try await store.updateAuthorityStates(
                [(id, .revoked)], at: clock.now, audit: [event(.adminRevoke, actor: actor, reason: reason, authorityID: id)])
            try await reload()
            guard let revoked = try await snapshot().authorities.record(id: id) else { throw CAError(.internalError, reason: "authority vanished") }
            return revoked
        }
    }
}
