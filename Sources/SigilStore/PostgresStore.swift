import Foundation
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import PostgresNIO
import SigilCore
import SigilCrypto
import Synchronization

/// The store on PostgreSQL, for several replicas sharing one state. Audit appends take a transaction-level
/// advisory lock, so all replicas extend one linear chain.
public final class PostgresStore: SigilStoreBackend {
    let client: PostgresClient
    let kek: KeyEncryptionKey
    let integrity: AuthorityIntegrity
    let chainKey: AuditChainKey
    let logger: Logger
    private let runTask: Task<Void, Never>
    private let commits: GroupCommit
    private let observers = AuditObservers()

    /// The lock key serialising audit appends (an arbitrary constant shared by every replica).
    static let auditLock: Int64 = 0x5167_696C_0001
    static let migrationLock: Int64 = 0x5167_696C_0002

    /// Connects to `url` (see `PostgresLocation`) and migrates.
    ///
    /// Until the server accepts a connection, every attempt logs one line with its cause (connection refused,
    /// authentication failed, TLS required or refused, database missing…) and when the next follows; after
    /// `connectTimeout` it gives up with the last cause.
    /// - Parameter clock: times the records the store writes on its own (the one-time re-link of the chain)
    ///   and the connection attempts.
    public init(
        url: String, kek: KeyEncryptionKey, logger: Logger, clock: any WallClock = SystemClock(), connectTimeout: Duration = .seconds(30)
    ) async throws {
        let location = try PostgresLocation(url: url)
        let tls = try location.tlsConfiguration()
        try await Self.waitUntilReachable(location, tls: tls, logger: logger, clock: clock, timeout: connectTimeout)
        let clientTLS: PostgresClient.Configuration.TLS
        switch location.tlsMode {
        case .disable: clientTLS = .disable
        case .prefer: clientTLS = .prefer(tls ?? .makeClientConfiguration())
        default: clientTLS = .require(tls ?? .makeClientConfiguration())
        }
        var configuration = PostgresClient.Configuration(
            host: location.host, port: location.port, username: location.user, password: location.password,
            database: location.database, tls: clientTLS)
        configuration.options.connectTimeout = .seconds(3)
        // Failures reach callers as query errors; the background logger only adds noise at start-up.
        var background = logger
        background.logLevel = .error
        let client = PostgresClient(configuration: configuration, backgroundLogger: background)
        self.client = client
        self.kek = kek
        self.logger = logger
        integrity = AuthorityIntegrity(kek: kek)
        runTask = Task { await client.run() }
        let logger = logger
        let upgraded: [AuditRecord]
        do {
            try await Self.migrate(client, logger: logger)
            let auditKey = try await Self.withDeadline(Self.operationTimeout) { try await Self.auditKey(client, kek: kek, logger: logger) }
            chainKey = AuditChainKey(auditKey: auditKey)
            let (integrity, chainKey) = (self.integrity, self.chainKey)
            upgraded = try await client.withTransaction(logger: logger) { connection in
                try await Self.upgradeFormat(connection, integrity: integrity, chainKey: chainKey, now: clock.now, logger: logger)
            }
        } catch let error as StorageError where error.code == .corrupt {
            runTask.cancel()
            throw error  // a wrong key-encryption key, not an unreachable server
        } catch {
            runTask.cancel()
            throw StorageError(.unavailable, reason: "cannot open PostgreSQL store \(location.description): \(Self.cause(of: error))")
        }
        let chainKey = self.chainKey
        let observers = self.observers
        commits = GroupCommit { items in
            do {
                let records = try await Self.withDeadline(Self.operationTimeout) {
                    try await client.withTransaction(logger: logger) { connection in
                        try await Self.appendBatch(items, connection: connection, key: chainKey, logger: logger)
                    }
                }
                // Told here, in the drain that commits batches one after another: the sink sees chain order.
                observers.notify(records)
                return records
            } catch {
                throw Self.storageError(error, "PostgreSQL audit write failed")
            }
        }
        observers.notify(upgraded)
    }

