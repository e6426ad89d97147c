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
/// advisory lock, so all replicas extend one linear chain. The statements, the schema, the row mapping and the
/// chain are `StoreSQL`'s, `StoreSchema`'s and `AuditChainAppender`'s; this file is transport (postgres-nio),
/// the dialect's locks and errors.
public final class PostgresStore: SigilStoreBackend {
    let client: PostgresClient
    let kek: KeyEncryptionKey
    let integrity: AuthorityIntegrity
    let chainKey: AuditChainKey
    let logger: Logger
    private let runTask: Task<Void, Never>
    private let commits: GroupCommit

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
        url: String, kek: KeyEncryptionKey, logger: Logger, clock: any WallClock = SystemClock(),
        connectTimeout: Duration = .seconds(30)
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
        let upgraded: [AuditRecord]
        do {
            try await Self.migrate(client, logger: logger)
            chainKey = AuditChainKey(auditKey: try await Self.auditKey(client, kek: kek, logger: logger))
            let (integrity, chainKey) = (self.integrity, self.chainKey)
            upgraded = try await client.withTransaction(logger: logger) { connection in
                try await Self.upgradeFormat(
                    connection, integrity: integrity, chainKey: chainKey, now: clock.now, logger: logger)
            }
        } catch let error as StorageError where error.code == .corrupt {
            runTask.cancel()
            throw error  // a wrong key-encryption key, not an unreachable server
        } catch {
            runTask.cancel()
            throw StorageError(
                .unavailable, reason: "cannot open PostgreSQL store \(location.description): \(Self.cause(of: error))")
        }
        let chainKey = self.chainKey
        commits = GroupCommit { items in
            try await Self.transaction(client, logger: logger, "PostgreSQL audit write failed") { connection in
                var chain = try await Self.chain(connection, key: chainKey, logger: logger)
                var records: [AuditRecord] = []
                for item in items {
                    if let inventory = item.inventory {
                        try await Self.execute(connection, StoreSQL.insertCertificate(inventory), logger)
                    }
                    let record = chain.append(item.event)
                    try await Self.execute(connection, StoreSQL.insertAudit(record), logger)
                    records.append(record)
                }
                return records
            }
        }
        commits.observers.notify(upgraded)
    }

    deinit { runTask.cancel() }

    public func observeAudit(_ observer: @escaping @Sendable ([AuditRecord]) -> Void) {
        commits.observers.add(observer)
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
            throw StorageError(
                .unavailable, reason: "PostgreSQL TLS configuration for \(location.description): \(error)")
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
                    on: MultiThreadedEventLoopGroup.singleton.any(), configuration: configuration, id: attempt,
                    logger: logger
                ).get()
                try? await connection.close()
                return
            } catch {
                let cause = Self.cause(of: error)
                let now = clock.now
                if now >= deadline {
                    throw StorageError(
                        .unavailable,
                        reason:
                            "PostgreSQL at \(location.description) unreachable after \(attempt) attempt(s) in \(timeout.humanReadable): \(cause)"
                    )
                }
                let next = min(delay, .milliseconds(Int64(max(0, deadline.timeIntervalSince(now)) * 1000)))
                logger.warning(
                    "PostgreSQL store not reachable; retrying",
                    metadata: [
                        "sigil.store": "\(location.description)", "sigil.attempt": "\(attempt)",
                        "sigil.cause": "\(cause)",
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
                parts.append(
                    "server says: \(message)" + (error.serverInfo?[.sqlState].map { " (SQLSTATE \($0))" } ?? ""))
            }
            switch error.code {
            case .sslUnsupported:
                parts.append(
                    "the server does not offer TLS, and the URL's sslmode requires it (sslmode=disable for plain)")
            case .failedToAddSSLHandler: parts.append("TLS could not be set up")
            case .authMechanismRequiresPassword: parts.append("the server asks for a password and the URL has none")
            case .unsupportedAuthMechanism:
                parts.append("the server asks for an authentication method Sigil does not speak")
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

    // MARK: Schema

    private static func migrate(_ client: PostgresClient, logger: Logger) async throws {
        try await StoreDeadline.run("PostgreSQL") {
            try await client.withTransaction(logger: logger) { connection in
                // Replicas starting together: one migrates, the others wait for the lock and find nothing to do.
                try await connection.query("SELECT pg_advisory_xact_lock(\(migrationLock))", logger: logger)
                try await connection.query(
                    "CREATE TABLE IF NOT EXISTS sigil_migrations (name TEXT PRIMARY KEY)", logger: logger)
                var applied = Set<String>()
                for try await name in try await connection.query("SELECT name FROM sigil_migrations", logger: logger)
                    .decode(String.self)
                {
                    applied.insert(name)
                }
                for migration in StoreSchema.migrations where !applied.contains(migration.name) {
                    for statement in migration.statements(in: .postgres) {
                        try await connection.query(PostgresQuery(unsafeSQL: statement), logger: logger)
                    }
                    try await connection.query(
                        "INSERT INTO sigil_migrations (name) VALUES (\(migration.name))", logger: logger)
                }
            }
        }
    }

    /// As `SQLiteStore.upgradeFormat`, under the audit lock so replicas starting together upgrade once.
    static func upgradeFormat(
        _ connection: PostgresConnection, integrity: AuthorityIntegrity, chainKey: AuditChainKey, now: Date,
        logger: Logger
    ) async throws -> [AuditRecord] {
        try await connection.query("SELECT pg_advisory_xact_lock(\(auditLock))", logger: logger)
        if try await setting(connection, StoreFormat.authorityMACKey, logger) == nil {
            for row in try await rows(connection, (StoreSQL.selectAuthorities, []), logger) {
                let fields = try StoreSQL.authorityFields(row)
                try await execute(
                    connection, (StoreSQL.setAuthorityMAC, [.text(integrity.tag(fields)), .text(fields.id)]), logger)
            }
            try await execute(
                connection, (StoreSQL.upsertSetting, [.text(StoreFormat.authorityMACKey), .text("v1")]), logger)
        }
        guard try await setting(connection, StoreFormat.auditChainKey, logger) != StoreFormat.auditChainKeyed else {
            return []
        }
        var relinker = AuditRelinker(key: chainKey)
        var after: Int64 = 0
        while true {
            let page = try await rows(connection, (StoreSQL.selectAuditPage, [.int64(after)]), logger)
            for row in page {
                let record = relinker.relink(try StoreSQL.auditRecord(row))
                try await execute(
                    connection,
                    (StoreSQL.relinkAudit, [.text(record.previousHash), .text(record.hash), .int64(record.sequence)]),
                    logger)
                after = record.sequence
            }
            if page.isEmpty { break }
        }
        try await execute(
            connection,
            (StoreSQL.upsertSetting, [.text(StoreFormat.auditChainKey), .text(StoreFormat.auditChainKeyed)]), logger)
        guard relinker.count > 0 else { return [] }
        var chain = AuditChainAppender(after: try await lastRecord(connection, logger), key: chainKey)
        let record = chain.append(relinker.completion(at: now))
        try await execute(connection, StoreSQL.insertAudit(record), logger)
        return [record]
    }

    // MARK: AuthorityStore

    public func loadAuthorities() async throws -> AuthorityRows {
        let integrity = self.integrity
        return try await read { connection, logger in
            AuthorityRows(
                try await Self.rows(connection, (StoreSQL.selectAuthorities, []), logger).map {
                    try StoreSQL.authority($0, integrity: integrity)
                })
        }
    }

    public func insertAuthority(_ record: AuthorityRecord, key: PrivateKey?, audit: [AuditEvent]) async throws {
        let sealed = try key.map { try kek.seal($0.pkcs8DER(), context: record.id) }
        let mac = integrity.tag(.init(record, hasKey: sealed != nil))
        try await exclusiveWrite(audit) { connection, logger in
            try await Self.execute(connection, StoreSQL.insertAuthority(record, sealedKey: sealed, mac: mac), logger)
            if record.role == .root { try await Self.execute(connection, (StoreSQL.bumpBundleSequence, []), logger) }
            return ()
        }
    }

    public func updateAuthorityStates(
        _ changes: [(id: String, state: AuthorityState)], at time: Date, finalCRLs: [String: [UInt8]],
        audit: [AuditEvent]
    ) async throws {
        let integrity = self.integrity
        try await exclusiveWrite(audit) { connection, logger in
            var bundleChanged = false
            for change in changes.sorted(by: { $0.state != .active && $1.state == .active }) {
                guard
                    let row = try await Self.rows(
                        connection, (StoreSQL.selectAuthority + " FOR UPDATE", [.text(change.id)]), logger
                    ).first
                else {
                    throw StorageError(.notFound, reason: "no authority \(change.id)")
                }
                let update = try AuthorityStateChange(
                    current: try StoreSQL.authorityFields(row), mac: try row.optionalText("mac"), to: change.state,
                    finalCRL: finalCRLs[change.id], integrity: integrity)
                try await Self.execute(
                    connection, StoreSQL.updateAuthority(update.fields, erase: update.erase, mac: update.mac, at: time),
                    logger)
                bundleChanged = bundleChanged || update.changesBundle
            }
            if bundleChanged { try await Self.execute(connection, (StoreSQL.bumpBundleSequence, []), logger) }
            return ()
        }
    }

    public func authorityKey(id: String) async throws -> PrivateKey {
        let found = try await read { connection, logger -> (AuthorityIntegrity.Fields, [UInt8]?, String?)? in
            guard let row = try await Self.rows(connection, (StoreSQL.selectAuthority, [.text(id)]), logger).first
            else { return nil }
            return (try StoreSQL.authorityFields(row), try row.optionalBlob("sealed_key"), try row.optionalText("mac"))
        }
        guard let (fields, sealed, mac) = found else { throw StorageError(.notFound, reason: "no authority \(id)") }
        return try integrity.openKey(sealed.map { Data($0) }, fields: fields, mac: mac, kek: kek)
    }

    public func bundleSequence() async throws -> Int64 {
        try await read { connection, logger in
            try await Self.rows(connection, (StoreSQL.selectBundleSequence, []), logger).first?.int64("value") ?? 0
        }
    }

    public func setting(_ key: String) async throws -> String? {
        try await read { connection, logger in try await Self.setting(connection, key, logger) }
    }

    public func setSettings(_ values: [String: String]) async throws {
        try await write { connection, logger in
            for (key, value) in values {
                try await Self.execute(connection, (StoreSQL.upsertSetting, [.text(key), .text(value)]), logger)
            }
        }
    }

    static func setting(_ connection: PostgresConnection, _ key: String, _ logger: Logger) async throws -> String? {
        try await rows(connection, (StoreSQL.selectSetting, [.text(key)]), logger).first?.text("value")
    }

    // MARK: LeaseStore

    public func acquireLease(_ name: String, holder: String, expiresAt: Date, now: Date) async throws -> Bool {
        try await write { connection, logger in
            try await Self.execute(
                connection,
                (
                    StoreSQL.acquireLease,
                    [
                        .text(name), .text(holder), .double(expiresAt.timeIntervalSince1970),
                        .double(now.timeIntervalSince1970),
                    ]
                ),
                logger)
            return try await Self.rows(connection, (StoreSQL.selectLease, [.text(name)]), logger).first?.text("holder")
                == holder
        }
    }

    public func lease(_ name: String, now: Date) async throws -> Lease? {
        try await read { connection, logger in
            try await Self.rows(connection, (StoreSQL.selectLease, [.text(name)]), logger).first.flatMap {
                try StoreSQL.lease($0, now: now)
            }
        }
    }

    // MARK: CertificateInventory

    public func recordIssued(_ record: InventoryRecord) async throws {
        try await write { connection, logger in
            try await Self.execute(connection, StoreSQL.insertCertificate(record), logger)
        }
    }

    public func certificate(serial: SerialNumber) async throws -> InventoryRecord? {
        try await inventory(StoreSQL.selectCertificate, [.text(serial.hex)]).first
    }

    public func revokeCertificate(
        serial: SerialNumber, at time: Date, audit: [AuditEvent]
    ) async throws -> InventoryRecord {
        try await exclusiveWrite(audit) { connection, logger in
            guard
                let row = try await Self.rows(
                    connection, (StoreSQL.selectCertificate + " FOR UPDATE", [.text(serial.hex)]), logger
                ).first
            else {
                throw StorageError(.notFound, reason: "no certificate with serial \(serial.hex)")
            }
            var record = try StoreSQL.inventory(row)
            guard record.revokedAt == nil else {
                throw StorageError(.conflict, reason: "certificate \(serial.hex) is already revoked")
            }
            try await Self.execute(
                connection, (StoreSQL.revokeCertificate, [.double(time.timeIntervalSince1970), .text(serial.hex)]),
                logger)
            record.revokedAt = time
            return record
        }
    }

    public func revokedCertificates(authorityID: String, at time: Date) async throws -> [InventoryRecord] {
        try await inventory(StoreSQL.revokedCertificates, [.text(authorityID), .double(time.timeIntervalSince1970)])
    }

    public func liveCounts(at time: Date) async throws -> [String: Int] {
        try await read { connection, logger in
            var counts: [String: Int] = [:]
            for row in try await Self.rows(
                connection, (StoreSQL.liveCounts, [.double(time.timeIntervalSince1970)]), logger)
            {
                counts[try row.text("authority_id")] = Int(try row.int64("n"))
            }
            return counts
        }
    }

    public func liveIdentities(at time: Date, expiringWithin horizons: [Duration]) async throws -> [IdentitySummary] {
        let values =
            horizons.map { SQLValue.double((time + $0).timeIntervalSince1970) } + [.double(time.timeIntervalSince1970)]
        return try await read { connection, logger in
            try await Self.rows(connection, (StoreSQL.liveIdentities(horizons: horizons.count), values), logger)
                .map { try StoreSQL.identitySummary($0, horizons: horizons.count) }
        }
    }

    public func liveCertificates(authorityID: String, at time: Date) async throws -> [InventoryRecord] {
        try await inventory(StoreSQL.liveByAuthority, [.text(authorityID), .double(time.timeIntervalSince1970)])
    }

    public func liveCertificates(spiffeID: SPIFFEID, at time: Date) async throws -> [InventoryRecord] {
        try await inventory(
            StoreSQL.liveByIdentity, [.double(time.timeIntervalSince1970), .text(spiffeID.description)])
    }

    private func inventory(_ sql: String, _ values: [SQLValue]) async throws -> [InventoryRecord] {
        try await read { connection, logger in
            try await Self.rows(connection, (sql, values), logger).map(StoreSQL.inventory)
        }
    }

    // MARK: AuditStore

    public func appendAudit(_ event: AuditEvent) async throws -> AuditRecord {
        try await commits.submit(.init(inventory: nil, event: event))
    }

    public func commitIssuance(_ inventory: InventoryRecord, event: AuditEvent) async throws -> AuditRecord {
        try await commits.submit(.init(inventory: inventory, event: event))
    }

    public func auditRecords(_ query: AuditQuery) async throws -> [AuditRecord] {
        let statement = StoreSQL.auditQuery(query)
        return try await read { connection, logger in
            try await Self.rows(connection, statement, logger).map(StoreSQL.auditRecord)
        }
    }

    public func auditCounts(since: Date) async throws -> [AuditCount] {
        try await read { connection, logger in
            try await Self.rows(connection, (StoreSQL.auditCounts, [.int64(since.microsecondsSince1970)]), logger)
                .compactMap(StoreSQL.auditCount)
        }
    }

    public func lastAuditRecord() async throws -> AuditRecord? {
        try await read { connection, logger in try await Self.lastRecord(connection, logger) }
    }

    public func auditKey() async throws -> [UInt8] {
        let (client, kek, logger) = (self.client, self.kek, self.logger)
        return try await Self.auditKey(client, kek: kek, logger: logger)
    }

    /// The sealed audit key, created on first use.
    static func auditKey(_ client: PostgresClient, kek: KeyEncryptionKey, logger: Logger) async throws -> [UInt8] {
        let fresh = Data(try kek.seal(try SecureRandom.bytes(32), context: "audit-key")).base64EncodedString()
        let stored = try await transaction(client, logger: logger, "PostgreSQL") { connection in
            try await execute(
                connection, (StoreSQL.insertSettingIfAbsent, [.text(StoreFormat.auditKey), .text(fresh)]), logger)
            return try await setting(connection, StoreFormat.auditKey, logger) ?? ""
        }
        return try kek.open(Array(Data(base64Encoded: stored) ?? Data()), context: "audit-key")
    }

    static func lastRecord(_ connection: PostgresConnection, _ logger: Logger) async throws -> AuditRecord? {
        try await rows(connection, (StoreSQL.selectLastAudit, []), logger).first.map(StoreSQL.auditRecord)
    }

    /// The chain's appender after its newest record, under the advisory lock every replica appends under (held
    /// to the end of the transaction): one linear chain, no forks.
    static func chain(
        _ connection: PostgresConnection, key: AuditChainKey, logger: Logger
    ) async throws -> AuditChainAppender {
        try await connection.query("SELECT pg_advisory_xact_lock(\(auditLock))", logger: logger)
        return AuditChainAppender(after: try await lastRecord(connection, logger), key: key)
    }

    // MARK: Access

    /// A write of its own that appends `audit` in its transaction, in the commit queue's order.
    private func exclusiveWrite<T: Sendable>(
        _ audit: [AuditEvent], _ body: @escaping @Sendable (PostgresConnection, Logger) async throws -> T
    ) async throws -> T {
        let (client, logger, chainKey) = (self.client, self.logger, self.chainKey)
        return try await commits.exclusive {
            try await Self.transaction(client, logger: logger, "PostgreSQL") { connection in
                let value = try await body(connection, logger)
                var chain = try await Self.chain(connection, key: chainKey, logger: logger)
                var records: [AuditRecord] = []
                for event in audit {
                    let record = chain.append(event)
                    try await Self.execute(connection, StoreSQL.insertAudit(record), logger)
                    records.append(record)
                }
                return (value, records)
            }
        }
    }

    private func read<T: Sendable>(
        _ body: @escaping @Sendable (PostgresConnection, Logger) async throws -> T
    ) async throws -> T {
        let (client, logger) = (self.client, self.logger)
        return try await StoreDeadline.run("PostgreSQL") {
            do {
                return try await client.withConnection { connection in try await body(connection, logger) }
            } catch {
                throw Self.storageError(error, "PostgreSQL")
            }
        }
    }

    private func write<T: Sendable>(
        _ body: @escaping @Sendable (PostgresConnection, Logger) async throws -> T
    ) async throws -> T {
        let (client, logger) = (self.client, self.logger)
        return try await Self.transaction(client, logger: logger, "PostgreSQL") { connection in
            try await body(connection, logger)
        }
    }

    /// `body` in one transaction, under the store's deadline, with failures mapped to the store's errors.
    static func transaction<T: Sendable>(
        _ client: PostgresClient, logger: Logger, _ context: String,
        _ body: @escaping @Sendable (PostgresConnection) async throws -> T
    ) async throws -> T {
        try await StoreDeadline.run("PostgreSQL") {
            do {
                return try await client.withTransaction(logger: logger) { connection in try await body(connection) }
            } catch {
                throw storageError(error, context)
            }
        }
    }

    static func execute(
        _ connection: PostgresConnection, _ statement: (String, [SQLValue]), _ logger: Logger
    ) async throws {
        try await connection.query(query(statement), logger: logger)
    }

    static func rows(
        _ connection: PostgresConnection, _ statement: (String, [SQLValue]), _ logger: Logger
    ) async throws -> [PostgresRandomAccessRow] {
        var rows: [PostgresRandomAccessRow] = []
        for try await row in try await connection.query(query(statement), logger: logger) {
            rows.append(row.makeRandomAccess())
        }
        return rows
    }

    static func query(_ statement: (String, [SQLValue])) -> PostgresQuery {
        var bindings = PostgresBindings()
        for value in statement.1 {
            switch value {
            case .text(let text): bindings.append(text)
            case .int64(let number): bindings.append(number)
            case .double(let number): bindings.append(number)
            case .bool(let flag): bindings.append(flag)
            case .blob(let bytes): bindings.append(ByteBuffer(bytes: bytes))
            case .null: bindings.appendNull()
            }
        }
        return PostgresQuery(unsafeSQL: SQLDialect.postgres.placeholders(statement.0), binds: bindings)
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

extension PostgresRandomAccessRow: StoreRow {
    func text(_ column: String) throws -> String { try self[column].decode(String.self) }
    func optionalText(_ column: String) throws -> String? { try self[column].decode(String?.self) }
    func double(_ column: String) throws -> Double { try self[column].decode(Double.self) }
    func optionalDouble(_ column: String) throws -> Double? { try self[column].decode(Double?.self) }
    func int64(_ column: String) throws -> Int64 { try self[column].decode(Int64.self) }
    func bool(_ column: String) throws -> Bool { try self[column].decode(Bool.self) }
    func optionalBlob(_ column: String) throws -> [UInt8]? {
        try self[column].decode(ByteBuffer?.self).map { Array($0.readableBytesView) }
    }
}
