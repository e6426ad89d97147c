import Foundation

/// Files that hold secrets: written atomically with mode 0600, checked before they are read.
public enum SecureFile {
    /// Writes `data` to `path` with mode 0600 atomically (temporary file, fsync, rename, fsync of the directory).
    public static func write(_ data: Data, to path: String, mode: mode_t = 0o600) throws {
        let directory = (path as NSString).deletingLastPathComponent
        // A fresh random name, created exclusively and never through a symlink: concurrent writers of one path
        // cannot clobber each other's temporary file, and a planted link cannot redirect the write.
        let suffix = randomHex(8)
        let temporary = "\(directory.isEmpty ? "." : directory)/.\((path as NSString).lastPathComponent).tmp-\(suffix)"
        try create(data, at: temporary, mode: mode)
        guard rename(temporary, path) == 0 else {
            let reason = errnoText()
            unlink(temporary)
            throw FileError(.unavailable, reason: "cannot write \(path): \(reason)")
        }
        syncDirectory(directory.isEmpty ? "." : directory)
    }

    /// Creates `path` (which must not exist, and is never followed through a symlink) with `mode`, writes
    /// `data` and fsyncs it; removes it again if that fails. The caller makes the name durable.
    static func create(_ data: Data, at path: String, mode: mode_t) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode)
        guard fd >= 0 else { throw FileError(.unavailable, reason: "cannot create \(path): \(errnoText())") }
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
            throw FileError(.unavailable, reason: "cannot write \(path): \(reason)")
        }
    }

    /// fsyncs a directory, so that names created or renamed in it survive a crash (best effort).
    static func syncDirectory(_ directory: String) {
        let fd = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { return }
        fsync(fd)
        close(fd)
    }

    /// Reads a file that holds a secret (the key-encryption key, an issuer key, a credential), checked on the
    /// descriptor it is read from, so nothing can be swapped in between the check and the read:
    /// opened with `O_NOFOLLOW` (a symlink planted in its place is refused), and it must be a regular file
    /// owned by the effective user with no group or other permission bits.
    /// - Throws: `insecure` for a link, another owner or a wider mode; `unavailable` when it cannot be read.
    public static func readPrivate(_ path: String, limit: Int = 1 << 20) throws -> Data {
        let fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY)
        guard fd >= 0 else {
            if errno == ELOOP {
                throw FileError(
                    .insecure, reason: "\(path) is a symbolic link; secrets are read only from regular files")
            }
            throw FileError(.unavailable, reason: "cannot open \(path): \(errnoText())")
        }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            throw FileError(.unavailable, reason: "cannot stat \(path): \(errnoText())")
        }
        try checkPrivate(info, path)
        var data = Data()
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = read(fd, &buffer, buffer.count)
            if count < 0 { throw FileError(.unavailable, reason: "cannot read \(path): \(errnoText())") }
            if count == 0 { return data }
            data.append(contentsOf: buffer[..<count])
            guard data.count <= limit else {
                throw FileError(.unavailable, reason: "\(path) is larger than \(limit) bytes")
            }
        }
    }

    /// Throws `insecure` unless `path` (not followed if it is a link) is a regular file of the effective user
    /// that group and others cannot access.
    public static func requirePrivate(_ path: String) throws {
        var info = stat()
        guard lstat(path, &info) == 0 else {
            throw FileError(.unavailable, reason: "cannot stat \(path): \(errnoText())")
        }
        try checkPrivate(info, path)
    }

    private static func checkPrivate(_ info: stat, _ path: String) throws {
        guard info.st_mode & S_IFMT == S_IFREG else {
            throw FileError(
                .insecure, reason: "\(path) is not a regular file; secrets are read only from regular files")
        }
        guard info.st_uid == geteuid() else {
            throw FileError(
                .insecure,
                reason:
                    "\(path) is owned by uid \(info.st_uid), not by the user Sigil runs as (uid \(geteuid())); run chown"
            )
        }
        if info.st_mode & 0o077 != 0 {
            throw FileError(
                .insecure,
                reason:
                    "\(path) is accessible by group or others (mode \(String(info.st_mode & 0o777, radix: 8))); run chmod 600 \(path)"
            )
        }
    }

    /// Creates `path` as a directory with mode 0700 if missing; tightens an existing one that is wider.
    public static func ensurePrivateDirectory(_ path: String) throws {
        var info = stat()
        if stat(path, &info) != 0 {
            do {
                try FileManager.default.createDirectory(
                    atPath: path, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            } catch {
                throw FileError(
                    .unavailable, reason: "cannot create data directory \(path): \(error.localizedDescription)")
            }
        } else if info.st_mode & 0o077 != 0 {
            guard chmod(path, 0o700) == 0 else {
                throw FileError(
                    .insecure, reason: "data directory \(path) is accessible by others and cannot be tightened")
            }
        }
    }
}
