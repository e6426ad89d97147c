import Foundation
import SigilCore
import SigilCrypto
import SigilFiles

/// The 32-byte key that seals authority private keys at rest (AES-256-GCM), kept in a 0600 file.
public struct KeyEncryptionKey: Sendable {
    let bytes: [UInt8]

    public init(bytes: [UInt8]) throws {
        guard bytes.count == AESGCM.keyLength else {
            throw StorageError(.corrupt, reason: "key-encryption key must be \(AESGCM.keyLength) bytes")
        }
        self.bytes = bytes
    }

    /// A fresh random key.
    public static func generate() throws -> KeyEncryptionKey {
        try KeyEncryptionKey(bytes: SecureRandom.bytes(AESGCM.keyLength))
    }

    /// Reads the key at `path`, creating it (mode 0600) if `create` and it does not exist.
    /// Refuses a symlink, a file of another user, or one that group or others can access (`SecureFile.readPrivate`).
    public static func load(path: String, create: Bool) throws -> KeyEncryptionKey {
        var info = stat()
        if lstat(path, &info) != 0 && errno == ENOENT {
            guard create else { throw StorageError(.notFound, reason: "key-encryption key \(path) does not exist") }
            let key = try generate()
            try StorageError.mappingFiles { try SecureFile.write(Data(key.bytes), to: path) }
            return key
        }
        return try KeyEncryptionKey(
            bytes: Array(try StorageError.mappingFiles { try SecureFile.readPrivate(path, limit: 1024) }))
    }

    func seal(_ plaintext: [UInt8], context: String) throws -> [UInt8] {
        try AESGCM.seal(plaintext, key: bytes, associatedData: Array(context.utf8))
    }

    func open(_ sealed: [UInt8], context: String) throws -> [UInt8] {
        do {
            return try AESGCM.open(sealed, key: bytes, associatedData: Array(context.utf8))
        } catch {
            throw StorageError(
                .corrupt, reason: "sealed key for \(context) does not open: wrong key-encryption key or tampered row")
        }
    }
}
