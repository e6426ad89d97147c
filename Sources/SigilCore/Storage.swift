import Foundation
import SigilCrypto

/// Durable storage for authorities and their (encrypted) keys.
public protocol AuthorityStore: Sendable {
    /// Every authority, any state.
    func authorities() async throws -> [AuthorityRecord]
    /// Adds an authority; `key` is encrypted under the key-encryption key before it is written. `audit` is
    /// appended to the audit chain in the same transaction: a crash never leaves an unaudited authority.
    func insertAuthority(_ record: AuthorityRecord, key: PrivateKey?, audit: [AuditEvent]) async throws
    /// Moves authorities to new states in one transaction (e.g. activate successor + retire predecessor),
    /// with `audit` appended in that transaction.
    func updateAuthorityStates(_ changes: [(id: String, state: AuthorityState)], at time: Date, audit: [AuditEvent]) async throws
    /// Decrypts and returns the private key of authority `id`.
    func authorityKey(id: String) async throws -> PrivateKey
    /// Increases on every change of the set of roots in the bundle (SPIFFE `spiffe_sequence`).
    func bundleSequence() async throws -> Int64
    /// A deployment setting written at initialisation (trust domain, authority key type, lifetimes).
    func setting(_ key: String) async throws -> String?
    func setSettings(_ values: [String: String]) async throws
}

extension AuthorityStore {
    /// Adds an authority with no audit record (tests and fixtures).
    public func insertAuthority(_ record: AuthorityRecord, key: PrivateKey?) async throws {
        try await insertAuthority(record, key: key, audit: [])
    }

    /// Changes authority states with no audit record (tests and fixtures).
    public func updateAuthorityStates(_ changes: [(id: String, state: AuthorityState)], at time: Date) async throws {
        try await updateAuthorityStates(changes, at: time, audit: [])
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
    public var revokedAt: Date?

    public init(
        serial: SerialNumber, spiffeID: SPIFFEID, authorityID: String, notBefore: Date, notAfter: Date,
        publicKeySHA256: String, issuedAt: Date, revokedAt: Date? = nil
    ) {
        self.serial = serial
        self.spiffeID = spiffeID
        self.authorityID = authorityID
        self.notBefore = notBefore
        self.notAfter = notAfter
        self.publicKeySHA256 = publicKeySHA256
        self.issuedAt = issuedAt
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
}

/// The hash-chained audit log. Appends are serialised so the chain stays linear even with several writers.
public protocol AuditStore: Sendable {
    /// Appends `event` durably and returns its chained record.
    func appendAudit(_ event: AuditEvent) async throws -> AuditRecord
    /// Records an issued certificate and its audit event in one durable transaction: neither exists without
    /// the other, and the certificate may leave only after this returns.
    func commitIssuance(_ inventory: InventoryRecord, event: AuditEvent) async throws -> AuditRecord
    /// Records matching `query`, in sequence order.
    func auditRecords(_ query: AuditQuery) async throws -> [AuditRecord]
    /// The per-deployment key for token HMACs (created on first use, kept sealed in the store).
    func auditKey() async throws -> [UInt8]
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
