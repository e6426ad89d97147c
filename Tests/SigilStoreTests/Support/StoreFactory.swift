import Foundation
import GRDB
import Logging
import SigilCore
import SigilStore
import SigilTestSupport
import Testing

/// One store implementation the contract suites run against.
///
/// To add a backend, add a factory to `all`: `open` must return a store over the data at `location` (a fresh,
/// empty one the first time a location is used) sealing keys under `kek`. A backend that needs a server is
/// listed only when its server is configured, and uses `location.name` as a unique database name.
struct StoreFactory: Sendable, CustomTestStringConvertible {
    let name: String
    /// Whether a store opened again at the same location sees the same data (and so the KEK matters).
    let isPersistent: Bool
    let open: @Sendable (_ location: StoreLocation, _ kek: KeyEncryptionKey) async throws -> any CAStore
    /// Removes what `open` created outside `location.directory` (which is removed anyway).
    var cleanUp: @Sendable (_ location: StoreLocation) async throws -> Void = { _ in }
    /// Runs SQL on the store's database behind its back, as someone with write access to the database but
    /// not the key-encryption key could (statements separated by `;`). Nil for stores without a database.
    var tamper: (@Sendable (_ location: StoreLocation, _ sql: String) async throws -> Void)? = nil

    var testDescription: String { name }

    static let sqlite = StoreFactory(
        name: "SQLite", isPersistent: true,
        open: { location, kek in try SQLiteStore(path: location.directory.file("sigil.db"), kek: kek) },
        tamper: { location, sql in
            let queue = try DatabaseQueue(path: location.directory.file("sigil.db"))
            try await queue.write { db in try db.execute(sql: sql) }
        })

    /// The test double from SigilTestSupport, held to the same contract so that core tests can trust it.
    static let inMemory = StoreFactory(name: "InMemoryStore", isPersistent: false) { _, _ in InMemoryStore() }

    /// PostgreSQL, when `SIGIL_TEST_POSTGRES_URL` names a server (`scripts/test` starts a throw-away one): each
    /// store gets a database of its own, dropped after the test.
    static let postgres: StoreFactory? = PostgresTestDatabase.serverURL.map { server in
        StoreFactory(
            name: "PostgreSQL", isPersistent: true,
            open: { location, kek in
                let url = try await PostgresTestDatabase.create(location.name, on: server)
                return try await PostgresStore(url: url, kek: kek, logger: PostgresTestDatabase.logger)
            },
            cleanUp: { location in try await PostgresTestDatabase.drop(location.name, on: server) },
            tamper: { location, sql in try await PostgresTestDatabase.execute(sql, in: location.name, on: server) })
    }

    static let all: [StoreFactory] = [.sqlite, .inMemory] + [postgres].compactMap { $0 }
    static let persistent: [StoreFactory] = all.filter(\.isPersistent)
    /// The stores whose database a test can write behind their back.
    static let tamperable: [StoreFactory] = all.filter { $0.tamper != nil }

    /// Opens a fresh store at a new location, runs `body`, then removes the location.
    func withStore<T>(_ body: (StoreUnderTest) async throws -> T) async throws -> T {
        let location = try StoreLocation()
        let kek = try KeyEncryptionKey.generate()
        let result: T
        do {
            let store = try await open(location, kek)
            result = try await body(StoreUnderTest(factory: self, location: location, kek: kek, store: store))
        } catch {
            try? await cleanUp(location)
            throw error
        }
        try await cleanUp(location)
        return result
    }
}

/// Where a store under test keeps its data: a private temporary directory, removed when released.
struct StoreLocation: Sendable {
    let directory: TemporaryDirectory
    /// A name unique to this location, usable as a database name: `sigil_test_` and 32 lowercase hex digits.
    let name = "sigil_test_" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "")

    init() throws { directory = try TemporaryDirectory(prefix: "sigil-store") }
}

/// A store opened for one test, with what it takes to open the same data again.
struct StoreUnderTest: Sendable {
    let factory: StoreFactory
    let location: StoreLocation
    let kek: KeyEncryptionKey
    let store: any CAStore

    /// The same data opened again, with `kek` (default: the original key-encryption key).
    func reopen(kek: KeyEncryptionKey? = nil) async throws -> any CAStore {
        try await factory.open(location, kek ?? self.kek)
    }
}
