import Foundation
import SigilCrypto

/// Which position an authority holds in the chain.
public enum AuthorityRole: String, Sendable, Codable, CaseIterable {
    case root
    case intermediate
}

/// Life cycle of an authority: `prepared → active → retired`, and out of band `tainted → revoked`.
public enum AuthorityState: String, Sendable, Codable, CaseIterable {
    /// Created and published (roots enter the bundle now) but not yet signing.
    case prepared
    /// The one authority of its role that signs.
    case active
    /// Replaced by a successor; its certificates stay valid until they expire.
    case retired
    /// Suspected compromised: agents replace certificates chaining to it at once.
    case tainted
    /// Withdrawn: a revoked root leaves the bundle, a revoked intermediate enters the CRL.
    case revoked
}

/// One root or intermediate authority as the store keeps it (the key is held separately, encrypted).
public struct AuthorityRecord: Sendable, Identifiable, Equatable {
    /// Stable identifier: the role and the first 16 hex digits of the certificate's SHA-256.
    public let id: String
    public let role: AuthorityRole
    public var state: AuthorityState
    public let certificate: Certificate
    /// The authority that signed this one; nil for roots.
    public let parentID: String?
    /// Imported from an upstream CA: never rotated by Sigil, key may be absent.
    public let isUpstream: Bool
    public let createdAt: Date
    public var updatedAt: Date
    /// Whether the store holds its sealed private key. Set by the store: keys of authorities that no longer
    /// sign (retired, tainted, revoked) are erased, so only these can ever sign.
    public var hasKey: Bool
    /// DER of the last CRL the authority signed before its key was erased (nil while it has its key).
    public var finalCRL: [UInt8]?

    public init(
        id: String? = nil, role: AuthorityRole, state: AuthorityState, certificate: Certificate, parentID: String?,
        isUpstream: Bool = false, createdAt: Date, updatedAt: Date? = nil, hasKey: Bool = true, finalCRL: [UInt8]? = nil
    ) {
        self.id = id ?? Self.identifier(role: role, certificate: certificate)
        self.role = role
        self.state = state
        self.certificate = certificate
        self.parentID = parentID
        self.isUpstream = isUpstream
        self.createdAt = createdAt
        self.updatedAt = updatedAt ?? createdAt
        self.hasKey = hasKey
        self.finalCRL = finalCRL
    }

    /// Whether an authority in `state` keeps its key: only those that sign or are about to.
    public static func keepsKey(_ state: AuthorityState) -> Bool { state == .active || state == .prepared }

    public static func identifier(role: AuthorityRole, certificate: Certificate) -> String {
        "\(role.rawValue)-\(certificate.sha256Fingerprint.prefix(16))"
    }

    public var notBefore: Date { certificate.notBefore }
    public var notAfter: Date { certificate.notAfter }

    /// Whether the certificate has expired at `time`.
    public func isExpired(at time: Date) -> Bool { time >= notAfter }
}

/// A snapshot of all authorities, with the questions issuance and the bundle ask of it.
public struct AuthoritySet: Sendable {
    public let records: [AuthorityRecord]

    public init(_ records: [AuthorityRecord]) {
        // Oldest first; a root before the intermediate created in the same instant.
        self.records = records.sorted {
            ($0.createdAt, $0.role == .root ? 0 : 1, $0.id) < ($1.createdAt, $1.role == .root ? 0 : 1, $1.id)
        }
    }

    public func active(_ role: AuthorityRole) -> AuthorityRecord? {
        records.last { $0.role == role && $0.state == .active }
    }

    public func prepared(_ role: AuthorityRole) -> AuthorityRecord? {
        records.last { $0.role == role && $0.state == .prepared }
    }

    public func record(id: String) -> AuthorityRecord? { records.first { $0.id == id } }

    /// Roots a relying party should trust at `time`: every unexpired root that is not revoked, so that a
    /// prepared root is published before it signs and a retired one stays while its chains live.
    public func bundleRoots(at time: Date) -> [AuthorityRecord] {
        records.filter { $0.role == .root && $0.state != .revoked && !$0.isExpired(at: time) }
    }

    /// Roots that left the bundle by expiring (not by revocation) before `time`.
    public func expiredRoots(at time: Date) -> [AuthorityRecord] {
        records.filter { $0.role == .root && $0.state != .revoked && $0.isExpired(at: time) }
    }

    /// The intermediate chain above a certificate issued by `authority` (the authority itself first, roots excluded).
    public func chain(from authority: AuthorityRecord) -> [Certificate] {
        var chain: [Certificate] = []
        var current: AuthorityRecord? = authority
        while let record = current, record.role != .root {
            chain.append(record.certificate)
            current = record.parentID.flatMap(self.record(id:))
        }
        return chain
    }
}

/// The authority that signs leaves now: its record, key and the chain to send with every leaf.
public struct SigningAuthority: Sendable {
    public let record: AuthorityRecord
    public let identity: SigningIdentity
    /// Intermediates from this authority up to (excluding) the root, leaf-side first.
    public let chain: [Certificate]

    /// The trust domain this authority signs for (leaves outside it are refused).
    public let trustDomain: TrustDomain

    public init(record: AuthorityRecord, key: PrivateKey, chain: [Certificate], trustDomain: TrustDomain) {
        self.record = record
        self.identity = SigningIdentity(certificate: record.certificate, key: key)
        self.chain = chain
        self.trustDomain = trustDomain
    }
}
