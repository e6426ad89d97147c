import Foundation
import SigilCore
import SigilCrypto

/// A value bound to a `?` placeholder.
enum SQLValue: Sendable {
    case text(String)
    case int64(Int64)
    case double(Double)
    case bool(Bool)
    case blob([UInt8])
    case null

    static func text(_ value: String?) -> SQLValue { value.map { .text($0) } ?? .null }
    static func double(_ value: Double?) -> SQLValue { value.map { .double($0) } ?? .null }
    static func blob(_ value: [UInt8]?) -> SQLValue { value.map { .blob($0) } ?? .null }
}

/// One row as both backends read it (GRDB's `Row`, postgres-nio's `PostgresRandomAccessRow`), so that rows
/// are mapped to records once (`StoreSQL`).
protocol StoreRow {
    func text(_ column: String) throws -> String
    func optionalText(_ column: String) throws -> String?
    func double(_ column: String) throws -> Double
    func optionalDouble(_ column: String) throws -> Double?
    func int64(_ column: String) throws -> Int64
    func bool(_ column: String) throws -> Bool
    func optionalBlob(_ column: String) throws -> [UInt8]?
}

extension StoreRow {
    func blob(_ column: String) throws -> [UInt8] {
        guard let bytes = try optionalBlob(column) else { throw StorageError(.corrupt, reason: "\(column) is NULL") }
        return bytes
    }
}

/// Every statement of the stores, once, with `?` placeholders (`SQLDialect.placeholders` numbers them for
/// PostgreSQL), and the mapping of rows to records. The backends keep only transport, dialect and errors.
enum StoreSQL {
    // MARK: Authorities

    static let selectAuthorities = "SELECT * FROM authorities ORDER BY created_at, id"
    static let selectAuthority = "SELECT * FROM authorities WHERE id = ?"

    static func insertAuthority(_ record: AuthorityRecord, sealedKey: [UInt8]?, mac: String) -> (String, [SQLValue]) {
        (
            """
            INSERT INTO authorities (id, role, state, certificate, parent_id, is_upstream, sealed_key, created_at, updated_at, mac)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            """,
            [
                .text(record.id), .text(record.role.rawValue), .text(record.state.rawValue),
                .blob(record.certificate.der),
                .text(record.parentID), .bool(record.isUpstream), .blob(sealedKey),
                .double(record.createdAt.timeIntervalSince1970),
                .double(record.updatedAt.timeIntervalSince1970), .text(mac),
            ]
        )
    }

    /// The change of one authority's state; the key is erased in the same statement when `erase`.
    static func updateAuthority(
        _ fields: AuthorityIntegrity.Fields, erase: Bool, mac: String, at time: Date
    ) -> (String, [SQLValue]) {
        (
            """
            UPDATE authorities SET state = ?, updated_at = ?, sealed_key = CASE WHEN ? THEN NULL ELSE sealed_key END, final_crl = ?, mac = ?
            WHERE id = ?
            """,
            [
                .text(fields.state), .double(time.timeIntervalSince1970), .bool(erase), .blob(fields.finalCRL),
                .text(mac), .text(fields.id),
            ]
        )
    }

    static let bumpBundleSequence = "UPDATE meta SET value = value + 1 WHERE key = 'bundle_sequence'"
    static let selectBundleSequence = "SELECT value FROM meta WHERE key = 'bundle_sequence'"
    static let setAuthorityMAC = "UPDATE authorities SET mac = ? WHERE id = ?"

    /// The MAC-covered fields of an authority row.
    static func authorityFields(_ row: some StoreRow) throws -> AuthorityIntegrity.Fields {
        AuthorityIntegrity.Fields(
            id: try row.text("id"), role: try row.text("role"), state: try row.text("state"),
            certificate: try row.blob("certificate"),
            parentID: try row.optionalText("parent_id"), isUpstream: try row.bool("is_upstream"),
            hasKey: try row.optionalBlob("sealed_key") != nil, finalCRL: try row.optionalBlob("final_crl"))
    }

