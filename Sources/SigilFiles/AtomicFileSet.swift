import Foundation

/// Files that must change together (a certificate, its key and the bundle it chains to), laid out the way
/// Kubernetes' AtomicWriter lays out projected volumes:
///
///     svid.pem  -> ..data/svid.pem
///     svid.key  -> ..data/svid.key
///     ..data    -> ..20261126T031500.123456Z-1a2b3c4d   (one hidden version directory per write)
///
/// A write fills a fresh version directory, then renames one new `..data` link over the old: every name
/// switches at that one instant, so a reader never pairs a new certificate with the old key. A reader that
/// opens two files must resolve `..data` once (or reload on change) to be sure of a matching pair; readers
/// that watch for changes should watch the directory, not the file names, which stay the same links.
public enum AtomicFileSet {
    /// The link that names the current version directory.
    public static let currentLink = "..data"

    public struct File: Sendable {
        public var name: String
        public var contents: Data
        public var mode: mode_t

        public init(name: String, contents: Data, mode: mode_t) {
            self.name = name
            self.contents = contents
            self.mode = mode
        }
    }

    /// Replaces the set in `directory` (which must exist) with `files`, and removes earlier versions; `now`
    /// names the version directory (with a random suffix, so equal times do not collide).
    /// A name that is not yet a link through `..data` (the first write, or a regular file left by an older
    /// layout) becomes one just after the switch: until then it keeps what it had, so no name ever points at
    /// a `..data` that does not exist yet. Each such name is checked and its link made before the switch.
    /// - Throws: `FileError(.unavailable)`. When the switch did not happen the previous version stays
    ///   current and no new one is left behind; should a name fail to take its link after the switch (it
    ///   passed the checks, so only a change made meanwhile can cause that), the new version is current and
    ///   that name keeps its old contents until the next publish.
    public static func publish(_ files: [File], in directory: String, at now: Date) throws {
        // One writer at a time: another agent (or a second instance by mistake) on the same directory would
        // otherwise remove this writer's version directory as stale before its switch.
        let lock = try WriterLock(directory: directory)
        defer { lock.release() }
        let stamp = versionStamp(now)
        let version = "..\(stamp)-\(randomHex(4))"
        let versionPath = directory + "/" + version
        guard mkdir(versionPath, 0o755) == 0 else {
            throw FileError(.unavailable, reason: "cannot create \(versionPath): \(errnoText())")
        }
        // Links for the names, made under temporary names now and renamed into place after the switch.
        var pending: [(temporary: String, path: String)] = []
        do {
            // The version directory is not visible yet: files are created in place, and one fsync of the
            // directory makes their names durable before the switch.
            for file in files {
                try SecureFile.create(file.contents, at: versionPath + "/" + file.name, mode: file.mode)
            }
            SecureFile.syncDirectory(versionPath)
            for file in files {
                let path = directory + "/" + file.name
                let target = currentLink + "/" + file.name
                if (try? FileManager.default.destinationOfSymbolicLink(atPath: path)) == target { continue }
                try checkReplaceable(path)
                pending.append((try temporaryLink(besides: path, target: target), path))
            }
            let current = directory + "/" + currentLink
            try checkReplaceable(current)
            let switchLink = (temporary: try temporaryLink(besides: current, target: version), path: current)
            do { try rename(switchLink) } catch {
                unlink(switchLink.temporary)
                throw error
            }
        } catch {
            for link in pending { unlink(link.temporary) }
            removeVersion(versionPath)
            throw error
        }
        // The switch happened: the new version is current, whatever follows.
        var failure: (any Error)?
        for link in pending {
            do { try rename(link) } catch {
                unlink(link.temporary)
                failure = failure ?? error
            }
        }
        SecureFile.syncDirectory(directory)
        removeStaleVersions(in: directory, keeping: version)
        if let failure { throw failure }
    }

    /// The contents of `name` in the current version, or nil when there is none.
    public static func read(_ name: String, in directory: String) -> Data? {
        FileManager.default.contents(atPath: directory + "/" + currentLink + "/" + name)
    }

    /// `20261126T031500.123456Z`: the UTC time of a version, sortable, without characters a shell minds.
    static func versionStamp(_ date: Date) -> String {
        let micros = Int64((date.timeIntervalSince1970 * 1_000_000).rounded(.down))
        var seconds = time_t(micros / 1_000_000)
        var parts = tm()
        gmtime_r(&seconds, &parts)
        return String(
            format: "%04d%02d%02dT%02d%02d%02d.%06dZ", Int(parts.tm_year) + 1900, Int(parts.tm_mon) + 1,
            Int(parts.tm_mday),
            Int(parts.tm_hour), Int(parts.tm_min), Int(parts.tm_sec), Int(micros % 1_000_000))
    }

