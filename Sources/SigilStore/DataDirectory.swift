import Foundation
import SigilCore
import SigilCrypto
import SigilFiles
import Logging

/// The layout of a data directory (default `pki/`): what Sigil keeps on disk and with which modes.
public struct DataDirectory: Sendable {
    public let path: String

    public init(path: String) { self.path = path }

    /// Key-encryption key (0600).
    public var kekPath: String { path + "/kek" }
    /// SQLite store (0600, with -wal and -shm beside it).
    public var databasePath: String { path + "/sigil.db" }
    /// Trust bundle as PEM, rewritten whenever the set of roots changes (0644: it is public).
    public var bundlePath: String { path + "/bundle.pem" }

    /// Whether a store exists here.
    public var isInitialized: Bool { FileManager.default.fileExists(atPath: databasePath) }

    /// Opens the SQLite store; with `create`, makes the directory (0700), KEK and database first.
    public func openSQLiteStore(create: Bool, clock: any WallClock = SystemClock()) throws -> SQLiteStore {
        if create {
            try StorageError.mappingFiles { try SecureFile.ensurePrivateDirectory(path) }
        } else if !isInitialized {
            throw StorageError(
                .notFound, reason: "no Sigil store in \(path): run `sigil init --data-dir \(path)` or `sigil serve`")
        }
        let kek = try KeyEncryptionKey.load(path: kekPath, create: create)
        return try SQLiteStore(path: databasePath, kek: kek, clock: clock)
    }
}

/// Names of the settings `sigil init` records so every later command uses the same authority parameters.
public enum SettingKey {
    public static let trustDomain = "trust_domain"
    public static let authorityKeyType = "authority_key_type"
    public static let rootLifetime = "root_lifetime_seconds"
    public static let intermediateLifetime = "intermediate_lifetime_seconds"
}

extension AuthorityStore {
    /// Records `configuration` as the deployment's settings.
    public func saveAuthorityConfiguration(_ configuration: AuthorityConfiguration) async throws {
        try await setSettings([
            SettingKey.trustDomain: configuration.trustDomain.name,
            SettingKey.authorityKeyType: configuration.keyAlgorithm.configurationName,
            SettingKey.rootLifetime: String(configuration.rootLifetime.wholeSeconds),
            SettingKey.intermediateLifetime: String(configuration.intermediateLifetime.wholeSeconds),
        ])
    }

    /// The configuration recorded at initialisation; nil for an uninitialised store.
    public func loadAuthorityConfiguration() async throws -> AuthorityConfiguration? {
        guard let domain = try await setting(SettingKey.trustDomain) else { return nil }
        var configuration = AuthorityConfiguration(trustDomain: try TrustDomain(domain))
        if let key = try await setting(SettingKey.authorityKeyType),
            let algorithm = KeyAlgorithm(configurationName: key)
        {
            configuration.keyAlgorithm = algorithm
        }
        if let root = try await setting(SettingKey.rootLifetime).flatMap(Int64.init) {
            configuration.rootLifetime = .seconds(root)
        }
        if let intermediate = try await setting(SettingKey.intermediateLifetime).flatMap(Int64.init) {
            configuration.intermediateLifetime = .seconds(intermediate)
        }
        return configuration
    }
}

/// A complete store backend: the CA's protocols plus a hook for the streaming audit sink.
public protocol SigilStoreBackend: CAStore {
    /// Calls `observer` with records after they are committed. Must not block.
    func observeAudit(_ observer: @escaping @Sendable ([AuditRecord]) -> Void)
}

extension DataDirectory {
    /// Opens the store named by `store`: `sqlite` (this directory's `sigil.db`) or a `postgres://` URL. The
    /// key-encryption key always comes from this directory (replicas sharing PostgreSQL need the same `kek`).
    /// - Parameter connectTimeout: how long to keep trying to reach a PostgreSQL server (each failed attempt is
    ///   logged with its cause) before giving up with the last cause. Default 30 s (`store_connect_timeout`).
    public func openStore(
        _ store: String, create: Bool, logger: Logger, clock: any WallClock = SystemClock(),
        connectTimeout: Duration = .seconds(30)
    ) async throws -> any SigilStoreBackend {
        if store == "sqlite" { return try openSQLiteStore(create: create, clock: clock) }
        guard store.hasPrefix("postgres://") || store.hasPrefix("postgresql://") else {
            throw StorageError(.unavailable, reason: "store must be sqlite or a postgres:// URL")
        }
        if create { try StorageError.mappingFiles { try SecureFile.ensurePrivateDirectory(path) } }
        let kek = try KeyEncryptionKey.load(path: kekPath, create: create)
        return try await PostgresStore(
            url: store, kek: kek, logger: logger, clock: clock, connectTimeout: connectTimeout)
    }
}
