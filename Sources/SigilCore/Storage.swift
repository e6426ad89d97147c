import Foundation
import SigilCrypto

/// An authority row that failed its integrity check: it is not served, not trusted and never signs.
public struct RejectedAuthority: Error, Sendable, Equatable {
    public let id: String
    public let reason: String
    public init(id: String, reason: String) {
        self.id = id
        self.reason = reason
    }
}

/// What an authority store holds: the rows that passed their integrity check, and those that did not.
public struct AuthorityRows: Sendable, Equatable {
    public let records: [AuthorityRecord]
    public let rejected: [RejectedAuthority]
    public init(records: [AuthorityRecord], rejected: [RejectedAuthority] = []) {
        self.records = records
        self.rejected = rejected
    }
}

/// Durable storage for authorities and their (encrypted) keys.
///
/// Rules every implementation keeps (the contract suite checks them):
/// - every row is authenticated (a MAC under a key derived from the key-encryption key, over id, role, state,
///   certificate, parent, upstream flag, key presence and final CRL); a row that fails is reported in
///   `rejected`, never returned as a record, and cannot be changed;
/// - a state that no longer signs (`retired`, `tainted`, `revoked`) erases the sealed key in the same
///   transaction; the certificate stays;
/// - a key is returned only if it matches its authority's certificate.
public protocol AuthorityStore: Sendable {
    /// Every authority, any state, split into authentic rows and rejected ones.
    func loadAuthorities() async throws -> AuthorityRows
    /// Adds an authority; `key` is encrypted under the key-encryption key before it is written. `audit` is
    /// appended to the audit chain in the same transaction: a crash never leaves an unaudited authority.
    func insertAuthority(_ record: AuthorityRecord, key: PrivateKey?, audit: [AuditEvent]) async throws
    /// Moves authorities to new states in one transaction (e.g. activate successor + retire predecessor),
    /// with `audit` appended in that transaction. A change to `retired`, `tainted` or `revoked` erases the
    /// authority's sealed key and stores `finalCRLs[id]` (its last CRL, signed before the key goes) if given.
    /// Changing an authority to the state it has erases its key the same way (used to erase keys that an
    /// older version kept).
    func updateAuthorityStates(
        _ changes: [(id: String, state: AuthorityState)], at time: Date, finalCRLs: [String: [UInt8]],
        audit: [AuditEvent]
    ) async throws
    /// Decrypts and returns the private key of authority `id`.
    /// - Throws: `StorageError.notFound` when it has no key (erased, or an upstream root imported without
    ///   one); `.corrupt` when the row fails its check or the key does not match the certificate.
    func authorityKey(id: String) async throws -> PrivateKey
    /// Increases on every change of the set of roots in the bundle (SPIFFE `spiffe_sequence`).
    func bundleSequence() async throws -> Int64
    /// A deployment setting written at initialisation (trust domain, authority key type, lifetimes).
    func setting(_ key: String) async throws -> String?
    func setSettings(_ values: [String: String]) async throws
}

extension AuthorityStore {
    /// Every authentic authority, any state.
    public func authorities() async throws -> [AuthorityRecord] { try await loadAuthorities().records }

    /// Moves authorities to new states with `audit` and no final CRLs.
    public func updateAuthorityStates(
        _ changes: [(id: String, state: AuthorityState)], at time: Date, audit: [AuditEvent]
    ) async throws {
        try await updateAuthorityStates(changes, at: time, finalCRLs: [:], audit: audit)
    }

    /// Adds an authority with no audit record (tests and fixtures).
    public func insertAuthority(_ record: AuthorityRecord, key: PrivateKey?) async throws {
        try await insertAuthority(record, key: key, audit: [])
    }

    /// Changes authority states with no audit record (tests and fixtures).
    public func updateAuthorityStates(_ changes: [(id: String, state: AuthorityState)], at time: Date) async throws {
        try await updateAuthorityStates(changes, at: time, finalCRLs: [:], audit: [])
    }
}

/// One issued certificate as the inventory keeps it (no key, no CSR: only what identifies it).
public struct InventoryRecord: Sendable, Equatable {
    public let serial: SerialNumber
    public let spiffeID: SPIFFEID
    public let authorityID: String
    public let notBefore: Date
    public let notAfter: Date
    public let publicKeySHA256: String
    public let issuedAt: Date
    /// When the holder last proved this identity with a token: the issuance time for a token issuance, and
    /// carried over unchanged by every renewal with a client certificate (so a renewal chain ends).
    public let authenticatedAt: Date
    public var revokedAt: Date?

    public init(
        serial: SerialNumber, spiffeID: SPIFFEID, authorityID: String, notBefore: Date, notAfter: Date,
        publicKeySHA256: String, issuedAt: Date, authenticatedAt: Date? = nil, revokedAt: Date? = nil
    ) {
        self.serial = serial
        self.spiffeID = spiffeID
        self.authorityID = authorityID
        self.notBefore = notBefore
        self.notAfter = notAfter
        self.publicKeySHA256 = publicKeySHA256
        self.issuedAt = issuedAt
        self.authenticatedAt = authenticatedAt ?? issuedAt
        self.revokedAt = revokedAt
    }
}