    /// Tries to open one connection until it succeeds or `timeout` passes, logging each failure with its cause.
    static func waitUntilReachable(
        _ location: PostgresLocation, tls: TLSConfiguration?, logger: Logger, clock: any WallClock, timeout: Duration
    ) async throws {
        let connectionTLS: PostgresConnection.Configuration.TLS
        do {
            switch location.tlsMode {
            case .disable: connectionTLS = .disable
            case .prefer: connectionTLS = .prefer(try NIOSSLContext(configuration: tls ?? .makeClientConfiguration()))
            default: connectionTLS = .require(try NIOSSLContext(configuration: tls ?? .makeClientConfiguration()))
            }
        } catch {
            throw StorageError(.unavailable, reason: "PostgreSQL TLS configuration for \(location.description): \(error)")
        }
        var configuration = PostgresConnection.Configuration(
            host: location.host, port: location.port, username: location.user, password: location.password,
            database: location.database, tls: connectionTLS)
        configuration.options.connectTimeout = .seconds(3)
        let deadline = clock.now + timeout
        var attempt = 1
        var delay = Duration.milliseconds(250)
        while true {
            do {
                let connection = try await PostgresConnection.connect(
                    on: MultiThreadedEventLoopGroup.singleton.any(), configuration: configuration, id: attempt, logger: logger
                ).get()
                try? await connection.close()
                return
            } catch {
                let cause = Self.cause(of: error)
                let now = clock.now
                if now >= deadline {
                    throw StorageError(
                        .unavailable,
                        reason: "PostgreSQL at \(location.description) unreachable after \(attempt) attempt(s) in \(timeout.humanReadable): \(cause)")
                }
                let next = min(delay, .milliseconds(Int64(max(0, deadline.timeIntervalSince(now)) * 1000)))
                logger.warning(
                    "PostgreSQL store not reachable; retrying",
                    metadata: [
                        "sigil.store": "\(location.description)", "sigil.attempt": "\(attempt)", "sigil.cause": "\(cause)",
                        "sigil.retry_in": "\(next.humanReadable)",
                    ])
                try await clock.sleep(until: now + next)
                attempt += 1
                delay = min(delay * 2, .seconds(5))
            }
        }
    }

    /// What went wrong, in a form an operator can act on: PSQLError's own description hides everything.
    static func cause(of error: any Error) -> String {
        switch error {
        case let error as PSQLError:
            var parts: [String] = []
            if let message = error.serverInfo?[.message] {
                parts.append("server says: \(message)" + (error.serverInfo?[.sqlState].map { " (SQLSTATE \($0))" } ?? ""))
            }
            switch error.code {
            case .sslUnsupported: parts.append("the server does not offer TLS, and the URL's sslmode requires it (sslmode=disable for plain)")
            case .failedToAddSSLHandler: parts.append("TLS could not be set up")
            case .authMechanismRequiresPassword: parts.append("the server asks for a password and the URL has none")
            case .unsupportedAuthMechanism: parts.append("the server asks for an authentication method Sigil does not speak")
            case .connectionError, .serverClosedConnection, .uncleanShutdown:
                parts.append(error.underlying.map { "\($0)" } ?? "\(error.code)")
            default:
                if parts.isEmpty { parts.append(error.underlying.map { "\(error.code): \($0)" } ?? "\(error.code)") }
            }
            return parts.joined(separator: "; ")
        case let error as PostgresTransactionError:
            return (error.beginError ?? error.closureError ?? error.commitError).map(cause(of:)) ?? "\(error)"
        case let error as NIOSSLError:
            return "TLS: \(error)"
        case let error as StorageError:
            return error.reason
        default:
            return "\(error)"
        }
    }

    deinit { runTask.cancel() }

    public func observeAudit(_ observer: @escaping @Sendable ([AuditRecord]) -> Void) { observers.add(observer) }

    // MARK: Schema

    static let migrations: [(String, String)] = [
        ("v1-authorities-inventory", """
            CREATE TABLE authorities (
                id TEXT PRIMARY KEY,
                role TEXT NOT NULL CHECK (role IN ('root', 'intermediate')),
                state TEXT NOT NULL CHECK (state IN ('prepared', 'active', 'retired', 'tainted', 'revoked')),
                certificate BYTEA NOT NULL,
                parent_id TEXT REFERENCES authorities(id),
                is_upstream BOOLEAN NOT NULL DEFAULT FALSE,
                sealed_key BYTEA,
                created_at DOUBLE PRECISION NOT NULL,
                updated_at DOUBLE PRECISION NOT NULL
            );
            CREATE UNIQUE INDEX authorities_one_active ON authorities(role) WHERE state = 'active';
            CREATE TABLE certificates (
                serial TEXT PRIMARY KEY,
                spiffe_id TEXT NOT NULL,
                authority_id TEXT NOT NULL REFERENCES authorities(id),
                not_before DOUBLE PRECISION NOT NULL,
                not_after DOUBLE PRECISION NOT NULL,
                key_sha256 TEXT NOT NULL,
                issued_at DOUBLE PRECISION NOT NULL,
                revoked_at DOUBLE PRECISION
            );
            CREATE INDEX certificates_by_identity ON certificates(spiffe_id, not_after);
            CREATE INDEX certificates_by_authority ON certificates(authority_id, not_after);
            CREATE TABLE meta (key TEXT PRIMARY KEY, value BIGINT NOT NULL);
            INSERT INTO meta (key, value) VALUES ('bundle_sequence', 0);
            CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
            """),
        ("v2-audit", """
            CREATE TABLE audit (
                seq BIGINT PRIMARY KEY,
                time_us BIGINT NOT NULL,
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
            """),
        ("v3-leases", "CREATE TABLE leases (name TEXT PRIMARY KEY, holder TEXT NOT NULL, expires_at DOUBLE PRECISION NOT NULL)"),
        // As in SQLiteStore: no issuance looks certificates up by identity, so none pays for that index.
        ("v4-no-identity-index", "DROP INDEX IF EXISTS certificates_by_identity"),
        // As in SQLiteStore's v5-trust.
        ("v5-trust", """
            ALTER TABLE authorities ADD COLUMN mac TEXT;
            ALTER TABLE authorities ADD COLUMN final_crl BYTEA;
            ALTER TABLE certificates ADD COLUMN authenticated_at DOUBLE PRECISION;
            CREATE INDEX certificates_revoked ON certificates(authority_id) WHERE revoked_at IS NOT NULL
            """),
    ]