    /// The record of an authentic row, or why it is rejected.
    static func authority(
        _ row: some StoreRow, integrity: AuthorityIntegrity
    ) throws -> Result<AuthorityRecord, RejectedAuthority> {
        integrity.record(
            try authorityFields(row), tag: try row.optionalText("mac"),
            createdAt: Date(timeIntervalSince1970: try row.double("created_at")),
            updatedAt: Date(timeIntervalSince1970: try row.double("updated_at")))
    }

    // MARK: Certificates

    static func insertCertificate(_ record: InventoryRecord) -> (String, [SQLValue]) {
        (
            """
            INSERT INTO certificates (serial, spiffe_id, authority_id, not_before, not_after, key_sha256, issued_at, revoked_at, authenticated_at)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
            """,
            [
                .text(record.serial.hex), .text(record.spiffeID.description), .text(record.authorityID),
                .double(record.notBefore.timeIntervalSince1970), .double(record.notAfter.timeIntervalSince1970),
                .text(record.publicKeySHA256),
                .double(record.issuedAt.timeIntervalSince1970), .double(record.revokedAt?.timeIntervalSince1970),
                // NULL when it equals issued_at (every token issuance): it reads back as issued_at.
                .double(record.authenticatedAt == record.issuedAt ? nil : record.authenticatedAt.timeIntervalSince1970),
            ]
        )
    }

    static let selectCertificate = "SELECT * FROM certificates WHERE serial = ?"
    static let revokeCertificate = "UPDATE certificates SET revoked_at = ? WHERE serial = ?"
    static let revokedCertificates = """
        SELECT * FROM certificates WHERE authority_id = ? AND revoked_at IS NOT NULL AND not_after > ? ORDER BY serial
        """
    static let liveCounts = """
        SELECT authority_id, COUNT(*) AS n FROM certificates WHERE not_after > ? AND revoked_at IS NULL GROUP BY authority_id
        """
    static let liveByAuthority = """
        SELECT * FROM certificates WHERE authority_id = ? AND not_after > ? AND revoked_at IS NULL ORDER BY issued_at
        """
    /// Through certificates_by_authority (one range of live certificates per authority): there is no index by
    /// identity (migration v4).
    static let liveByIdentity = """
        SELECT * FROM certificates
        WHERE authority_id IN (SELECT id FROM authorities) AND not_after > ? AND spiffe_id = ? AND revoked_at IS NULL
        ORDER BY issued_at
        """

    /// Per live identity of a known authority: its count, soonest expiry, and one count per horizon (the `?`s
    /// after the first are the horizons' ends).
    static func liveIdentities(horizons: Int) -> String {
        let within = (0..<horizons).map { ", SUM(CASE WHEN not_after <= ? THEN 1 ELSE 0 END) AS within_\($0)" }.joined()
        return """
            SELECT spiffe_id, COUNT(*) AS n, MIN(not_after) AS soonest\(within) FROM certificates
            WHERE authority_id IN (SELECT id FROM authorities) AND not_after > ? AND revoked_at IS NULL
            GROUP BY spiffe_id ORDER BY spiffe_id
            """
    }

    static func identitySummary(_ row: some StoreRow, horizons: Int) throws -> IdentitySummary {
        IdentitySummary(
            spiffeID: try row.text("spiffe_id"), live: Int(try row.int64("n")),
            soonestExpiry: Date(timeIntervalSince1970: try row.double("soonest")),
            expiringWithin: try (0..<horizons).map { Int(try row.int64("within_\($0)")) })
    }

    static let auditCounts = """
        SELECT action, code, time_us / 60000000 AS minute, COUNT(*) AS n FROM audit
        WHERE time_us >= ? AND action IN ('issue', 'renew', 'deny') GROUP BY action, code, time_us / 60000000
        """

    static func auditCount(_ row: some StoreRow) throws -> AuditCount? {
        guard let action = AuditAction(rawValue: try row.text("action")) else { return nil }
        return AuditCount(
            minute: try row.int64("minute"), action: action, code: try row.optionalText("code"),
            count: Int(try row.int64("n")))
    }

