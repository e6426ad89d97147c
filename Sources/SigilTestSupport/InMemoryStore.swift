import Foundation
import SigilCore
import SigilCrypto
import SigilStore

/// A `CAStore` held in memory, with the same rules as the real stores (it passes the store contract suite):
/// one active authority per role, parents and issuing authorities must exist, state changes are all or
/// nothing, the bundle sequence increases on every root insert and root revocation, keys of authorities that
/// no longer sign are erased, and audit records form a chain of keyed links. (Rows cannot be tampered with in
/// memory, so none is ever rejected.)
///
/// Fault injection: `failWrites(with:)` makes every later write throw until it is cleared.
public actor InMemoryStore: CAStore {
    private var records: [String: AuthorityRecord] = [:]
    private var keys: [String: PrivateKey] = [:]
    private var sequence: Int64 = 0
    private var settings: [String: String] = [:]
    private var inventory: [String: InventoryRecord] = [:]
    private var audit: [AuditRecord] = []
    private var auditHMACKey: [UInt8]?
    private var chainKey: AuditChainKey?
    private var writeFailure: (any Error)?
    private var leases: [String: Lease] = [:]

    /// An empty store.
    public init() {}

    /// Makes every later write throw `error` (nil: writes succeed again). Reads are not affected.
    public func failWrites(with error: (any Error)?) { writeFailure = error }

    /// Every certificate recorded so far, live or not, in issuance order.
    public var recordedCertificates: [InventoryRecord] {
        inventory.values.sorted { ($0.issuedAt, $0.serial) < ($1.issuedAt, $1.serial) }
    }

    // MARK: LeaseStore

    public func acquireLease(_ name: String, holder: String, expiresAt: Date, now: Date) async throws -> Bool {
        try checkWritable()
        if let current = leases[name], current.holder != holder, current.expiresAt > now { return false }
        leases[name] = Lease(name: name, holder: holder, expiresAt: expiresAt)
        return true
    }

    public func lease(_ name: String, now: Date) async throws -> Lease? {
        leases[name].flatMap { $0.expiresAt > now ? $0 : nil }
    }

    // MARK: AuthorityStore

    public func loadAuthorities() async throws -> AuthorityRows {
        AuthorityRows(records: records.values.sorted { ($0.createdAt, $0.id) < ($1.createdAt, $1.id) })
    }

    public func insertAuthority(_ record: AuthorityRecord, key: PrivateKey?, audit events: [AuditEvent]) async throws {
        try checkWritable()
        guard records[record.id] == nil else { throw StorageError(.conflict, reason: "authority \(record.id) exists") }
        if let parent = record.parentID, records[parent] == nil {
            throw StorageError(.conflict, reason: "parent \(parent) does not exist")
        }
        var stored = record
        stored.hasKey = key != nil
        stored.finalCRL = nil
        var updated = records
        updated[record.id] = stored
        try Self.checkOneActivePerRole(updated)
        records = updated
        keys[record.id] = key
        if record.role == .root { sequence += 1 }
        for event in events { _ = chain(event) }
    }

    public func updateAuthorityStates(
        _ changes: [(id: String, state: AuthorityState)], at time: Date, finalCRLs: [String: [UInt8]],
        audit events: [AuditEvent]
    ) async throws {
        try checkWritable()
        var updated = records
        var erased: [String] = []
        var rootsChanged = false
        for change in changes {
            guard var record = updated[change.id] else {
                throw StorageError(.notFound, reason: "no authority \(change.id)")
            }
            if record.role == .root && change.state == .revoked && record.state != .revoked { rootsChanged = true }
            record.state = change.state
            record.updatedAt = time
            if !AuthorityRecord.keepsKey(change.state) {
                record.hasKey = false
                if let final = finalCRLs[change.id] { record.finalCRL = final }
                erased.append(change.id)
            }
            updated[change.id] = record
        }
        try Self.checkOneActivePerRole(updated)
        records = updated
        for id in erased { keys[id] = nil }
        if rootsChanged { sequence += 1 }
        for event in events { _ = chain(event) }
    }

    public func authorityKey(id: String) async throws -> PrivateKey {
        guard let record = records[id] else { throw StorageError(.notFound, reason: "no authority \(id)") }
        guard let key = keys[id] else { throw StorageError(.notFound, reason: "no key stored for authority \(id)") }
        guard (try? key.publicKey().der) == record.certificate.publicKey.der else {
            throw StorageError(.corrupt, reason: "stored key of \(id) does not match its certificate")
        }
        return key
    }

    public func bundleSequence() async throws -> Int64 { sequence }

    public func setting(_ key: String) async throws -> String? { settings[key] }

    public func setSettings(_ values: [String: String]) async throws {
        try checkWritable()
        settings.merge(values) { _, new in new }
    }

    // MARK: CertificateInventory

    public func recordIssued(_ record: InventoryRecord) async throws {
        try checkWritable()
        guard inventory[record.serial.hex] == nil else {
            throw StorageError(.conflict, reason: "serial \(record.serial) already recorded")
        }
        guard records[record.authorityID] != nil else {
            throw StorageError(.conflict, reason: "authority \(record.authorityID) does not exist")
        }
        inventory[record.serial.hex] = record
    }

    public func liveCounts(at time: Date) async throws -> [String: Int] {
        live(at: time).reduce(into: [:]) { counts, record in counts[record.authorityID, default: 0] += 1 }
    }

    public func liveIdentities(at time: Date, expiringWithin horizons: [Duration]) async throws -> [IdentitySummary] {
        let known = Set(records.keys)
        return Dictionary(
            grouping: live(at: time).filter { known.contains($0.authorityID) }, by: \.spiffeID.description
        )
        .map { identity, certificates in
            IdentitySummary(
                spiffeID: identity, live: certificates.count,
                soonestExpiry: certificates.map(\.notAfter).min() ?? time,
                expiringWithin: horizons.map { horizon in certificates.filter { $0.notAfter <= time + horizon }.count })
        }.sorted { $0.spiffeID < $1.spiffeID }
    }

    public func liveCertificates(authorityID: String, at time: Date) async throws -> [InventoryRecord] {
        live(at: time).filter { $0.authorityID == authorityID }
    }

    public func liveCertificates(spiffeID: SPIFFEID, at time: Date) async throws -> [InventoryRecord] {
        live(at: time).filter { $0.spiffeID == spiffeID }
    }

    public func certificate(serial: SerialNumber) async throws -> InventoryRecord? { inventory[serial.hex] }

    public func revokeCertificate(
        serial: SerialNumber, at time: Date, audit events: [AuditEvent]
    ) async throws -> InventoryRecord {
        try checkWritable()
        guard var record = inventory[serial.hex] else {
            throw StorageError(.notFound, reason: "no certificate with serial \(serial.hex)")
        }
        guard record.revokedAt == nil else {
            throw StorageError(.conflict, reason: "certificate \(serial.hex) is already revoked")
        }
        record.revokedAt = time
        inventory[serial.hex] = record
        for event in events { _ = chain(event) }
        return record
    }

    public func revokedCertificates(authorityID: String, at time: Date) async throws -> [InventoryRecord] {
        recordedCertificates.filter { $0.authorityID == authorityID && $0.revokedAt != nil && $0.notAfter > time }
            .sorted { $0.serial.hex < $1.serial.hex }
    }

    // MARK: AuditStore

    /// Every audit record so far, in sequence order.
    public var auditLog: [AuditRecord] { audit }

    public func appendAudit(_ event: AuditEvent) async throws -> AuditRecord {
        try checkWritable()
        return chain(event)
    }

    public func commitIssuance(_ record: InventoryRecord, event: AuditEvent) async throws -> AuditRecord {
        try await recordIssued(record)
        return chain(event)
    }

    public func auditRecords(_ query: AuditQuery) async throws -> [AuditRecord] {
        // Same semantics as the SQL stores: since inclusive, until exclusive, serials compared in lowercase.
        let matching = audit.filter { record in
            let event = record.event
            return record.sequence > query.afterSequence
                && query.since.map { event.time >= $0 } != false
                && query.until.map { event.time < $0 } != false
                && query.subject.map { event.subject == $0 } != false
                && query.serial.map { event.serial == $0.lowercased() } != false
                && query.action.map { event.action == $0 } != false
                && query.outcome.map { event.outcome == $0 } != false
        }
        return Array((query.newestFirst ? matching.reversed() : matching).prefix(max(1, query.limit)))
    }

    public func auditCounts(since: Date) async throws -> [AuditCount] {
        var counts: [String: AuditCount] = [:]
        for record in audit where record.event.time >= since && [.issue, .renew, .deny].contains(record.event.action) {
            let event = record.event
            let minute = event.time.microsecondsSince1970 / 60_000_000
            let key = "\(minute) \(event.action.rawValue) \(event.code ?? "")"
            counts[key] = AuditCount(
                minute: minute, action: event.action, code: event.code, count: (counts[key]?.count ?? 0) + 1)
        }
        return Array(counts.values)
    }

    public func auditKey() async throws -> [UInt8] { currentAuditKey() }

    public func lastAuditRecord() async throws -> AuditRecord? { audit.last }

    private func currentAuditKey() -> [UInt8] {
        if let auditHMACKey { return auditHMACKey }
        // Random bytes cannot fail to come short of the DRBG failing, which no test survives anyway.
        let created = (try? SecureRandom.bytes(32)) ?? Array(repeating: 0x5a, count: 32)
        auditHMACKey = created
        return created
    }

    /// The key the chain is linked with (derived from the audit key, as in the real stores).
    public func auditChainKey() -> AuditChainKey {
        if let chainKey { return chainKey }
        let key = AuditChainKey(auditKey: currentAuditKey())
        chainKey = key
        return key
    }

    private func chain(_ event: AuditEvent) -> AuditRecord {
        let record = AuditRecord.chained(
            event, sequence: Int64(audit.count) + 1, previousHash: audit.last?.hash ?? AuditRecord.genesisHash,
            key: auditChainKey())
        audit.append(record)
        return record
    }

    // MARK: Rules

    private func live(at time: Date) -> [InventoryRecord] {
        recordedCertificates.filter { $0.notAfter > time && $0.revokedAt == nil }
    }

    private func checkWritable() throws {
        if let writeFailure { throw writeFailure }
    }

    private static func checkOneActivePerRole(_ records: [String: AuthorityRecord]) throws {
        for role in AuthorityRole.allCases {
            let active = records.values.filter { $0.role == role && $0.state == .active }
            if active.count > 1 { throw StorageError(.conflict, reason: "more than one active \(role.rawValue)") }
        }
    }
}