    private static func migrate(_ client: PostgresClient, logger: Logger) async throws {
        try await client.withTransaction(logger: logger) { connection in
            // Replicas starting together: one migrates, the others wait for the lock and find nothing to do.
            try await connection.query("SELECT pg_advisory_xact_lock(\(migrationLock))", logger: logger)
            try await connection.query("CREATE TABLE IF NOT EXISTS sigil_migrations (name TEXT PRIMARY KEY)", logger: logger)
            var applied = Set<String>()
            for try await name in try await connection.query("SELECT name FROM sigil_migrations", logger: logger).decode(String.self) {
                applied.insert(name)
            }
            for (name, sql) in migrations where !applied.contains(name) {
                for statement in sql.split(separator: ";").map({ $0.trimmingCharacters(in: .whitespacesAndNewlines) }) where !statement.isEmpty {
                    try await connection.query(PostgresQuery(unsafeSQL: statement), logger: logger)
                }
                try await connection.query("INSERT INTO sigil_migrations (name) VALUES (\(name))", logger: logger)
            }
        }
    }

    // MARK: AuthorityStore

    public func loadAuthorities() async throws -> AuthorityRows {
        let integrity = self.integrity
        return try await run {
            var records: [AuthorityRecord] = []
            var rejected: [RejectedAuthority] = []
            let rows = try await self.client.query("SELECT * FROM authorities ORDER BY created_at, id", logger: self.logger)
            for try await row in rows {
                let row = row.makeRandomAccess()
                switch integrity.record(
                    try Self.fields(row), tag: try row["mac"].decode(String?.self),
                    createdAt: Date(timeIntervalSince1970: try row["created_at"].decode(Double.self)),
                    updatedAt: Date(timeIntervalSince1970: try row["updated_at"].decode(Double.self)))
                {
                case .success(let record): records.append(record)
                case .failure(let rejection): rejected.append(rejection)
                }
            }
            return AuthorityRows(records: records, rejected: rejected)
        }
    }

    /// The MAC-covered fields of an authority row.
    static func fields(_ row: PostgresRandomAccessRow) throws -> AuthorityIntegrity.Fields {
        let sealed = try row["sealed_key"].decode(ByteBuffer?.self)
        return AuthorityIntegrity.Fields(
            id: try row["id"].decode(String.self), role: try row["role"].decode(String.self), state: try row["state"].decode(String.self),
            certificate: Array(try row["certificate"].decode(ByteBuffer.self).readableBytesView),
            parentID: try row["parent_id"].decode(String?.self), isUpstream: try row["is_upstream"].decode(Bool.self),
            hasKey: sealed != nil, finalCRL: try row["final_crl"].decode(ByteBuffer?.self).map { Array($0.readableBytesView) })
    }

    public func insertAuthority(_ record: AuthorityRecord, key: PrivateKey?, audit: [AuditEvent]) async throws {
        let sealed = try key.map { ByteBuffer(bytes: try kek.seal($0.pkcs8DER(), context: record.id)) }
        let mac = integrity.tag(
            .init(
                id: record.id, role: record.role.rawValue, state: record.state.rawValue, certificate: record.certificate.der,
                parentID: record.parentID, isUpstream: record.isUpstream, hasKey: sealed != nil, finalCRL: nil))
        let chainKey = self.chainKey
        let records = try await run {
            try await self.client.withTransaction(logger: self.logger) { connection in
                try await connection.query(
                    """
                    INSERT INTO authorities (id, role, state, certificate, parent_id, is_upstream, sealed_key, created_at, updated_at, mac)
                    VALUES (\(record.id), \(record.role.rawValue), \(record.state.rawValue), \(ByteBuffer(bytes: record.certificate.der)),
                            \(record.parentID), \(record.isUpstream), \(sealed), \(record.createdAt.timeIntervalSince1970),
                            \(record.updatedAt.timeIntervalSince1970), \(mac))
                    """, logger: self.logger)
                if record.role == .root {
                    try await connection.query("UPDATE meta SET value = value + 1 WHERE key = 'bundle_sequence'", logger: self.logger)
                }
                return try await Self.appendBatch(GroupCommit.Item.events(audit), connection: connection, key: chainKey, logger: self.logger)
            }
        }
        if !records.isEmpty { observers.notify(records) }
    }

