import Foundation
import GRDB
import SigilCore
import SigilCrypto
import Synchronization

/// The embedded store: one SQLite file in WAL mode with `synchronous=FULL`, so a committed write
/// survives power loss before the caller is told it succeeded.
public final class SQLiteStore: SigilStoreBackend {
    let pool: DatabasePool
    let kek: KeyEncryptionKey
    let integrity: AuthorityIntegrity
    let chainKey: AuditChainKey
    public let path: String
    private let commits: GroupCommit
    private let observers = AuditObservers()

    /// Opens (creating and migrating if needed) the database at `path`; the file is made 0600.
    /// - Parameter clock: times the records the store writes on its own (the one-time re-link of the chain).
    public init(path: String, kek: KeyEncryptionKey, clock: any WallClock = SystemClock()) throws {
        var configuration = Configuration()
        configuration.prepareDatabase { db in
            try db.execute(sql: "PRAGMA synchronous = FULL")
            try db.execute(sql: "PRAGMA foreign_keys = ON")
            // The writer keeps 32 MiB of pages (SQLite's default is 2 MiB): certificate serials and
            // identities are random keys, so with a million rows each insert otherwise reads index pages back
            // from the file (scripts/bench: about 15 % more CPU per issuance at 1,000,000 rows). Readers keep the default.
            if !db.configuration.readonly {
                try db.execute(sql: "PRAGMA cache_size = -32768")
                // Checkpoints run on their own connection (`WALCheckpointer`); the writer checkpoints only
                // as a backstop, past 32 MiB of WAL.
                try db.execute(sql: "PRAGMA wal_autocheckpoint = 8192")
            }
        }
        configuration.busyMode = .timeout(10)
        let integrity = AuthorityIntegrity(kek: kek)
        let chainKey: AuditChainKey
        let upgraded: [AuditRecord]
        do {
            pool = try DatabasePool(path: path, configuration: configuration)
            try Self.migrator.migrate(pool)
            (chainKey, upgraded) = try pool.write { db in
                let chainKey = AuditChainKey(auditKey: try Self.auditKey(db, kek: kek))
                return (chainKey, try Self.upgradeFormat(db, integrity: integrity, chainKey: chainKey, now: clock.now))
            }
        } catch let error as StorageError {
            throw error
        } catch {
            throw StorageError(.unavailable, reason: "cannot open SQLite store \(path): \(error)")
        }
        for suffix in ["", "-wal", "-shm"] where FileManager.default.fileExists(atPath: path + suffix) {
            chmod(path + suffix, 0o600)
        }
        self.kek = kek
        self.integrity = integrity
        self.chainKey = chainKey
        self.path = path
        let pool = self.pool
        let observers = self.observers
        observers.notify(upgraded)
        let checkpointer = try? WALCheckpointer(path: path)
        commits = GroupCommit { items in
            do {
                let records = try await pool.write { db in try Self.appendBatch(items, db, key: chainKey) }
                observers.notify(records)
                checkpointer?.committed(items.count)
                return records
            } catch let error as DatabaseError where error.resultCode == .SQLITE_CONSTRAINT {
                throw StorageError(.conflict, reason: "SQLite constraint: \(error.message ?? "")")
            } catch {
                throw StorageError(.unavailable, reason: "SQLite audit write failed: \(error)")
            }
        }
    }

    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1-authorities-inventory") { db in
            try db.execute(
                sql: """
                    CREATE TABLE authorities (
                        id TEXT PRIMARY KEY,
                        role TEXT NOT NULL CHECK (role IN ('root', 'intermediate')),
                        state TEXT NOT NULL CHECK (state IN ('prepared', 'active', 'retired', 'tainted', 'revoked')),
                        certificate BLOB NOT NULL,
                        parent_id TEXT REFERENCES authorities(id),
                        is_upstream INTEGER NOT NULL DEFAULT 0,
                        sealed_key BLOB,
                        created_at REAL NOT NULL,
                        updated_at REAL NOT NULL
                    );
                    -- At most one active authority per role, enforced by the database itself.
                    CREATE UNIQUE INDEX authorities_one_active ON authorities(role) WHERE state = 'active';
                    CREATE TABLE certificates (
                        serial TEXT PRIMARY KEY,
                        spiffe_id TEXT NOT NULL,
                        authority_id TEXT NOT NULL REFERENCES authorities(id),
                        not_before REAL NOT NULL,
                        not_after REAL NOT NULL,
                        key_sha256 TEXT NOT NULL,
                        issued_at REAL NOT NULL,
                        revoked_at REAL
                    );
                    CREATE INDEX certificates_by_identity ON certificates(spiffe_id, not_after);
                    CREATE INDEX certificates_by_authority ON certificates(authority_id, not_after);
                    CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
                    INSERT INTO meta (key, value) VALUES ('bundle_sequence', 0);
                    CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
                    """)
        }
        migrator.registerMigration("v2-audit") { db in
            try db.execute(
                sql: """
                    CREATE TABLE audit (
                        seq INTEGER PRIMARY KEY,
                        time_us INTEGER NOT NULL,
                        actor TEXT NOT NULL,
                        action TEXT NOT NULL,
                        outcome TEXT NOT NULL,
                        code TEXT,
                        reason TEXT,
                        subject TEXT,
                        serial TEXT,
                        authority_id TEXT,
                        key_sha256 TEXT,
                        request_id TEXT,
                        client_address TEXT,
                        token_hmac TEXT,
                        prev_hash TEXT NOT NULL,
                        hash TEXT NOT NULL
                    );
                    CREATE INDEX audit_by_time ON audit(time_us);
                    CREATE INDEX audit_by_subject ON audit(subject);
                    CREATE INDEX audit_by_serial ON audit(serial);
                    """)
        }
        migrator.registerMigration("v3-leases") { db in
            try db.execute(sql: "CREATE TABLE leases (name TEXT PRIMARY KEY, holder TEXT NOT NULL, expires_at REAL NOT NULL)")
        }
        // An index on (spiffe_id, not_after) put every issuance at its identity's own spot: with 1,000
        // identities one more dirty page per issuance in each commit, the WAL and each checkpoint, for a
        // lookup no issuance makes. `liveCertificates(spiffeID:)` reads through certificates_by_authority.
        migrator.registerMigration("v4-no-identity-index") { db in
            try db.execute(sql: "DROP INDEX IF EXISTS certificates_by_identity")
        }
        // Trust hardening: authority rows carry a MAC and, once their key is erased, their final CRL;
        // certificates record when their identity was last proven with a token (NULL: at issuance); revoked
        // certificates are found per authority without reading its live range.
        migrator.registerMigration("v5-trust") { db in
            try db.execute(
                sql: """
                    ALTER TABLE authorities ADD COLUMN mac TEXT;
                    ALTER TABLE authorities ADD COLUMN final_crl BLOB;
                    ALTER TABLE certificates ADD COLUMN authenticated_at REAL;
                    CREATE INDEX certificates_revoked ON certificates(authority_id) WHERE revoked_at IS NOT NULL;
                    """)
        }
        return migrator
    }

    /// Brings a store written by an earlier version to the current format, once: every authority row gets its
    /// MAC, and a chain of SHA-256 links is re-linked under the keyed link. Returns the records appended.
    static func upgradeFormat(_ db: Database, integrity: AuthorityIntegrity, chainKey: AuditChainKey, now: Date) throws -> [AuditRecord] {
        if try setting(db, StoreFormat.authorityMACKey) == nil {
            for row in try Row.fetchAll(db, sql: "SELECT * FROM authorities") {
                try db.execute(
                    sql: "UPDATE authorities SET mac = ? WHERE id = ?", arguments: [integrity.tag(fields(row)), row["id"] as String])
            }
            try setSetting(db, StoreFormat.authorityMACKey, "v1")
        }
        guard try setting(db, StoreFormat.auditChainKey) != StoreFormat.auditChainKeyed else { return [] }
        var relinker = AuditRelinker(key: chainKey)
        var after: Int64 = 0
        while true {
            let page = try Row.fetchAll(db, sql: "SELECT * FROM audit WHERE seq > ? ORDER BY seq LIMIT 10000", arguments: [after])
            for row in page {
                let record = relinker.relink(try auditRecord(row))
                try db.execute(
                    sql: "UPDATE audit SET prev_hash = ?, hash = ? WHERE seq = ?",
                    arguments: [record.previousHash, record.hash, record.sequence])
            }
            guard let last = page.last else { break }
            after = last["seq"]
        }
        try setSetting(db, StoreFormat.auditChainKey, StoreFormat.auditChainKeyed)
        guard relinker.count > 0 else { return [] }
        return try appendBatch(GroupCommit.Item.events([relinker.completion(at: now)]), db, key: chainKey)
    }

    // MARK: LeaseStore

    public func acquireLease(_ name: String, holder: String, expiresAt: Date, now: Date) async throws -> Bool {
        try await write { db in
            try db.execute(
                sql: """
                    INSERT INTO leases (name, holder, expires_at) VALUES (?, ?, ?)
                    ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
                    WHERE leases.holder = excluded.holder OR leases.expires_at <= ?
                    """,
                arguments: [name, holder, expiresAt.timeIntervalSince1970, now.timeIntervalSince1970])
            return try String.fetchOne(db, sql: "SELECT holder FROM leases WHERE name = ?", arguments: [name]) == holder
        }
    }

    public func lease(_ name: String, now: Date) async throws -> Lease? {
        try await read { db in
            guard let row = try Row.fetchOne(db, sql: "SELECT holder, expires_at FROM leases WHERE name = ?", arguments: [name]) else {
                return nil
            }
            let expiresAt = Date(timeIntervalSince1970: row["expires_at"])
            return expiresAt > now ? Lease(name: name, holder: row["holder"], expiresAt: expiresAt) : nil
        }
    }

    // MARK: AuditStore

    /// Calls `observer` with every batch of records after it is committed (the streaming sink). An observer
    /// must not block: the commit path waits for it.
    public func observeAudit(_ observer: @escaping @Sendable ([AuditRecord]) -> Void) {
        observers.add(observer)
    }

    public func appendAudit(_ event: AuditEvent) async throws -> AuditRecord {
        try await commits.submit(.init(inventory: nil, event: event))
    }

    public func commitIssuance(_ inventory: InventoryRecord, event: AuditEvent) async throws -> AuditRecord {
        try await commits.submit(.init(inventory: inventory, event: event))
    }

    /// Appends a batch in the caller's write transaction, continuing the chain from its last record.
    /// Statements on the issuance path are prepared once per connection (`cachedStatement`): SQLite's
    /// parser was 3 % of the server's CPU.
    static func appendBatch(_ items: [GroupCommit.Item], _ db: Database, key: AuditChainKey) throws -> [AuditRecord] {
        let last = try Row.fetchOne(try db.cachedStatement(sql: "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1"))
        var sequence: Int64 = last?["seq"] ?? 0
        var previous: String = last?["hash"] ?? AuditRecord.genesisHash
        var records: [AuditRecord] = []
        for item in items {
            if let inventory = item.inventory { try insert(inventory, db) }
            sequence += 1
            let record = AuditRecord.chained(item.event, sequence: sequence, previousHash: previous, key: key)
            let event = record.event
            try db.cachedStatement(
                sql: """
                    INSERT INTO audit (seq, time_us, actor, action, outcome, code, reason, subject, serial, authority_id, key_sha256,
                                       request_id, client_address, token_hmac, prev_hash, hash)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                    """
            ).execute(
                arguments: [
                    record.sequence, event.time.microsecondsSince1970, event.actor, event.action.rawValue, event.outcome.rawValue,
                    event.code, event.reason, event.subject, event.serial, event.authorityID, event.publicKeySHA256, event.requestID,
                    event.clientAddress, event.tokenHMAC, record.previousHash, record.hash,
                ])
            previous = record.hash
            records.append(record)
        }
        return records
    }

    public func auditRecords(_ query: AuditQuery) async throws -> [AuditRecord] {
        var conditions = ["seq > ?"]
        var arguments: [(any DatabaseValueConvertible)?] = [query.afterSequence]
        if let since = query.since { conditions.append("time_us >= ?"); arguments.append(since.microsecondsSince1970) }
        if let until = query.until { conditions.append("time_us < ?"); arguments.append(until.microsecondsSince1970) }
        if let subject = query.subject { conditions.append("subject = ?"); arguments.append(subject) }
        if let serial = query.serial { conditions.append("serial = ?"); arguments.append(serial.lowercased()) }
        if let action = query.action { conditions.append("action = ?"); arguments.append(action.rawValue) }
        if let outcome = query.outcome { conditions.append("outcome = ?"); arguments.append(outcome.rawValue) }
        let sql = "SELECT * FROM audit WHERE \(conditions.joined(separator: " AND ")) ORDER BY seq LIMIT \(max(1, query.limit))"
        let statementArguments = StatementArguments(arguments)
        return try await read { db in
            try Row.fetchAll(db, sql: sql, arguments: statementArguments).map(Self.auditRecord)
        }
    }

    static func auditRecord(_ row: Row) throws -> AuditRecord {
        guard let action = AuditAction(rawValue: row["action"]), let outcome = AuditOutcome(rawValue: row["outcome"]) else {
            // Keep an unknown action visible to the verifier as a hash mismatch rather than hiding the row.
            return AuditRecord(
                sequence: row["seq"], event: AuditEvent(time: Date(microsecondsSince1970: row["time_us"]), actor: row["actor"], action: .deny),
                previousHash: row["prev_hash"], hash: "unknown action or outcome")
        }
        let event = AuditEvent(
            time: Date(microsecondsSince1970: row["time_us"]), actor: row["actor"], action: action, outcome: outcome, code: row["code"],
            reason: row["reason"], subject: row["subject"], serial: row["serial"], authorityID: row["authority_id"],
            publicKeySHA256: row["key_sha256"], requestID: row["request_id"], clientAddress: row["client_address"],
            tokenHMAC: row["token_hmac"])
        return AuditRecord(sequence: row["seq"], event: event, previousHash: row["prev_hash"], hash: row["hash"])
    }

    public func auditKey() async throws -> [UInt8] {
        let kek = self.kek
        return try await write { db in try Self.auditKey(db, kek: kek) }
    }

    /// The sealed audit key, created on first use.
    static func auditKey(_ db: Database, kek: KeyEncryptionKey) throws -> [UInt8] {
        let fresh = try kek.seal(try SecureRandom.bytes(32), context: "audit-key")
        try db.execute(
            sql: "INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING",
            arguments: [StoreFormat.auditKey, Data(fresh).base64EncodedString()])
        let stored = try setting(db, StoreFormat.auditKey) ?? ""
        return try kek.open(Array(Data(base64Encoded: stored) ?? Data()), context: "audit-key")
    }

    public func lastAuditRecord() async throws -> AuditRecord? {
        try await read { db in
            try Row.fetchOne(db, sql: "SELECT * FROM audit ORDER BY seq DESC LIMIT 1").map(Self.auditRecord)
        }
    }

    // MARK: AuthorityStore

    public func loadAuthorities() async throws -> AuthorityRows {
        let integrity = self.integrity
        return try await read { db in
            var records: [AuthorityRecord] = []
            var rejected: [RejectedAuthority] = []
            for row in try Row.fetchAll(db, sql: "SELECT * FROM authorities ORDER BY created_at, id") {
                switch integrity.record(
                    Self.fields(row), tag: row["mac"], createdAt: Date(timeIntervalSince1970: row["created_at"]),
                    updatedAt: Date(timeIntervalSince1970: row["updated_at"]))
                {
                case .success(let record): records.append(record)
                case .failure(let rejection): rejected.append(rejection)
                }
            }
            return AuthorityRows(records: records, rejected: rejected)
        }
    }

    public func insertAuthority(_ record: AuthorityRecord, key: PrivateKey?, audit: [AuditEvent]) async throws {
        let sealed = try key.map { try kek.seal($0.pkcs8DER(), context: record.id) }
        let mac = integrity.tag(
            .init(
                id: record.id, role: record.role.rawValue, state: record.state.rawValue, certificate: record.certificate.der,
                parentID: record.parentID, isUpstream: record.isUpstream, hasKey: sealed != nil, finalCRL: nil))
        let chainKey = self.chainKey
        let records = try await write { db in
            try db.execute(
                sql: """
                    INSERT INTO authorities (id, role, state, certificate, parent_id, is_upstream, sealed_key, created_at, updated_at, mac)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                    """,
                arguments: [
                    record.id, record.role.rawValue, record.state.rawValue, Data(record.certificate.der), record.parentID,
                    record.isUpstream, sealed.map { Data($0) }, record.createdAt.timeIntervalSince1970,
                    record.updatedAt.timeIntervalSince1970, mac,
                ])
            if record.role == .root { try Self.bumpBundleSequence(db) }
            return try Self.appendBatch(GroupCommit.Item.events(audit), db, key: chainKey)
        }
        if !records.isEmpty { observers.notify(records) }
    }

    public func updateAuthorityStates(
        _ changes: [(id: String, state: AuthorityState)], at time: Date, finalCRLs: [String: [UInt8]], audit: [AuditEvent]
    ) async throws {
        let integrity = self.integrity
        let chainKey = self.chainKey
        let records = try await write { db in
            var rootsChanged = false
            // Demotions first so the one-active-per-role index holds at every statement.
            for change in changes.sorted(by: { $0.state != .active && $1.state == .active }) {
                guard let row = try Row.fetchOne(db, sql: "SELECT * FROM authorities WHERE id = ?", arguments: [change.id]) else {
                    throw StorageError(.notFound, reason: "no authority \(change.id)")
                }
                var fields = Self.fields(row)
                guard integrity.check(fields, tag: row["mac"]) else {
                    throw StorageError(.corrupt, reason: "authority \(change.id) fails its integrity check: refusing to change it")
                }
                if fields.role == "root" && change.state == .revoked && fields.state != "revoked" { rootsChanged = true }
                fields.state = change.state.rawValue
                let erase = !AuthorityRecord.keepsKey(change.state)
                if erase {
                    fields.hasKey = false
                    if let final = finalCRLs[change.id] { fields.finalCRL = final }
                }
                try db.execute(
                    sql: """
                        UPDATE authorities SET state = ?, updated_at = ?, sealed_key = CASE WHEN ? THEN NULL ELSE sealed_key END,
                            final_crl = ?, mac = ? WHERE id = ?
                        """,
                    arguments: [
                        change.state.rawValue, time.timeIntervalSince1970, erase, fields.finalCRL.map { Data($0) }, integrity.tag(fields),
                        change.id,
                    ])
            }
            if rootsChanged { try Self.bumpBundleSequence(db) }
            return try Self.appendBatch(GroupCommit.Item.events(audit), db, key: chainKey)
        }
        if !records.isEmpty { observers.notify(records) }
    }

    public func authorityKey(id: String) async throws -> PrivateKey {
        let integrity = self.integrity
        let found = try await read { db -> (fields: AuthorityIntegrity.Fields, sealed: Data?, mac: String?)? in
            guard let row = try Row.fetchOne(db, sql: "SELECT * FROM authorities WHERE id = ?", arguments: [id]) else { return nil }
            return (Self.fields(row), row["sealed_key"], row["mac"])
        }
        guard let found else { throw StorageError(.notFound, reason: "no authority \(id)") }
        return try integrity.openKey(found.sealed, fields: found.fields, mac: found.mac, kek: kek)
    }

    public func bundleSequence() async throws -> Int64 {
        try await read { db in try Int64.fetchOne(db, sql: "SELECT value FROM meta WHERE key = 'bundle_sequence'") ?? 0 }
    }

    public func setting(_ key: String) async throws -> String? {
        try await read { db in try Self.setting(db, key) }
    }

    public func setSettings(_ values: [String: String]) async throws {
        try await write { db in
            for (key, value) in values { try Self.setSetting(db, key, value) }
        }
    }

    static func setting(_ db: Database, _ key: String) throws -> String? {
        try String.fetchOne(db, sql: "SELECT value FROM settings WHERE key = ?", arguments: [key])
    }

    static func setSetting(_ db: Database, _ key: String, _ value: String) throws {
        try db.execute(
            sql: "INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            arguments: [key, value])
    }

    static func bumpBundleSequence(_ db: Database) throws {
        try db.execute(sql: "UPDATE meta SET value = value + 1 WHERE key = 'bundle_sequence'")
    }

    /// The MAC-covered fields of an authority row.
    static func fields(_ row: Row) -> AuthorityIntegrity.Fields {
        let certificate: Data = row["certificate"]
        let finalCRL: Data? = row["final_crl"]
        let sealed: Data? = row["sealed_key"]
        return AuthorityIntegrity.Fields(
            id: row["id"], role: row["role"], state: row["state"], certificate: Array(certificate), parentID: row["parent_id"],
            isUpstream: row["is_upstream"], hasKey: sealed != nil, finalCRL: finalCRL.map(Array.init))
    }

    // MARK: CertificateInventory

    public func recordIssued(_ record: InventoryRecord) async throws {
        try await write { db in try Self.insert(record, db) }
    }

    static func insert(_ record: InventoryRecord, _ db: Database) throws {
        // authenticated_at stays NULL when it equals issued_at (every token issuance): it reads back as issued_at.
        try db.cachedStatement(
            sql: """
                INSERT INTO certificates (serial, spiffe_id, authority_id, not_before, not_after, key_sha256, issued_at, revoked_at,
                                          authenticated_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                """
        ).execute(
            arguments: [
                record.serial.hex, record.spiffeID.description, record.authorityID, record.notBefore.timeIntervalSince1970,
                record.notAfter.timeIntervalSince1970, record.publicKeySHA256, record.issuedAt.timeIntervalSince1970,
                record.revokedAt?.timeIntervalSince1970,
                record.authenticatedAt == record.issuedAt ? nil : record.authenticatedAt.timeIntervalSince1970,
            ])
    }

    public func certificate(serial: SerialNumber) async throws -> InventoryRecord? {
        try await read { db in
            try Row.fetchOne(db, sql: "SELECT * FROM certificates WHERE serial = ?", arguments: [serial.hex]).map(Self.inventory)
        }
    }

    public func revokeCertificate(serial: SerialNumber, at time: Date, audit: [AuditEvent]) async throws -> InventoryRecord {
        let chainKey = self.chainKey
        let (record, records) = try await write { db -> (InventoryRecord, [AuditRecord]) in
            guard let row = try Row.fetchOne(db, sql: "SELECT * FROM certificates WHERE serial = ?", arguments: [serial.hex]) else {
                throw StorageError(.notFound, reason: "no certificate with serial \(serial.hex)")
            }
            var record = try Self.inventory(row)
            guard record.revokedAt == nil else { throw StorageError(.conflict, reason: "certificate \(serial.hex) is already revoked") }
            try db.execute(
                sql: "UPDATE certificates SET revoked_at = ? WHERE serial = ?", arguments: [time.timeIntervalSince1970, serial.hex])
            record.revokedAt = time
            return (record, try Self.appendBatch(GroupCommit.Item.events(audit), db, key: chainKey))
        }
        if !records.isEmpty { observers.notify(records) }
        return record
    }

    public func revokedCertificates(authorityID: String, at time: Date) async throws -> [InventoryRecord] {
        try await read { db in
            try Row.fetchAll(
                db,
                sql: """
                    SELECT * FROM certificates INDEXED BY certificates_revoked
                    WHERE authority_id = ? AND revoked_at IS NOT NULL AND not_after > ? ORDER BY serial
                    """,
                arguments: [authorityID, time.timeIntervalSince1970]
            ).map(Self.inventory)
        }
    }

    public func liveCounts(at time: Date) async throws -> [String: Int] {
        try await read { db in
            let rows = try Row.fetchAll(
                db,
                sql: "SELECT authority_id, COUNT(*) AS n FROM certificates WHERE not_after > ? AND revoked_at IS NULL GROUP BY authority_id",
                arguments: [time.timeIntervalSince1970])
            return Dictionary(uniqueKeysWithValues: rows.map { ($0["authority_id"] as String, $0["n"] as Int) })
        }
    }

    public func liveCertificates(authorityID: String, at time: Date) async throws -> [InventoryRecord] {
        try await read { db in
            try Row.fetchAll(
                db,
                sql: "SELECT * FROM certificates WHERE authority_id = ? AND not_after > ? AND revoked_at IS NULL ORDER BY issued_at",
                arguments: [authorityID, time.timeIntervalSince1970]
            ).map(Self.inventory)
        }
    }

    /// Through certificates_by_authority (one range of live certificates per authority): there is no index
    /// by identity (migration v4).
    static let liveCertificatesOfIdentity = """
        SELECT * FROM certificates
        WHERE authority_id IN (SELECT id FROM authorities) AND not_after > ? AND spiffe_id = ? AND revoked_at IS NULL
        ORDER BY issued_at
        """

    public func liveCertificates(spiffeID: SPIFFEID, at time: Date) async throws -> [InventoryRecord] {
        try await read { db in
            try Row.fetchAll(
                db,
                sql: Self.liveCertificatesOfIdentity,
                arguments: [time.timeIntervalSince1970, spiffeID.description]
            ).map(Self.inventory)
        }
    }

    static func inventory(_ row: Row) throws -> InventoryRecord {
        guard let serial = SerialNumber(hex: row["serial"]) else { throw StorageError(.corrupt, reason: "bad serial in inventory") }
        let revoked: Double? = row["revoked_at"]
        let authenticated: Double? = row["authenticated_at"]
        return InventoryRecord(
            serial: serial, spiffeID: try SPIFFEID(parsing: row["spiffe_id"]), authorityID: row["authority_id"],
            notBefore: Date(timeIntervalSince1970: row["not_before"]), notAfter: Date(timeIntervalSince1970: row["not_after"]),
            publicKeySHA256: row["key_sha256"], issuedAt: Date(timeIntervalSince1970: row["issued_at"]),
            authenticatedAt: authenticated.map(Date.init(timeIntervalSince1970:)), revokedAt: revoked.map(Date.init(timeIntervalSince1970:)))
    }

    // MARK: Access

    func read<T: Sendable>(_ body: @Sendable @escaping (Database) throws -> T) async throws -> T {
        do {
            return try await pool.read(body)
        } catch let error as StorageError {
            throw error
        } catch let error as CAError {
            throw error
        } catch {
            throw StorageError(.unavailable, reason: "SQLite read failed: \(error)")
        }
    }

    func write<T: Sendable>(_ body: @Sendable @escaping (Database) throws -> T) async throws -> T {
        do {
            return try await pool.write(body)
        } catch let error as StorageError {
            throw error
        } catch let error as DatabaseError where error.resultCode == .SQLITE_CONSTRAINT {
            throw StorageError(.conflict, reason: "SQLite constraint: \(error.message ?? "")")
        } catch {
            throw StorageError(.unavailable, reason: "SQLite write failed: \(error)")
        }
    }
}

