import Foundation
import GRDB
import SigilCore
@testable import SigilStore
import SigilTestSupport
import Testing

/// What only the SQLite store promises: its files on disk.
@Suite("SQLiteStore")
struct SQLiteStoreTests {
    @Test("the database and its WAL files are readable by the owner only")
    func databaseFileModes() async throws {
        let directory = try TemporaryDirectory()
        let path = directory.file("sigil.db")
        let pki = try TestPKI()
        let store = try SQLiteStore(path: path, kek: KeyEncryptionKey.generate())
        try await store.insertAuthority(pki.root, key: pki.rootKey)
        try await store.setSettings(["k": "v"])
        #expect(fileMode(path) == 0o600)
        for suffix in ["-wal", "-shm"] where FileManager.default.fileExists(atPath: path + suffix) {
            #expect(fileMode(path + suffix) == 0o600, "\(suffix)")
        }
        #expect(store.path == path)
    }

    @Test("no issuance writes an index by identity; an identity's live certificates are read by authority")
    func noIdentityIndex() async throws {
        let directory = try TemporaryDirectory()
        let store = try SQLiteStore(path: directory.file("sigil.db"), kek: KeyEncryptionKey.generate())
        let (indexes, plan) = try await store.read { db in
            (
                try String.fetchAll(
                    db, sql: "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'certificates'"),
                try Row.fetchAll(db, sql: "EXPLAIN QUERY PLAN " + StoreSQL.liveByIdentity, arguments: [0, "x"])
                    .map { $0["detail"] as String }
            )
        }
        #expect(
            Set(indexes) == ["sqlite_autoindex_certificates_1", "certificates_by_authority", "certificates_revoked"])
        #expect(plan.contains { $0.hasPrefix("SEARCH certificates USING INDEX certificates_by_authority") }, "\(plan)")
    }

    @Test("a path that cannot hold a database is unavailable")
    func unopenable() throws {
        let directory = try TemporaryDirectory()
        expectStorageError(.unavailable) {
            try SQLiteStore(path: directory.file("missing/dir/sigil.db"), kek: KeyEncryptionKey.generate())
        }
    }
}

@Suite("DataDirectory")
struct DataDirectoryTests {
    @Test("create makes a private directory, key-encryption key and database")
    func createLayout() throws {
        let parent = try TemporaryDirectory()
        let directory = DataDirectory(path: parent.file("pki"))
        #expect(!directory.isInitialized)
        let store = try directory.openSQLiteStore(create: true)
        #expect(directory.isInitialized)
        #expect(store.path == directory.databasePath)
        #expect(fileMode(directory.path) == 0o700)
        #expect(fileMode(directory.kekPath) == 0o600)
        #expect(fileMode(directory.databasePath) == 0o600)
        #expect(FileManager.default.contents(atPath: directory.kekPath)?.count == 32)
        #expect(directory.bundlePath == directory.path + "/bundle.pem")
    }

    @Test("opening without create needs an initialised directory")
    func openRequiresInitialisation() throws {
        let parent = try TemporaryDirectory()
        let directory = DataDirectory(path: parent.file("pki"))
        expectStorageError(.notFound) { try directory.openSQLiteStore(create: false) }
        #expect(!FileManager.default.fileExists(atPath: directory.path), "nothing is created on a failed open")
    }

    @Test("a reopened data directory reads its sealed keys back")
    func reopenReadsKeys() async throws {
        let parent = try TemporaryDirectory()
        let directory = DataDirectory(path: parent.file("pki"))
        let pki = try TestPKI()
        try await directory.openSQLiteStore(create: true).insertAuthority(pki.root, key: pki.rootKey)
        let reopened = try directory.openSQLiteStore(create: false)
        #expect(try await reopened.authorityKey(id: pki.root.id).publicKey() == pki.rootKey.publicKey())
    }

    @Test("a data directory readable by others is tightened to 0700")
    func tightensDirectory() throws {
        let parent = try TemporaryDirectory()
        let path = parent.file("pki")
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: false)
        chmod(path, 0o755)
        _ = try DataDirectory(path: path).openSQLiteStore(create: true)
        #expect(fileMode(path) == 0o700)
    }
}

/// The WAL checkpointer, on a real SQLite file.
@Suite("WALCheckpointer")
struct WALCheckpointerTests {
    @Test("a checkpoint beside the writer copies committed pages into the database file")
    func checkpointCopiesPages() async throws {
        let directory = try TemporaryDirectory()
        let path = directory.file("sigil.db")
        let store = try SQLiteStore(path: path, kek: KeyEncryptionKey.generate())
        // Fewer items than the store's own checkpointer waits for, and far below the writer's 32 MiB: the
        // pages stay in the WAL.
        for index in 0..<50 {
            _ = try await store.appendAudit(
                AuditEvent(
                    time: Date(timeIntervalSince1970: 1_767_225_600), actor: "test", action: .adminRotate,
                    reason: "\(index)"))
        }
        let before = try fileSize(path)
        let checkpointer = try WALCheckpointer(path: path, interval: 10)
        #expect(checkpointer.committed(9) == nil, "below the interval nothing starts")
        let run = try #require(checkpointer.committed(1))
        await run.value
        #expect(try fileSize(path) > before, "the database file holds the checkpointed pages")
        #expect(try await store.auditRecords(AuditQuery(limit: 100)).count == 50)
    }

    private func fileSize(_ path: String) throws -> Int {
        try #require(try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int)
    }
}