    public func updateAuthorityStates(
        _ changes: [(id: String, state: AuthorityState)], at time: Date, finalCRLs: [String: [UInt8]], audit: [AuditEvent]
    ) async throws {
        let integrity = self.integrity
        let chainKey = self.chainKey
        let records = try await run {
            try await self.client.withTransaction(logger: self.logger) { connection in
                var rootsChanged = false
                for change in changes.sorted(by: { $0.state != .active && $1.state == .active }) {
                    var found: (AuthorityIntegrity.Fields, String?)? = nil
                    for try await row in try await connection.query(
                        "SELECT * FROM authorities WHERE id = \(change.id) FOR UPDATE", logger: self.logger)
                    {
                        let row = row.makeRandomAccess()
                        found = (try Self.fields(row), try row["mac"].decode(String?.self))
                    }
                    guard var (fields, mac) = found else { throw StorageError(.notFound, reason: "no authority \(change.id)") }
                    guard integrity.check(fields, tag: mac) else {
                        throw StorageError(.corrupt, reason: "authority \(change.id) fails its integrity check: refusing to change it")
                    }
                    if fields.role == "root" && change.state == .revoked && fields.state != "revoked" { rootsChanged = true }
                    fields.state = change.state.rawValue
                    let erase = !AuthorityRecord.keepsKey(change.state)
                    if erase {
                        fields.hasKey = false
                        if let final = finalCRLs[change.id] { fields.finalCRL = final }
                    }
                    mac = integrity.tag(fields)
                    try await connection.query(
                        """
                        UPDATE authorities SET state = \(change.state.rawValue), updated_at = \(time.timeIntervalSince1970),
                            sealed_key = CASE WHEN \(erase) THEN NULL ELSE sealed_key END,
                            final_crl = \(fields.finalCRL.map { ByteBuffer(bytes: $0) }), mac = \(mac)
                        WHERE id = \(change.id)
                        """, logger: self.logger)
                }
                if rootsChanged {
                    try await connection.query("UPDATE meta SET value = value + 1 WHERE key = 'bundle_sequence'", logger: self.logger)
                }
                return try await Self.appendBatch(GroupCommit.Item.events(audit), connection: connection, key: chainKey, logger: self.logger)
            }
        }
        if !records.isEmpty { observers.notify(records) }
    }

    public func authorityKey(id: String) async throws -> PrivateKey {
        let found: (AuthorityIntegrity.Fields, Data?, String?)? = try await run {
            var found: (AuthorityIntegrity.Fields, Data?, String?)? = nil
            for try await row in try await self.client.query("SELECT * FROM authorities WHERE id = \(id)", logger: self.logger) {
                let row = row.makeRandomAccess()
                found = (
                    try Self.fields(row), try row["sealed_key"].decode(ByteBuffer?.self).map { Data($0.readableBytesView) },
                    try row["mac"].decode(String?.self)
                )
            }
            return found
        }
        guard let (fields, sealed, mac) = found else { throw StorageError(.notFound, reason: "no authority \(id)") }
        return try integrity.openKey(sealed, fields: fields, mac: mac, kek: kek)
    }

    public func bundleSequence() async throws -> Int64 {
        try await run {
            var value: Int64 = 0
            for try await sequence in try await self.client.query("SELECT value FROM meta WHERE key = 'bundle_sequence'", logger: self.logger)
                .decode(Int64.self)
            { value = sequence }
            return value
        }
    }

    public func setting(_ key: String) async throws -> String? {
        try await run {
            var result: String? = nil
            for try await value in try await self.client.query("SELECT value FROM settings WHERE key = \(key)", logger: self.logger).decode(String.self) {
                result = value
            }
            return result
        }
    }

