import Foundation
import SigilFiles
import SigilStore
import SigilTestSupport
import Testing

@Suite("KeyEncryptionKey")
struct KeyEncryptionKeyTests {
    @Test("load with create writes a 32-byte key with mode 0600 and reads the same key back")
    func createThenLoad() async throws {
        let directory = try TemporaryDirectory()
        let path = directory.file("kek")
        let created = try KeyEncryptionKey.load(path: path, create: true)
        #expect(fileMode(path) == 0o600)
        #expect(FileManager.default.contents(atPath: path)?.count == 32)

        // Same key: what one seals, the other opens.
        let pki = try TestPKI()
        let store = try SQLiteStore(path: directory.file("sigil.db"), kek: created)
        try await store.insertAuthority(pki.root, key: pki.rootKey)
        let loaded = try KeyEncryptionKey.load(path: path, create: false)
        let reopened = try SQLiteStore(path: directory.file("sigil.db"), kek: loaded)
        #expect(try await reopened.authorityKey(id: pki.root.id).publicKey() == pki.rootKey.publicKey())
    }

    @Test("load with create keeps an existing key")
    func createKeepsExisting() throws {
        let directory = try TemporaryDirectory()
        let path = directory.file("kek")
        _ = try KeyEncryptionKey.load(path: path, create: true)
        let before = FileManager.default.contents(atPath: path)
        _ = try KeyEncryptionKey.load(path: path, create: true)
        #expect(FileManager.default.contents(atPath: path) == before)
    }

    @Test("a missing key without create is not_found")
    func missing() throws {
        let directory = try TemporaryDirectory()
        expectStorageError(.notFound) { try KeyEncryptionKey.load(path: directory.file("kek"), create: false) }
    }

    @Test(
        "a key file group or others can access is refused as insecure",
        arguments: [0o644, 0o640, 0o604, 0o660, 0o602] as [mode_t])
    func insecureModes(_ mode: mode_t) throws {
        let directory = try TemporaryDirectory()
        let path = directory.file("kek")
        _ = try KeyEncryptionKey.load(path: path, create: true)
        #expect(chmod(path, mode) == 0)
        expectStorageError(.insecure) { try KeyEncryptionKey.load(path: path, create: false) }
        expectStorageError(.insecure) { try KeyEncryptionKey.load(path: path, create: true) }
    }

    @Test("a key file of the wrong length is corrupt", arguments: [0, 16, 31, 33, 64])
    func wrongLength(_ length: Int) throws {
        let directory = try TemporaryDirectory()
        let path = directory.file("kek")
        try SecureFile.write(Data(repeating: 7, count: length), to: path)
        expectStorageError(.corrupt) { try KeyEncryptionKey.load(path: path, create: false) }
        expectStorageError(.corrupt) { try KeyEncryptionKey(bytes: [UInt8](repeating: 7, count: length)) }
    }

    @Test("each created key is fresh")
    func createdKeysDiffer() throws {
        let directory = try TemporaryDirectory()
        for name in ["a", "b"] { _ = try KeyEncryptionKey.load(path: directory.file(name), create: true) }
        let first = FileManager.default.contents(atPath: directory.file("a"))
        #expect(first != nil)
        #expect(first != FileManager.default.contents(atPath: directory.file("b")))
    }
}
