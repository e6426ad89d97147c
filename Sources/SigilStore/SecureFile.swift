import Foundation
import SigilCrypto

/// Files that hold secrets: written atomically with mode 0600, checked before they are read.
public enum SecureFile {
    /// Writes `data` to `path` with mode 0600 atomically (temporary file, fsync, rename, fsync of the directory).
    public static func write(_ data: Data, to path: String, mode: mode_t = 0o600) throws {
        let directory = (path as NSString).deletingLastPathComponent
        // A fresh random name, created exclusively and never through a symlink: concurrent writers of one path
        // cannot clobber each other's temporary file, and a planted link cannot redirect the write.
        let suffix = hexString((try? SecureRandom.bytes(8)) ?? Array("\(getpid())".utf8))
        let temporary = "\(directory.isEmpty ? "." : directory)/.\((path as NSString).lastPathComponent).tmp-\(suffix)"
        try create(data, at: temporary, mode: mode)
        guard rename(temporary, path) == 0 else {
            let reason = errnoText()
            unlink(temporary)
            throw StorageError(.unavailable, reason: "cannot write \(path): \(reason)")
        }
        syncDirectory(directory.isEmpty ? "." : directory)
    }

    /// Creates `path` (which must not exist, and is never followed through a symlink) with `mode`, writes
    /// `data` and fsyncs it; removes it again if that fails. The caller makes the name durable.
    static func create(_ data: Data, at path: String, mode: mode_t) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode)
        guard fd >= 0 else { throw StorageError(.unavailable, reason: "cannot create \(path): \(errnoText())") }
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
        guard ok else {
            let reason = errnoText()
            unlink(path)
            throw StorageError(.unavailable, reason: "cannot write \(path): \(reason)")
        }
    }

    /// fsyncs a directory, so that names created or renamed in it survive a crash (best effort).
    static func syncDirectory(_ directory: String) {
        let fd = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { return }
        fsync(fd)
        close(fd)
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