    public func setSettings(_ values: [String: String]) async throws {
        try await run {
            try await self.client.withTransaction(logger: self.logger) { connection in
                for (key, value) in values {
                    try await connection.query(
                        "INSERT INTO settings (key, value) VALUES (\(key), \(value)) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                        logger: self.logger)
                }
            }
        }
    }

    // MARK: LeaseStore

    public func acquireLease(_ name: String, holder: String, expiresAt: Date, now: Date) async throws -> Bool {
        try await run {
            var current: String? = nil
            let rows = try await self.client.query(
                """
                INSERT INTO leases (name, holder, expires_at) VALUES (\(name), \(holder), \(expiresAt.timeIntervalSince1970))
                ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
                WHERE leases.holder = excluded.holder OR leases.expires_at <= \(now.timeIntervalSince1970)
                RETURNING holder
                """, logger: self.logger)
            for try await value in rows.decode(String.self) { current = value }
            return current == holder
        }
    }

    public func lease(_ name: String, now: Date) async throws -> Lease? {
        try await run {
            var lease: Lease? = nil
            for try await (holder, expires) in try await self.client.query(
                "SELECT holder, expires_at FROM leases WHERE name = \(name)", logger: self.logger
            ).decode((String, Double).self) {
                let expiresAt = Date(timeIntervalSince1970: expires)
                if expiresAt > now { lease = Lease(name: name, holder: holder, expiresAt: expiresAt) }
            }
            return lease
        }
    }

    // MARK: CertificateInventory

    public func recordIssued(_ record: InventoryRecord) async throws {
        try await run {
            try await self.client.withConnection { try await Self.insertInventory(record, connection: $0, logger: self.logger) }
        }
    }

    static func insertInventory(_ record: InventoryRecord, connection: PostgresConnection, logger: Logger) async throws {
        // As in SQLite: authenticated_at stays NULL when it equals issued_at.
        let authenticated = record.authenticatedAt == record.issuedAt ? nil : record.authenticatedAt.timeIntervalSince1970
        try await connection.query("""
            INSERT INTO certificates (serial, spiffe_id, authority_id, not_before, not_after, key_sha256, issued_at, revoked_at,
                                      authenticated_at)
            VALUES (\(record.serial.hex), \(record.spiffeID.description), \(record.authorityID), \(record.notBefore.timeIntervalSince1970),
                    \(record.notAfter.timeIntervalSince1970), \(record.publicKeySHA256), \(record.issuedAt.timeIntervalSince1970),
                    \(record.revokedAt?.timeIntervalSince1970), \(authenticated))
            """, logger: logger)
    }

    public func certificate(serial: SerialNumber) async throws -> InventoryRecord? {
        try await inventory("SELECT * FROM certificates WHERE serial = \(serial.hex)").first
    }

    public func revokeCertificate(serial: SerialNumber, at time: Date, audit: [AuditEvent]) async throws -> InventoryRecord {
        let chainKey = self.chainKey
        let (record, records) = try await run {
            try await self.client.withTransaction(logger: self.logger) { connection -> (InventoryRecord, [AuditRecord]) in
                var found: InventoryRecord? = nil
                for try await row in try await connection.query(
                    "SELECT * FROM certificates WHERE serial = \(serial.hex) FOR UPDATE", logger: self.logger)
                {
                    found = try Self.inventoryRecord(row.makeRandomAccess())
                }
                guard var record = found else { throw StorageError(.notFound, reason: "no certificate with serial \(serial.hex)") }
                guard record.revokedAt == nil else { throw StorageError(.conflict, reason: "certificate \(serial.hex) is already revoked") }
                try await connection.query(
                    "UPDATE certificates SET revoked_at = \(time.timeIntervalSince1970) WHERE serial = \(serial.hex)", logger: self.logger)
                record.revokedAt = time
                return (record, try await Self.appendBatch(GroupCommit.Item.events(audit), connection: connection, key: chainKey, logger: self.logger))
            }
        }
        if !records.isEmpty { observers.notify(records) }
        return record
    }

    public func revokedCertificates(authorityID: String, at time: Date) async throws -> [InventoryRecord] {
        try await inventory(
            """
            SELECT * FROM certificates
            WHERE authority_id = \(authorityID) AND revoked_at IS NOT NULL AND not_after > \(time.timeIntervalSince1970) ORDER BY serial
            """)
    }

    public func liveCounts(at time: Date) async throws -> [String: Int] {
        try await run {
            var counts: [String: Int] = [:]
            let rows = try await self.client.query(
                "SELECT authority_id, COUNT(*) FROM certificates WHERE not_after > \(time.timeIntervalSince1970) AND revoked_at IS NULL GROUP BY authority_id",
                logger: self.logger)
            for try await (authority, count) in rows.decode((String, Int64).self) { counts[authority] = Int(count) }
            return counts
        }
    }

    public func liveCertificates(authorityID: String, at time: Date) async throws -> [InventoryRecord] {
        try await inventory(
            "SELECT * FROM certificates WHERE authority_id = \(authorityID) AND not_after > \(time.timeIntervalSince1970) AND revoked_at IS NULL ORDER BY issued_at")
    }

    public func liveCertificates(spiffeID: SPIFFEID, at time: Date) async throws -> [InventoryRecord] {
        try await inventory(
            """
            SELECT * FROM certificates
            WHERE authority_id IN (SELECT id FROM authorities) AND not_after > \(time.timeIntervalSince1970)
                AND spiffe_id = \(spiffeID.description) AND revoked_at IS NULL
            ORDER BY issued_at
            """)
    }

    private func inventory(_ query: PostgresQuery) async throws -> [InventoryRecord] {
        try await run {
            var records: [InventoryRecord] = []
            for try await row in try await self.client.query(query, logger: self.logger) {
                records.append(try Self.inventoryRecord(row.makeRandomAccess()))
            }
            return records
        }
    }

    static func inventoryRecord(_ row: PostgresRandomAccessRow) throws -> InventoryRecord {
        guard let serial = SerialNumber(hex: try row["serial"].decode(String.self)) else {
            throw StorageError(.corrupt, reason: "bad serial in inventory")
        }
        return InventoryRecord(
            serial: serial, spiffeID: try SPIFFEID(parsing: try row["spiffe_id"].decode(String.self)),
            authorityID: try row["authority_id"].decode(String.self),
            notBefore: Date(timeIntervalSince1970: try row["not_before"].decode(Double.self)),
            notAfter: Date(timeIntervalSince1970: try row["not_after"].decode(Double.self)),
            publicKeySHA256: try row["key_sha256"].decode(String.self),
            issuedAt: Date(timeIntervalSince1970: try row["issued_at"].decode(Double.self)),
            authenticatedAt: try row["authenticated_at"].decode(Double?.self).map(Date.init(timeIntervalSince1970:)),
            revokedAt: try row["revoked_at"].decode(Double?.self).map(Date.init(timeIntervalSince1970:)))
    }

    // MARK: AuditStore

    public func appendAudit(_ event: AuditEvent) async throws -> AuditRecord {
        try await commits.submit(.init(inventory: nil, event: event))
    }

    public func commitIssuance(_ inventory: InventoryRecord, event: AuditEvent) async throws -> AuditRecord {
        try await commits.submit(.init(inventory: inventory, event: event))
    }

    static func appendBatch(
        _ items: [GroupCommit.Item], connection: PostgresConnection, key: AuditChainKey, logger: Logger
    ) async throws -> [AuditRecord] {
        // Every replica appends under this lock: one linear chain, no forks.
        try await connection.query("SELECT pg_advisory_xact_lock(\(auditLock))", logger: logger)
        var sequence: Int64 = 0
        var previous = AuditRecord.genesisHash
        for try await (seq, hash) in try await connection.query("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1", logger: logger)
            .decode((Int64, String).self)
        {
            sequence = seq
            previous = hash
        }
        var records: [AuditRecord] = []
        for item in items {
            if let inventory = item.inventory {
                try await insertInventory(inventory, connection: connection, logger: logger)
            }
            sequence += 1
            let record = AuditRecord.chained(item.event, sequence: sequence, previousHash: previous, key: key)
            let event = record.event
            try await connection.query(
                """
                INSERT INTO audit (seq, time_us, actor, action, outcome, code, reason, subject, serial, authority_id, key_sha256,
                                   request_id, client_address, token_hmac, prev_hash, hash)
                VALUES (\(record.sequence), \(event.time.microsecondsSince1970), \(event.actor), \(event.action.rawValue),
                        \(event.outcome.rawValue), \(event.code), \(event.reason), \(event.subject), \(event.serial), \(event.authorityID),
                        \(event.publicKeySHA256), \(event.requestID), \(event.clientAddress), \(event.tokenHMAC), \(record.previousHash),
                        \(record.hash))
                """, logger: logger)
            previous = record.hash
            records.append(record)
        }
        return records
    }

    /// As `SQLiteStore.upgradeFormat`, under the audit lock so replicas starting together upgrade once.
    static func upgradeFormat(
        _ connection: PostgresConnection, integrity: AuthorityIntegrity, chainKey: AuditChainKey, now: Date, logger: Logger
    ) async throws -> [AuditRecord] {
        try await connection.query("SELECT pg_advisory_xact_lock(\(auditLock))", logger: logger)
        if try await setting(connection, StoreFormat.authorityMACKey, logger: logger) == nil {
            var tags: [(String, String)] = []
            for try await row in try await connection.query("SELECT * FROM authorities", logger: logger) {
                let fields = try fields(row.makeRandomAccess())
                tags.append((fields.id, integrity.tag(fields)))
            }
            for (id, tag) in tags {
                try await connection.query("UPDATE authorities SET mac = \(tag) WHERE id = \(id)", logger: logger)
            }
            try await setSetting(connection, StoreFormat.authorityMACKey, "v1", logger: logger)
        }
        guard try await setting(connection, StoreFormat.auditChainKey, logger: logger) != StoreFormat.auditChainKeyed else { return [] }
        var relinker = AuditRelinker(key: chainKey)
        var after: Int64 = 0
        while true {
            var page: [AuditRecord] = []
            for try await row in try await connection.query(
                "SELECT * FROM audit WHERE seq > \(after) ORDER BY seq LIMIT 10000", logger: logger)
            {
                page.append(try auditRecord(row.makeRandomAccess()))
            }
            for record in page {
                let relinked = relinker.relink(record)
                try await connection.query(
                    "UPDATE audit SET prev_hash = \(relinked.previousHash), hash = \(relinked.hash) WHERE seq = \(relinked.sequence)",
                    logger: logger)
            }
            guard let last = page.last else { break }
            after = last.sequence
        }
        try await setSetting(connection, StoreFormat.auditChainKey, StoreFormat.auditChainKeyed, logger: logger)
        guard relinker.count > 0 else { return [] }
        return try await appendBatch(
            GroupCommit.Item.events([relinker.completion(at: now)]), connection: connection, key: chainKey, logger: logger)
    }

    public func auditRecords(_ query: AuditQuery) async throws -> [AuditRecord] {
        var bindings = PostgresBindings()
        var conditions: [String] = []
        func bind(_ condition: String, _ value: some PostgresNonThrowingEncodable & Sendable) {
            bindings.append(value)
            conditions.append(condition.replacingOccurrences(of: "?", with: "$\(bindings.count)"))
        }
        bind("seq > ?", query.afterSequence)
        if let since = query.since { bind("time_us >= ?", since.microsecondsSince1970) }
        if let until = query.until { bind("time_us < ?", until.microsecondsSince1970) }
        if let subject = query.subject { bind("subject = ?", subject) }
        if let serial = query.serial { bind("serial = ?", serial.lowercased()) }
        if let action = query.action { bind("action = ?", action.rawValue) }
        if let outcome = query.outcome { bind("outcome = ?", outcome.rawValue) }
        let sql = "SELECT * FROM audit WHERE \(conditions.joined(separator: " AND ")) ORDER BY seq LIMIT \(max(1, query.limit))"
        let postgresQuery = PostgresQuery(unsafeSQL: sql, binds: bindings)
        return try await run {
            var records: [AuditRecord] = []
            for try await row in try await self.client.query(postgresQuery, logger: self.logger) {
                records.append(try Self.auditRecord(row.makeRandomAccess()))
            }
            return records
        }
    }

    public func lastAuditRecord() async throws -> AuditRecord? {
        try await run {
            var record: AuditRecord? = nil
            for try await row in try await self.client.query("SELECT * FROM audit ORDER BY seq DESC LIMIT 1", logger: self.logger) {
                record = try Self.auditRecord(row.makeRandomAccess())
            }
            return record
        }
    }

    /// A stored record. An unknown action or outcome keeps its row visible to the verifier as a link mismatch
    /// (as in SQLite) rather than hiding it.
    static func auditRecord(_ row: PostgresRandomAccessRow) throws -> AuditRecord {
        let time = Date(microsecondsSince1970: try row["time_us"].decode(Int64.self))
        let actionText = try row["action"].decode(String.self)
        let outcomeText = try row["outcome"].decode(String.self)
        guard let action = AuditAction(rawValue: actionText), let outcome = AuditOutcome(rawValue: outcomeText) else {
            return AuditRecord(
                sequence: try row["seq"].decode(Int64.self),
                event: AuditEvent(time: time, actor: try row["actor"].decode(String.self), action: .deny),
                previousHash: try row["prev_hash"].decode(String.self), hash: "unknown action or outcome")
        }
        let event = AuditEvent(
            time: time, actor: try row["actor"].decode(String.self), action: action, outcome: outcome,
            code: try row["code"].decode(String?.self), reason: try row["reason"].decode(String?.self),
            subject: try row["subject"].decode(String?.self), serial: try row["serial"].decode(String?.self),
            authorityID: try row["authority_id"].decode(String?.self), publicKeySHA256: try row["key_sha256"].decode(String?.self),
            requestID: try row["request_id"].decode(String?.self), clientAddress: try row["client_address"].decode(String?.self),
            tokenHMAC: try row["token_hmac"].decode(String?.self))
        return AuditRecord(
            sequence: try row["seq"].decode(Int64.self), event: event, previousHash: try row["prev_hash"].decode(String.self),
            hash: try row["hash"].decode(String.self))
    }

    public func auditKey() async throws -> [UInt8] {
        let (client, kek, logger) = (self.client, self.kek, self.logger)
        return try await run { try await Self.auditKey(client, kek: kek, logger: logger) }
    }

    /// The sealed audit key, created on first use.
    static func auditKey(_ client: PostgresClient, kek: KeyEncryptionKey, logger: Logger) async throws -> [UInt8] {
        let fresh = Data(try kek.seal(try SecureRandom.bytes(32), context: "audit-key")).base64EncodedString()
        try await client.query(
            "INSERT INTO settings (key, value) VALUES (\(StoreFormat.auditKey), \(fresh)) ON CONFLICT (key) DO NOTHING", logger: logger)
        var stored = ""
        for try await text in try await client.query("SELECT value FROM settings WHERE key = \(StoreFormat.auditKey)", logger: logger)
            .decode(String.self)
        { stored = text }
        return try kek.open(Array(Data(base64Encoded: stored) ?? Data()), context: "audit-key")
    }

    static func setting(_ connection: PostgresConnection, _ key: String, logger: Logger) async throws -> String? {
        var result: String? = nil
        for try await value in try await connection.query("SELECT value FROM settings WHERE key = \(key)", logger: logger).decode(String.self) {
            result = value
        }
        return result
    }

    static func setSetting(_ connection: PostgresConnection, _ key: String, _ value: String, logger: Logger) async throws {
        try await connection.query(
            "INSERT INTO settings (key, value) VALUES (\(key), \(value)) ON CONFLICT (key) DO UPDATE SET value = excluded.value", logger: logger)
    }

    // MARK: Access

    /// Runs a store operation with a deadline: a server that is down or unreachable must give a prompt
    /// `unavailable` (and so `audit_unavailable` / unready), never a request that hangs while the pool retries.
    private func run<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) async throws -> T {
        do {
            return try await Self.withDeadline(Self.operationTimeout, body)
        } catch {
            throw Self.storageError(error, "PostgreSQL")
        }
    }

