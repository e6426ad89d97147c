import Foundation
import Logging
import NIOCore
import PostgresNIO
import SigilCore
import SigilCrypto
import Synchronization

/// The store on PostgreSQL, for several replicas sharing one state. Audit appends take a transaction-level
/// advisory lock, so all replicas extend one linear chain.
public final class PostgresStore: SigilStoreBackend {
    let client: PostgresClient
    let kek: KeyEncryptionKey
    let logger: Logger
    private let runTask: Task<Void, Never>
    private let commits: GroupCommit
    private let observers = AuditObservers()

    /// The lock key serialising audit appends (an arbitrary constant shared by every replica).
    static let auditLock: Int64 = 0x5167_696C_0001
    static let migrationLock: Int64 = 0x5167_696C_0002

    /// Connects to `url` (`postgres://user[:password]@host[:port]/database[?sslmode=disable|require]`) and migrates.
    public init(url: String, kek: KeyEncryptionKey, logger: Logger) async throws {
        guard let components = URLComponents(string: url), components.scheme == "postgres" || components.scheme == "postgresql",
            let host = components.host, let user = components.user
        else { throw StorageError(.unavailable, reason: "store URL must be postgres://user@host:port/database") }
        let database = components.path.hasPrefix("/") ? String(components.path.dropFirst()) : components.path
        let sslmode = components.queryItems?.first { $0.name == "sslmode" }?.value ?? "prefer"
        let tls: PostgresClient.Configuration.TLS
        switch sslmode {
        case "disable": tls = .disable
        case "require", "verify-full": tls = .require(.makeClientConfiguration())
        default: tls = .prefer(.makeClientConfiguration())
        }
        var configuration = PostgresClient.Configuration(
            host: host, port: components.port ?? 5432, username: user, password: components.password,
            database: database.isEmpty ? nil : database, tls: tls)
        configuration.options.connectTimeout = .seconds(3)
        // Failures reach callers as query errors; the background logger only adds noise at start-up.
        var background = logger
        background.logLevel = .error
        let client = PostgresClient(configuration: configuration, backgroundLogger: background)
        self.client = client
        self.kek = kek
        self.logger = logger
        runTask = Task { await client.run() }
        let logger = logger
        commits = GroupCommit { items in
            do {
                return try await Self.withDeadline(Self.operationTimeout) {
                    try await client.withTransaction(logger: logger) { connection in
                        try await Self.appendBatch(items, connection: connection, logger: logger)
                    }
                }
            } catch {
                throw Self.storageError(error, "PostgreSQL audit write failed")
            }
        }
        do {
            try await migrate()
        } catch {
            runTask.cancel()
            throw StorageError(.unavailable, reason: "cannot open PostgreSQL store: \(String(reflecting: error))")
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
    ]

    private func migrate() async throws {
        try await client.withTransaction(logger: logger) { connection in
            // Replicas starting together: one migrates, the others wait for the lock and find nothing to do.
            try await connection.query("SELECT pg_advisory_xact_lock(\(Self.migrationLock))", logger: logger)
            try await connection.query("CREATE TABLE IF NOT EXISTS sigil_migrations (name TEXT PRIMARY KEY)", logger: logger)
            var applied = Set<String>()
            for try await name in try await connection.query("SELECT name FROM sigil_migrations", logger: logger).decode(String.self) {
                applied.insert(name)
            }
            for (name, sql) in Self.migrations where !applied.contains(name) {
                for statement in sql.split(separator: ";").map({ $0.trimmingCharacters(in: .whitespacesAndNewlines) }) where !statement.isEmpty {
                    try await connection.query(PostgresQuery(unsafeSQL: statement), logger: logger)
                }
                try await connection.query("INSERT INTO sigil_migrations (name) VALUES (\(name))", logger: logger)
            }
        }
    }

    // MARK: AuthorityStore

    public func authorities() async throws -> [AuthorityRecord] {
        try await run {
            var records: [AuthorityRecord] = []
            let rows = try await self.client.query("SELECT * FROM authorities ORDER BY created_at, id", logger: self.logger)
            for try await row in rows {
                let row = row.makeRandomAccess()
                guard let role = AuthorityRole(rawValue: try row["role"].decode(String.self)),
                    let state = AuthorityState(rawValue: try row["state"].decode(String.self))
                else { throw StorageError(.corrupt, reason: "authority row with unknown role or state") }
                let der = try row["certificate"].decode(ByteBuffer.self)
                records.append(
                    AuthorityRecord(
                        id: try row["id"].decode(String.self), role: role, state: state,
                        certificate: try Certificate(der: Array(der.readableBytesView)), parentID: try row["parent_id"].decode(String?.self),
                        isUpstream: try row["is_upstream"].decode(Bool.self),
                        createdAt: Date(timeIntervalSince1970: try row["created_at"].decode(Double.self)),
                        updatedAt: Date(timeIntervalSince1970: try row["updated_at"].decode(Double.self))))
            }
            return records
        }
    }

    public func insertAuthority(_ record: AuthorityRecord, key: PrivateKey?, audit: [AuditEvent]) async throws {
        let sealed = try key.map { ByteBuffer(bytes: try kek.seal($0.pkcs8DER(), context: record.id)) }
        let records = try await run {
            try await self.client.withTransaction(logger: self.logger) { connection in
                try await connection.query(
                    """
                    INSERT INTO authorities (id, role, state, certificate, parent_id, is_upstream, sealed_key, created_at, updated_at)
                    VALUES (\(record.id), \(record.role.rawValue), \(record.state.rawValue), \(ByteBuffer(bytes: record.certificate.der)),
                            \(record.parentID), \(record.isUpstream), \(sealed), \(record.createdAt.timeIntervalSince1970),
                            \(record.updatedAt.timeIntervalSince1970))
                    """, logger: self.logger)
                if record.role == .root {
                    try await connection.query("UPDATE meta SET value = value + 1 WHERE key = 'bundle_sequence'", logger: self.logger)
                }
                return try await Self.appendBatch(GroupCommit.Item.events(audit), connection: connection, logger: self.logger)
            }
        }
        if !records.isEmpty { observers.notify(records) }
    }

    public func updateAuthorityStates(_ changes: [(id: String, state: AuthorityState)], at time: Date, audit: [AuditEvent]) async throws {
        let records = try await run {
            try await self.client.withTransaction(logger: self.logger) { connection in
                var rootsChanged = false
                for change in changes.sorted(by: { $0.state != .active && $1.state == .active }) {
                    let rows = try await connection.query(
                        "UPDATE authorities SET state = \(change.state.rawValue), updated_at = \(time.timeIntervalSince1970) WHERE id = \(change.id) RETURNING role",
                        logger: self.logger)
                    var role: String? = nil
                    for try await value in rows.decode(String.self) { role = value }
                    guard let role else { throw StorageError(.notFound, reason: "no authority \(change.id)") }
                    if role == "root" && change.state == .revoked { rootsChanged = true }
                }
                if rootsChanged {
                    try await connection.query("UPDATE meta SET value = value + 1 WHERE key = 'bundle_sequence'", logger: self.logger)
                }
                return try await Self.appendBatch(GroupCommit.Item.events(audit), connection: connection, logger: self.logger)
            }
        }
        if !records.isEmpty { observers.notify(records) }
    }

    public func authorityKey(id: String) async throws -> PrivateKey {
        let sealed: ByteBuffer? = try await run {
            var sealed: ByteBuffer? = nil
            for try await value in try await self.client.query("SELECT sealed_key FROM authorities WHERE id = \(id)", logger: self.logger)
                .decode(ByteBuffer?.self)
            { sealed = value }
            return sealed
        }
        guard let sealed else { throw StorageError(.notFound, reason: "no key stored for authority \(id)") }
        let der = try kek.open(Array(sealed.readableBytesView), context: id)
        do {
            return try PrivateKey(pkcs8DER: der)
        } catch {
            throw StorageError(.corrupt, reason: "stored key for \(id) does not decode")
        }
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
        try await connection.query("""
            INSERT INTO certificates (serial, spiffe_id, authority_id, not_before, not_after, key_sha256, issued_at, revoked_at)
            VALUES (\(record.serial.hex), \(record.spiffeID.description), \(record.authorityID), \(record.notBefore.timeIntervalSince1970),
                    \(record.notAfter.timeIntervalSince1970), \(record.publicKeySHA256), \(record.issuedAt.timeIntervalSince1970),
                    \(record.revokedAt?.timeIntervalSince1970))
            """, logger: logger)
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
                let row = row.makeRandomAccess()
                guard let serial = SerialNumber(hex: try row["serial"].decode(String.self)) else {
                    throw StorageError(.corrupt, reason: "bad serial in inventory")
                }
                records.append(
                    InventoryRecord(
                        serial: serial, spiffeID: try SPIFFEID(parsing: try row["spiffe_id"].decode(String.self)),
                        authorityID: try row["authority_id"].decode(String.self),
                        notBefore: Date(timeIntervalSince1970: try row["not_before"].decode(Double.self)),
                        notAfter: Date(timeIntervalSince1970: try row["not_after"].decode(Double.self)),
                        publicKeySHA256: try row["key_sha256"].decode(String.self),
                        issuedAt: Date(timeIntervalSince1970: try row["issued_at"].decode(Double.self)),
                        revokedAt: try row["revoked_at"].decode(Double?.self).map(Date.init(timeIntervalSince1970:))))
            }
            return records
        }
    }

    // MARK: AuditStore

    public func appendAudit(_ event: AuditEvent) async throws -> AuditRecord {
        let record = try await commits.submit(.init(inventory: nil, event: event))
        observers.notify([record])
        return record
    }

    public func commitIssuance(_ inventory: InventoryRecord, event: AuditEvent) async throws -> AuditRecord {
        let record = try await commits.submit(.init(inventory: inventory, event: event))
        observers.notify([record])
        return record
    }

    static func appendBatch(_ items: [GroupCommit.Item], connection: PostgresConnection, logger: Logger) async throws -> [AuditRecord] {
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
            let record = AuditRecord.chained(item.event, sequence: sequence, previousHash: previous)
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
                let row = row.makeRandomAccess()
                let time = Date(microsecondsSince1970: try row["time_us"].decode(Int64.self))
                let actionText = try row["action"].decode(String.self)
                let outcomeText = try row["outcome"].decode(String.self)
                let event = AuditEvent(
                    time: time, actor: try row["actor"].decode(String.self), action: AuditAction(rawValue: actionText) ?? .deny,
                    outcome: AuditOutcome(rawValue: outcomeText) ?? .failure, code: try row["code"].decode(String?.self),
                    reason: try row["reason"].decode(String?.self), subject: try row["subject"].decode(String?.self),
                    serial: try row["serial"].decode(String?.self), authorityID: try row["authority_id"].decode(String?.self),
                    publicKeySHA256: try row["key_sha256"].decode(String?.self), requestID: try row["request_id"].decode(String?.self),
                    clientAddress: try row["client_address"].decode(String?.self), tokenHMAC: try row["token_hmac"].decode(String?.self))
                let known = AuditAction(rawValue: actionText) != nil && AuditOutcome(rawValue: outcomeText) != nil
                records.append(
                    AuditRecord(
                        sequence: try row["seq"].decode(Int64.self), event: event, previousHash: try row["prev_hash"].decode(String.self),
                        hash: known ? try row["hash"].decode(String.self) : "unknown action or outcome"))
            }
            return records
        }
    }

    public func auditKey() async throws -> [UInt8] {
        let fresh = Data(try kek.seal(try SecureRandom.bytes(32), context: "audit-key")).base64EncodedString()
        let stored: String = try await run {
            try await self.client.query(
                "INSERT INTO settings (key, value) VALUES ('audit_key', \(fresh)) ON CONFLICT (key) DO NOTHING", logger: self.logger)
            var value = ""
            for try await text in try await self.client.query("SELECT value FROM settings WHERE key = 'audit_key'", logger: self.logger)
                .decode(String.self)
            { value = text }
            return value
        }
        return try kek.open(Array(Data(base64Encoded: stored) ?? Data()), context: "audit-key")
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