    static func inventory(_ row: some StoreRow) throws -> InventoryRecord {
        guard let serial = SerialNumber(hex: try row.text("serial")) else {
            throw StorageError(.corrupt, reason: "bad serial in inventory")
        }
        return InventoryRecord(
            serial: serial, spiffeID: try SPIFFEID(parsing: try row.text("spiffe_id")),
            authorityID: try row.text("authority_id"),
            notBefore: Date(timeIntervalSince1970: try row.double("not_before")),
            notAfter: Date(timeIntervalSince1970: try row.double("not_after")),
            publicKeySHA256: try row.text("key_sha256"),
            issuedAt: Date(timeIntervalSince1970: try row.double("issued_at")),
            authenticatedAt: try row.optionalDouble("authenticated_at").map(Date.init(timeIntervalSince1970:)),
            revokedAt: try row.optionalDouble("revoked_at").map(Date.init(timeIntervalSince1970:)))
    }

    // MARK: Audit

    static let selectLastAudit = "SELECT * FROM audit ORDER BY seq DESC LIMIT 1"
    static let selectAuditPage = "SELECT * FROM audit WHERE seq > ? ORDER BY seq LIMIT 10000"
    static let relinkAudit = "UPDATE audit SET prev_hash = ?, hash = ? WHERE seq = ?"

    static func insertAudit(_ record: AuditRecord) -> (String, [SQLValue]) {
        let event = record.event
        return (
            """
            INSERT INTO audit (seq, time_us, actor, action, outcome, code, reason, subject, serial, authority_id, key_sha256,
                               request_id, client_address, token_hmac, prev_hash, hash)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            """,
            [
                .int64(record.sequence), .int64(event.time.microsecondsSince1970), .text(event.actor),
                .text(event.action.rawValue),
                .text(event.outcome.rawValue), .text(event.code), .text(event.reason), .text(event.subject),
                .text(event.serial),
                .text(event.authorityID), .text(event.publicKeySHA256), .text(event.requestID),
                .text(event.clientAddress),
                .text(event.tokenHMAC), .text(record.previousHash), .text(record.hash),
            ]
        )
    }

    /// `sigil audit list`'s filters: since inclusive, until exclusive, serials compared in lower case.
    static func auditQuery(_ query: AuditQuery) -> (String, [SQLValue]) {
        var conditions = ["seq > ?"]
        var arguments: [SQLValue] = [.int64(query.afterSequence)]
        func add(_ condition: String, _ value: SQLValue) {
            conditions.append(condition)
            arguments.append(value)
        }
        if let since = query.since { add("time_us >= ?", .int64(since.microsecondsSince1970)) }
        if let until = query.until { add("time_us < ?", .int64(until.microsecondsSince1970)) }
        if let subject = query.subject { add("subject = ?", .text(subject)) }
        if let serial = query.serial { add("serial = ?", .text(serial.lowercased())) }
        if let action = query.action { add("action = ?", .text(action.rawValue)) }
        if let outcome = query.outcome { add("outcome = ?", .text(outcome.rawValue)) }
        return (
            "SELECT * FROM audit WHERE \(conditions.joined(separator: " AND ")) ORDER BY seq\(query.newestFirst ? " DESC" : "") LIMIT \(max(1, query.limit))",
            arguments
        )
    }

    /// A stored record. An unknown action or outcome keeps its row visible to the verifier as a link mismatch
    /// rather than hiding it.
    static func auditRecord(_ row: some StoreRow) throws -> AuditRecord {
        let time = Date(microsecondsSince1970: try row.int64("time_us"))
        guard let action = AuditAction(rawValue: try row.text("action")),
            let outcome = AuditOutcome(rawValue: try row.text("outcome"))
        else {
            return AuditRecord(
                sequence: try row.int64("seq"),
                event: AuditEvent(time: time, actor: try row.text("actor"), action: .deny),
                previousHash: try row.text("prev_hash"), hash: "unknown action or outcome")
        }
        let event = AuditEvent(
            time: time, actor: try row.text("actor"), action: action, outcome: outcome,
            code: try row.optionalText("code"),
            reason: try row.optionalText("reason"), subject: try row.optionalText("subject"),
            serial: try row.optionalText("serial"),
            authorityID: try row.optionalText("authority_id"), publicKeySHA256: try row.optionalText("key_sha256"),
            requestID: try row.optionalText("request_id"), clientAddress: try row.optionalText("client_address"),
            tokenHMAC: try row.optionalText("token_hmac"))
        return AuditRecord(
            sequence: try row.int64("seq"), event: event, previousHash: try row.text("prev_hash"),
            hash: try row.text("hash"))
    }