    static let operationTimeout: Duration = .seconds(5)

    /// Returns `body`'s result, or throws `unavailable` once `timeout` passes. A task group would wait for the
    /// body to notice cancellation (postgres-nio's pool may not for a minute), so the body runs unstructured and
    /// is cancelled and abandoned on timeout.
    static func withDeadline<T: Sendable>(_ timeout: Duration, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
        let outcome = DeadlineOutcome<T>()
        return try await withCheckedThrowingContinuation { continuation in
            outcome.install(continuation)
            let work = Task {
                do { outcome.finish(.success(try await body())) } catch { outcome.finish(.failure(error)) }
            }
            Task {
                try? await Task.sleep(for: timeout)
                if outcome.finish(.failure(StorageError(.unavailable, reason: "PostgreSQL did not answer within \(timeout)"))) {
                    work.cancel()
                }
            }
        }
    }

    /// Maps a failure to the store's errors: what a transaction's closure threw is unwrapped first, constraint
    /// violations (unique 23505, foreign key 23503, check 23514) are conflicts, everything else is unavailable.
    static func storageError(_ error: any Error, _ context: String) -> any Error {
        switch error {
        case let error as PostgresTransactionError:
            if let inner = error.closureError { return storageError(inner, context) }
            return StorageError(.unavailable, reason: "\(context): \(String(reflecting: error))")
        case is StorageError, is CAError:
            return error
        case let error as PSQLError where ["23505", "23503", "23514"].contains(error.serverInfo?[.sqlState] ?? ""):
            return StorageError(.conflict, reason: "PostgreSQL constraint: \(error.serverInfo?[.message] ?? "")")
        default:
            return StorageError(.unavailable, reason: "\(context): \(String(reflecting: error))")
        }
    }
}

/// The first of a result and a timeout wins; the loser is ignored.
final class DeadlineOutcome<T: Sendable>: Sendable {
    private let state = Mutex<(continuation: CheckedContinuation<T, any Error>?, done: Bool)>((nil, false))

    func install(_ continuation: CheckedContinuation<T, any Error>) { state.withLock { $0.continuation = continuation } }

    /// Resumes the waiter with `result` if nothing did before; returns whether this call did.
    @discardableResult
    func finish(_ result: Result<T, any Error>) -> Bool {
        let continuation = state.withLock { state -> CheckedContinuation<T, any Error>? in
            guard !state.done else { return nil }
            state.done = true
            return state.continuation
        }
        continuation?.resume(with: result)
        return continuation != nil
    }
}