/// Callbacks told about committed audit records.
final class AuditObservers: Sendable {
    private let list = Mutex<[@Sendable ([AuditRecord]) -> Void]>([])
    func add(_ observer: @escaping @Sendable ([AuditRecord]) -> Void) { list.withLock { $0.append(observer) } }
    func notify(_ records: [AuditRecord]) { for observer in list.withLock({ $0 }) { observer(records) } }
}

/// Checkpoints the WAL on a connection of its own. SQLite otherwise runs the checkpoint inside the commit
/// that crosses `wal_autocheckpoint`, so that commit, and every issuance waiting on it, also waited for the
/// checkpoint to copy pages and fsync the database file. PASSIVE checkpoints here run beside the writer
/// without blocking it and copy most frames; the writer's own checkpoint (at 32 MiB of WAL, which bounds
/// the file) then has little left to copy. scripts/bench: on a store of a million rows 0.98× the throughput
/// of a small one, against 0.81× with SQLite's automatic checkpoints. One runs at a time, after every
/// `interval` committed items.
final class WALCheckpointer: Sendable {
    private let queue: DatabaseQueue
    private let interval: Int
    /// Items committed since the last checkpoint started, and whether one is running.
    private let state = Mutex<(items: Int, running: Bool)>((0, false))

    init(path: String, interval: Int = 256) throws {
        var configuration = Configuration()
        configuration.prepareDatabase { db in try db.execute(sql: "PRAGMA synchronous = FULL") }
        configuration.busyMode = .timeout(10)
        queue = try DatabaseQueue(path: path, configuration: configuration)
        self.interval = interval
    }

    /// Counts `count` committed items; starts a checkpoint when `interval` have accumulated and none is
    /// running, and returns it (tests await it).
    @discardableResult
    func committed(_ count: Int) -> Task<Void, Never>? {
        let start = state.withLock { state -> Bool in
            state.items += count
            guard state.items >= interval, !state.running else { return false }
            state = (0, true)
            return true
        }
        guard start else { return nil }
        return Task {
            // A checkpoint that fails (busy with the writer's own) is retried after the next interval.
            _ = try? await queue.writeWithoutTransaction { db in try db.checkpoint(.passive) }
            state.withLock { $0.running = false }
        }
    }
}