    // MARK: Settings and leases

    static let selectSetting = "SELECT value FROM settings WHERE key = ?"
    static let upsertSetting =
        "INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value"
    static let insertSettingIfAbsent = "INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING"
    /// Takes or renews a lease: free, expired, or already the holder's. The holder after it is read back.
    static let acquireLease = """
        INSERT INTO leases (name, holder, expires_at) VALUES (?, ?, ?)
        ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
        WHERE leases.holder = excluded.holder OR leases.expires_at <= ?
        """
    static let selectLease = "SELECT name, holder, expires_at FROM leases WHERE name = ?"

    /// The lease in `row` (`selectLease`), nil once it has lapsed at `now`.
    static func lease(_ row: some StoreRow, now: Date) throws -> Lease? {
        let expiresAt = Date(timeIntervalSince1970: try row.double("expires_at"))
        return expiresAt > now
            ? Lease(name: try row.text("name"), holder: try row.text("holder"), expiresAt: expiresAt) : nil
    }
}

extension AuthorityRows {
    /// The rows read, split into authentic records and rejected ones.
    init(_ results: [Result<AuthorityRecord, RejectedAuthority>]) {
        var records: [AuthorityRecord] = []
        var rejected: [RejectedAuthority] = []
        for result in results {
            switch result {
            case .success(let record): records.append(record)
            case .failure(let rejection): rejected.append(rejection)
            }
        }
        self.init(records: records, rejected: rejected)
    }
}

/// The audit chain's appender, pure: from the newest stored record (sequence and link) and events to the
/// records to store. Both backends call it inside the transaction that holds the chain (SQLite's writer,
/// PostgreSQL's advisory lock), so the chain stays linear.
struct AuditChainAppender {
    private(set) var sequence: Int64
    private(set) var link: String
    let key: AuditChainKey

    /// An appender after the record `last` (nil: an empty chain).
    init(after last: AuditRecord?, key: AuditChainKey) {
        sequence = last?.sequence ?? 0
        link = last?.hash ?? AuditRecord.genesisHash
        self.key = key
    }

    /// The next record of the chain, for `event`.
    mutating func append(_ event: AuditEvent) -> AuditRecord {
        sequence += 1
        let record = AuditRecord.chained(event, sequence: sequence, previousHash: link, key: key)
        link = record.hash
        return record
    }
}

/// What one authority's change of state does to its row, decided once for both backends: the row must pass its
/// integrity check; a state that no longer signs erases the key (keeping `finalCRL` when given); a root that
/// becomes revoked changes the bundle.
struct AuthorityStateChange {
    let fields: AuthorityIntegrity.Fields
    let erase: Bool
    let mac: String
    let changesBundle: Bool

    init(
        current: AuthorityIntegrity.Fields, mac currentMAC: String?, to state: AuthorityState, finalCRL: [UInt8]?,
        integrity: AuthorityIntegrity
    ) throws {
        guard integrity.check(current, tag: currentMAC) else {
            throw StorageError(
                .corrupt, reason: "authority \(current.id) fails its integrity check: refusing to change it")
        }
        var fields = current
        changesBundle =
            current.role == AuthorityRole.root.rawValue && state == .revoked
            && current.state != AuthorityState.revoked.rawValue
        fields.state = state.rawValue
        erase = !AuthorityRecord.keepsKey(state)
        if erase {
            fields.hasKey = false
            if let finalCRL { fields.finalCRL = finalCRL }
        }
        self.fields = fields
        mac = integrity.tag(fields)
    }
}
