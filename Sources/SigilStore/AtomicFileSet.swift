import Foundation
import SigilCore
import SigilCrypto

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
    /// A regular file left at one of the names by an older layout is replaced by its link (a reader sees that
    /// one name missing until the switch).
    /// - Throws: `StorageError(.unavailable)`; the previous version stays current if the switch did not happen.
    public static func publish(_ files: [File], in directory: String, at now: Date) throws {
        let stamp = Timestamp.microseconds(now).filter { $0 != "-" && $0 != ":" }
        let version = "..\(stamp)-\(hexString(try SecureRandom.bytes(4)))"
        let versionPath = directory + "/" + version
        guard mkdir(versionPath, 0o755) == 0 else {
            throw StorageError(.unavailable, reason: "cannot create \(versionPath): \(errnoText())")
        }
        do {
            // The version directory is not visible yet: files are created in place, and one fsync of the
            // directory makes their names durable before the switch.
            for file in files { try SecureFile.create(file.contents, at: versionPath + "/" + file.name, mode: file.mode) }
            SecureFile.syncDirectory(versionPath)
        } catch {
            removeVersion(versionPath)
            throw error
        }
        do {
            // The names first (already links after the first write), then the one switch.
            for file in files {
                let path = directory + "/" + file.name
                let target = currentLink + "/" + file.name
                if (try? FileManager.default.destinationOfSymbolicLink(atPath: path)) != target { try replaceLink(path, target: target) }
            }
            try replaceLink(directory + "/" + currentLink, target: version)
        } catch {
            removeVersion(versionPath)
            throw error
        }
        SecureFile.syncDirectory(directory)
        removeStaleVersions(in: directory, keeping: version)
    }

    /// The contents of `name` in the current version, or nil when there is none.
    public static func read(_ name: String, in directory: String) -> Data? {
        FileManager.default.contents(atPath: directory + "/" + currentLink + "/" + name)
    }

    /// Points `path` at `target` in one rename (a temporary link next to it, renamed over it).
    private static func replaceLink(_ path: String, target: String) throws {
        let temporary = "\(path).tmp-\(hexString(try SecureRandom.bytes(8)))"
        guard symlink(target, temporary) == 0 else {
            throw StorageError(.unavailable, reason: "cannot create link \(temporary): \(errnoText())")
        }
        guard rename(temporary, path) == 0 else {
            let reason = errnoText()
            unlink(temporary)
            throw StorageError(.unavailable, reason: "cannot replace \(path): \(reason)")
        }
    }

    /// Removes version directories other than `current` and temporary links a crash left behind.
    private static func removeStaleVersions(in directory: String, keeping current: String) {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory) else { return }
        for name in names where name.hasPrefix("..") && name != current && name != currentLink {
            let path = directory + "/" + name
            var info = stat()
            guard lstat(path, &info) == 0 else { continue }
            if info.st_mode & S_IFMT == S_IFDIR, name.dropFirst(2).first?.isNumber == true {
                removeVersion(path)
            } else if info.st_mode & S_IFMT == S_IFLNK, name.hasPrefix(currentLink + ".tmp-") {
                unlink(path)
            }
        }
    }

    private static func removeVersion(_ path: String) {
        try? FileManager.default.removeItem(atPath: path)
    }
}
