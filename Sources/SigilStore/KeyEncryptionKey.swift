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

/// Files that hold secrets: written atomically with mode 0600, checked before they are read.
public enum SecureFile {
    /// Writes `data` to `path` with mode 0600 atomically (temporary file, fsync, rename, fsync of the directory).
    public static func write(_ data: Data, to path: String, mode: mode_t = 0o600) throws {
        let directory = (path as NSString).deletingLastPathComponent
        // A fresh random name, created exclusively and never through a symlink: concurrent writers of one path
        // cannot clobber each other's temporary file, and a planted link cannot redirect the write.
        let suffix = hexString((try? SecureRandom.bytes(8)) ?? Array("\(getpid())".utf8))
        let temporary = "\(directory.isEmpty ? "." : directory)/.\((path as NSString).lastPathComponent).tmp-\(suffix)"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode)
        guard fd >= 0 else { throw StorageError(.unavailable, reason: "cannot create \(temporary): \(errnoText())") }
        var ok = fchmod(fd, mode) == 0
        data.withUnsafeBytes { buffer in
            var offset = 0
            while ok && offset < buffer.count {
                let written = Foundation.write(fd, buffer.baseAddress! + offset, buffer.count - offset)
                if written <= 0 { ok = false } else { offset += written }
            }
        }
        ok = ok && fsync(fd) == 0
        close(fd)
        guard ok, rename(temporary, path) == 0 else {
            let reason = errnoText()
            unlink(temporary)
            throw StorageError(.unavailable, reason: "cannot write \(path): \(reason)")
        }
        let dirFD = open(directory.isEmpty ? "." : directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dirFD >= 0 {
            fsync(dirFD)
            close(dirFD)
        }
    }

    /// Throws `insecure` if group or others have any access to `path`.
    public static func requirePrivate(_ path: String) throws {
        var info = stat()
        guard stat(path, &info) == 0 else { throw StorageError(.unavailable, reason: "cannot stat \(path): \(errnoText())") }
        if info.st_mode & 0o077 != 0 {
            throw StorageError(
                .insecure,
                reason: "\(path) is accessible by group or others (mode \(String(info.st_mode & 0o777, radix: 8))); run chmod 600 \(path)")
        }
    }

    /// Creates `path` as a directory with mode 0700 if missing; tightens an existing one that is wider.
    public static func ensurePrivateDirectory(_ path: String) throws {
        var info = stat()
        if stat(path, &info) != 0 {
            do {
                try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            } catch {
                throw StorageError(.unavailable, reason: "cannot create data directory \(path): \(error.localizedDescription)")
            }
        } else if info.st_mode & 0o077 != 0 {
            guard chmod(path, 0o700) == 0 else {
                throw StorageError(.insecure, reason: "data directory \(path) is accessible by others and cannot be tightened")
            }
        }
    }
}

func errnoText() -> String { String(cString: strerror(errno)) }