    /// A new link to `target` next to `path`, under a temporary name (`<name>.tmp-<random>`).
    private static func temporaryLink(besides path: String, target: String) throws -> String {
        let temporary = "\(path).tmp-\(randomHex(8))"
        guard symlink(target, temporary) == 0 else {
            throw FileError(.unavailable, reason: "cannot create link \(temporary): \(errnoText())")
        }
        return temporary
    }

    /// Renames the temporary link over its name: one atomic step.
    private static func rename(_ link: (temporary: String, path: String)) throws {
        guard Foundation.rename(link.temporary, link.path) == 0 else {
            throw FileError(.unavailable, reason: "cannot replace \(link.path): \(errnoText())")
        }
    }

    /// Throws unless a link can be renamed over `path`: rename(2) never replaces a directory with a link.
    private static func checkReplaceable(_ path: String) throws {
        var info = stat()
        if lstat(path, &info) == 0, info.st_mode & S_IFMT == S_IFDIR {
            throw FileError(.unavailable, reason: "cannot replace \(path): it is a directory")
        }
    }

    /// Removes version directories other than `current`, and the temporary links a crash left behind (those
    /// of `..data`, and those of the names, which point into `..data`).
    private static func removeStaleVersions(in directory: String, keeping current: String) {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory) else { return }
        for name in names where name.hasPrefix("..") && name != current && name != currentLink && name != "..lock" {
            let path = directory + "/" + name
            var info = stat()
            guard lstat(path, &info) == 0 else { continue }
            let looksLikeVersion = name.dropFirst(2).first?.isNumber == true
            if info.st_mode & S_IFMT == S_IFDIR, looksLikeVersion {
                removeVersion(path)
            } else if info.st_mode & S_IFMT == S_IFLNK, looksLikeVersion || name.hasPrefix(currentLink + ".tmp-") {
                unlink(path)  // a link where a version or temporary link belongs: removed itself, never followed
            }
        }
        for name in names where !name.hasPrefix("..") && name.contains(".tmp-") {
            let path = directory + "/" + name
            if let target = try? FileManager.default.destinationOfSymbolicLink(atPath: path),
                target.hasPrefix(currentLink + "/")
            {
                unlink(path)
            }
        }
    }

    /// Removes a version directory and the files in it without following any link: the directory is opened
    /// with `O_NOFOLLOW` (a link put in its place is removed as a link), and entries are unlinked by name
    /// relative to it, so a link planted inside is removed, never its target. Anything that is not a plain
    /// entry Sigil writes (a subdirectory) is left, and then so is the directory.
    static func removeVersion(_ path: String) {
        let parent = (path as NSString).deletingLastPathComponent
        let name = (path as NSString).lastPathComponent
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else {
            if errno == ELOOP || errno == ENOTDIR { unlink(path) }
            return
        }
        if let stream = fdopendir(fd) {
            defer { closedir(stream) }
            while let entry = readdir(stream) {
                let entryName = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                    String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
                }
                if entryName == "." || entryName == ".." { continue }
                var info = stat()
                guard fstatat(fd, entryName, &info, AT_SYMLINK_NOFOLLOW) == 0, info.st_mode & S_IFMT != S_IFDIR else {
                    continue
                }
                unlinkat(fd, entryName, 0)
            }
        } else {
            close(fd)
        }
        let parentFD = open(parent.isEmpty ? "." : parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard parentFD >= 0 else { return }
        unlinkat(parentFD, name, AT_REMOVEDIR)
        close(parentFD)
    }

    /// An exclusive `flock` on `<directory>/..lock` for the time of one publish.
    struct WriterLock {
        let fd: Int32

        init(directory: String) throws {
            fd = open(directory + "/..lock", O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0o600)
            guard fd >= 0 else {
                throw FileError(.unavailable, reason: "cannot open \(directory)/..lock: \(errnoText())")
            }
            guard flock(fd, LOCK_EX) == 0 else {
                let reason = errnoText()
                close(fd)
                throw FileError(.unavailable, reason: "cannot lock \(directory)/..lock: \(reason)")
            }
        }

        func release() {
            flock(fd, LOCK_UN)
            close(fd)
        }
    }
}
