import Foundation

// The admin API: JSON over the admin unix socket (`sigil admin …`). Every request names the operator's reason.

/// `GET /admin/status`.
public struct AdminStatusResponse: Codable, Sendable, Equatable {
    public let trustDomain: String
    public let bundleSequence: Int64
    /// The replica running scheduled rotation, if any holds the lease.
    public let leaseHolder: String?
    public let leaseExpiresAt: String?
    public let authorities: [AuthorityView]

    public init(
        trustDomain: String, bundleSequence: Int64, leaseHolder: String?, leaseExpiresAt: String?,
        authorities: [AuthorityView]
    ) {
        self.trustDomain = trustDomain
        self.bundleSequence = bundleSequence
        self.leaseHolder = leaseHolder
        self.leaseExpiresAt = leaseExpiresAt
        self.authorities = authorities
    }

    enum CodingKeys: String, CodingKey {
        case authorities
        case trustDomain = "trust_domain"
        case bundleSequence = "bundle_sequence"
        case leaseHolder = "lease_holder"
        case leaseExpiresAt = "lease_expires_at"
    }
}

/// What a break-glass step would touch: live certificates under the authorities and their identities.
public struct BlastRadiusReport: Codable, Sendable, Equatable {
    public let authorityIDs: [String]
    public let liveCertificates: Int
    public let identities: [String]

    public init(authorityIDs: [String], liveCertificates: Int, identities: [String]) {
        self.authorityIDs = authorityIDs
        self.liveCertificates = liveCertificates
        self.identities = identities
    }

    enum CodingKeys: String, CodingKey {
        case identities
        case authorityIDs = "authority_ids"
        case liveCertificates = "live_certificates"
    }
}

/// `POST /admin/rotate`.
public struct AdminRotateRequest: Codable, Sendable, Equatable {
    /// `root` or `intermediate`.
    public let role: String
    public let taintOld: Bool?
    public let dryRun: Bool?
    public let reason: String

    public init(role: String, taintOld: Bool, dryRun: Bool, reason: String) {
        self.role = role
        self.taintOld = taintOld
        self.dryRun = dryRun
        self.reason = reason
    }

    enum CodingKeys: String, CodingKey {
        case role, reason
        case taintOld = "taint_old"
        case dryRun = "dry_run"
    }
}

/// The answer to `POST /admin/rotate`.
public struct AdminRotateResponse: Codable, Sendable, Equatable {
    public let role: String
    public let dryRun: Bool
    /// Authorities replaced (retired, or tainted with `taint_old`), prepared successors included.
    public let replaced: [String]
    public let tainted: [String]
    /// Authorities created and activated.
    public let activated: [String]
    public let blastRadius: BlastRadiusReport

    public init(
        role: String, dryRun: Bool, replaced: [String], tainted: [String], activated: [String],
        blastRadius: BlastRadiusReport
    ) {
        self.role = role
        self.dryRun = dryRun
        self.replaced = replaced
        self.tainted = tainted
        self.activated = activated
        self.blastRadius = blastRadius
    }

    enum CodingKeys: String, CodingKey {
        case role, replaced, tainted, activated
        case dryRun = "dry_run"
        case blastRadius = "blast_radius"
    }
}

/// `POST /admin/taint`.
public struct AdminTaintRequest: Codable, Sendable, Equatable {
    public let authorityID: String
    public let dryRun: Bool?
    public let reason: String

    public init(authorityID: String, dryRun: Bool, reason: String) {
        self.authorityID = authorityID
        self.dryRun = dryRun
        self.reason = reason
    }

    enum CodingKeys: String, CodingKey {
        case reason
        case authorityID = "authority_id"
        case dryRun = "dry_run"
    }
}

/// The answer to `POST /admin/taint`.
public struct AdminTaintResponse: Codable, Sendable, Equatable {
    public let authorityID: String
    public let role: String
    public let dryRun: Bool
    public let previousState: String
    public let blastRadius: BlastRadiusReport

    public init(authorityID: String, role: String, dryRun: Bool, previousState: String, blastRadius: BlastRadiusReport)
    {
        self.authorityID = authorityID
        self.role = role
        self.dryRun = dryRun
        self.previousState = previousState
        self.blastRadius = blastRadius
    }

    enum CodingKeys: String, CodingKey {
        case role
        case authorityID = "authority_id"
        case dryRun = "dry_run"
        case previousState = "previous_state"
        case blastRadius = "blast_radius"
    }
}

/// `POST /admin/revoke`: exactly one of `authorityID` (a tainted authority) and `serial` (one leaf).
public struct AdminRevokeRequest: Codable, Sendable, Equatable {
    public let authorityID: String?
    public let serial: String?
    public let reason: String

    public init(authorityID: String? = nil, serial: String? = nil, reason: String) {
        self.authorityID = authorityID
        self.serial = serial
        self.reason = reason
    }

    enum CodingKeys: String, CodingKey {
        case serial, reason
        case authorityID = "authority_id"
    }
}

/// The answer to revoking an authority.
public struct AdminRevokedAuthority: Codable, Sendable, Equatable {
    public let id: String
    public let role: String
    public let state: String

    public init(id: String, role: String, state: String) {
        self.id = id
        self.role = role
        self.state = state
    }
}

/// The answer to revoking one leaf.
public struct AdminRevokedCertificate: Codable, Sendable, Equatable {
    public let serial: String
    public let spiffeID: String
    public let authorityID: String
    public let notAfter: String
    /// Whether its intermediate's current CRL lists it: false when the intermediate's key is erased (its final
    /// CRL is frozen) or the certificate has expired (nothing to list).
    public let inCRL: Bool
    public let expired: Bool

    public init(serial: String, spiffeID: String, authorityID: String, notAfter: String, inCRL: Bool, expired: Bool) {
        self.serial = serial
        self.spiffeID = spiffeID
        self.authorityID = authorityID
        self.notAfter = notAfter
        self.inCRL = inCRL
        self.expired = expired
    }

    enum CodingKeys: String, CodingKey {
        case serial, expired
        case spiffeID = "spiffe_id"
        case authorityID = "authority_id"
        case notAfter = "not_after"
        case inCRL = "in_crl"
    }
}

/// `POST /admin/console-login`: a one-time login URL for the trust console.
public struct AdminConsoleLoginRequest: Codable, Sendable, Equatable {
    /// How long the URL may wait to be opened; at most (and by default) 300.
    public let ttlSeconds: Int?
    public let reason: String?

    public init(ttlSeconds: Int?, reason: String?) {
        self.ttlSeconds = ttlSeconds
        self.reason = reason
    }

    enum CodingKeys: String, CodingKey {
        case reason
        case ttlSeconds = "ttl_seconds"
    }
}

public struct AdminConsoleLoginResponse: Codable, Sendable, Equatable {
    /// `https://<server>/ui/login#token=…`: opened once, it becomes an operator session of 8 hours.
    public let url: String
    public let expiresAt: String

    public init(url: String, expiresAt: String) {
        self.url = url
        self.expiresAt = expiresAt
    }

    enum CodingKeys: String, CodingKey {
        case url
        case expiresAt = "expires_at"
    }
}