/// The certificate inventory: every leaf Sigil issued.
public protocol CertificateInventory: Sendable {
    /// Records an issued certificate durably.
    func recordIssued(_ record: InventoryRecord) async throws
    /// Live (unexpired at `time`, unrevoked) certificate counts per authority id.
    func liveCounts(at time: Date) async throws -> [String: Int]
    /// Live certificates issued by `authorityID`.
    func liveCertificates(authorityID: String, at time: Date) async throws -> [InventoryRecord]
    /// Live certificates for `spiffeID`.
    func liveCertificates(spiffeID: SPIFFEID, at time: Date) async throws -> [InventoryRecord]
    /// The certificate with `serial`, live or not; nil if Sigil never issued it.
    func certificate(serial: SerialNumber) async throws -> InventoryRecord?
    /// Marks the certificate revoked at `time`, with `audit` in the same transaction, and returns its row.
    /// - Throws: `StorageError.notFound` for an unknown serial, `.conflict` if it is already revoked.
    func revokeCertificate(serial: SerialNumber, at time: Date, audit: [AuditEvent]) async throws -> InventoryRecord
    /// Revoked certificates of `authorityID` that have not expired at `time` (what its CRL lists).
    func revokedCertificates(authorityID: String, at time: Date) async throws -> [InventoryRecord]
    /// Live certificates of known authorities by identity, with how many expire within each of `horizons`.
    func liveIdentities(at time: Date, expiringWithin horizons: [Duration]) async throws -> [IdentitySummary]
}

/// The live certificates of one identity (the trust console's workloads page).
public struct IdentitySummary: Sendable, Equatable {
    public let spiffeID: String
    public let live: Int
    public let soonestExpiry: Date
    /// Per horizon asked for, how many of them expire within it.
    public let expiringWithin: [Int]

    /// Namespace and service account of a `…/ns/<namespace>/sa/<service-account>` ID; nil for other IDs.
    public let namespace: String?
    public let serviceAccount: String?

    public init(spiffeID: String, live: Int, soonestExpiry: Date, expiringWithin: [Int]) {
        self.spiffeID = spiffeID
        self.live = live
        self.soonestExpiry = soonestExpiry
        self.expiringWithin = expiringWithin
        let workload = (try? SPIFFEID(parsing: spiffeID)).flatMap(WorkloadIdentity.init)
        namespace = workload?.namespace
        serviceAccount = workload?.serviceAccount
    }
}

/// Audit records of one action and code in one minute (the trust console's activity page).
public struct AuditCount: Sendable, Equatable {
    /// Minutes since 1970.
    public let minute: Int64
    public let action: AuditAction
    public let code: String?
    public let count: Int

    public init(minute: Int64, action: AuditAction, code: String?, count: Int) {
        self.minute = minute
        self.action = action
        self.code = code
        self.count = count
    }
}

/// The audit log, a chain of keyed links (`AuditRecord`). Appends are serialised so the chain stays linear
/// even with several writers.
public protocol AuditStore: Sendable {
    /// Appends `event` durably and returns its chained record.
    func appendAudit(_ event: AuditEvent) async throws -> AuditRecord
    /// Records an issued certificate and its audit event in one durable transaction: neither exists without
    /// the other, and the certificate may leave only after this returns.
    func commitIssuance(_ inventory: InventoryRecord, event: AuditEvent) async throws -> AuditRecord
    /// Records matching `query`, in sequence order (newest first with `newestFirst`).
    func auditRecords(_ query: AuditQuery) async throws -> [AuditRecord]
    /// Counts of issue, renew and deny records since `since`, by minute, action and code.
    func auditCounts(since: Date) async throws -> [AuditCount]
    /// The per-deployment audit key (created on first use, kept sealed in the store): token HMACs use it, and
    /// the chain links use the key derived from it (`AuditChainKey`).
    func auditKey() async throws -> [UInt8]
    /// The newest record, nil for an empty chain.
    func lastAuditRecord() async throws -> AuditRecord?
}

/// Who currently holds a named lease (e.g. the right to run scheduled rotation).
public struct Lease: Sendable, Equatable {
    public let name: String
    public let holder: String
    public let expiresAt: Date
    public init(name: String, holder: String, expiresAt: Date) {
        self.name = name
        self.holder = holder
        self.expiresAt = expiresAt
    }
}

/// Time-bounded leases, so exactly one of several replicas runs scheduled work; a crashed holder's lease
/// lapses at `expiresAt` and another replica takes over.
public protocol LeaseStore: Sendable {
    /// Takes or renews `name` for `holder` until `expiresAt`; succeeds if the lease is free, expired at `now`, or
    /// already `holder`'s. Returns whether `holder` holds it now.
    func acquireLease(_ name: String, holder: String, expiresAt: Date, now: Date) async throws -> Bool
    /// The current holder, if the lease has not expired at `now`.
    func lease(_ name: String, now: Date) async throws -> Lease?
}

/// The whole store a CA needs.
public typealias CAStore = AuthorityStore & CertificateInventory & AuditStore & LeaseStore
