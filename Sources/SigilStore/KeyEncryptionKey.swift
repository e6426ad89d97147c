import Foundation
import SigilCrypto

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
    public static func generate() throws -> KeyEncryptionKey { try KeyEncryptionKey(bytes: SecureRandom.bytes(AESGCM.keyLength)) }

    /// Reads the key at `path`, creating it (mode 0600) if `create` and it does not exist.
    /// Refuses a file that group or others can read or write.
    public static func load(path: String, create: Bool) throws -> KeyEncryptionKey {
        let manager = FileManager.default
        if !manager.fileExists(atPath: path) {
            guard create else { throw StorageError(.notFound, reason: "key-encryption key \(path) does not exist") }
            let key = try generate()
            try SecureFile.write(Data(key.bytes), to: path)
            return key
        }
        try SecureFile.requirePrivate(path)
        guard let data = manager.contents(atPath: path) else {
            throw StorageError(.unavailable, reason: "cannot read key-encryption key \(path)")
        }
        return try KeyEncryptionKey(bytes: Array(data))
    }

    func seal(_ plaintext: [UInt8], context: String) throws -> [UInt8] {
        try AESGCM.seal(plaintext, key: bytes, associatedData: Array(context.utf8))
    }

    func open(_ sealed: [UInt8], context: String) throws -> [UInt8] {
        do {
            return try AESGCM.open(sealed, key: bytes, associatedData: Array(context.utf8))
        } catch {
            throw StorageError(.corrupt, reason: "sealed key for \(context) does not open: wrong key-encryption key or tampered row")
        }
    }
}
