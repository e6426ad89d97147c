import Foundation
import SigilFiles
import SigilTestSupport
import Testing

@Suite("SecureFile")
struct SecureFileTests {
    @Test("a secret is read only from a private regular file of ours: not through a link, not readable by others")
    func readPrivate() throws {
        let directory = try TemporaryDirectory()
        let path = directory.file("kek")
        try SecureFile.write(Data("secret".utf8), to: path)
        #expect(try SecureFile.readPrivate(path) == Data("secret".utf8))

        // A link planted in place of the key, even to a private file: refused, not followed.
        let link = directory.file("linked-kek")
        #expect(symlink(path, link) == 0)
        let linked = #expect(throws: FileError.self) { try SecureFile.readPrivate(link) }
        #expect(linked?.code == .insecure && linked?.reason.contains("symbolic link") == true)
        #expect(throws: FileError.self) { try SecureFile.requirePrivate(link) }

        for mode: mode_t in [0o640, 0o604, 0o660] {
            chmod(path, mode)
            let error = #expect(throws: FileError.self) { try SecureFile.readPrivate(path) }
            #expect(error?.code == .insecure && error?.reason.contains("chmod 600") == true)
        }
        chmod(path, 0o600)
        // A directory is not a key file.
        #expect(throws: FileError.self) { try SecureFile.readPrivate(directory.path) }
        if geteuid() == 0 {
            // Owned by another user: refused even with a private mode.
            #expect(chown(path, 65534, 65534) == 0)
            let error = #expect(throws: FileError.self) { try SecureFile.readPrivate(path) }
            #expect(error?.code == .insecure && error?.reason.contains("owned by uid 65534") == true)
        }
    }

    /// Names in `directory`, hidden ones included.
    static func entries(_ directory: TemporaryDirectory) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: directory.path).sorted()
    }

    @Test("write creates the file with mode 0600 and the exact contents")
    func writeCreatesPrivateFile() throws {
        let directory = try TemporaryDirectory()
        let path = directory.file("secret")
        try SecureFile.write(Data("hello".utf8), to: path)
        #expect(FileManager.default.contents(atPath: path) == Data("hello".utf8))
        #expect(fileMode(path) == 0o600)
    }

    @Test("write honours an explicit mode regardless of the umask", arguments: [0o644, 0o600, 0o400] as [mode_t])
    func explicitMode(_ mode: mode_t) throws {
        let directory = try TemporaryDirectory()
        let path = directory.file("bundle.pem")
        try SecureFile.write(Data("public".utf8), to: path, mode: mode)
        #expect(fileMode(path) == mode)
    }

    @Test("write replaces a file atomically: a new inode, the new mode, no temporary file left behind")
    func replaceIsAtomic() throws {
        let directory = try TemporaryDirectory()
        let path = directory.file("svid.key")
        try SecureFile.write(Data("old".utf8), to: path, mode: 0o644)
        let reader = try FileHandle(forReadingFrom: URL(fileURLWithPath: path))
        defer { try? reader.close() }

        try SecureFile.write(Data("new contents".utf8), to: path)
        #expect(FileManager.default.contents(atPath: path) == Data("new contents".utf8))
        #expect(fileMode(path) == 0o600)
        // A reader that opened the old file still sees the old contents whole: the file was renamed over,
        // not rewritten in place.
        #expect(try reader.readToEnd() == Data("old".utf8))
        #expect(try Self.entries(directory) == ["svid.key"])
    }

    @Test("a failed write leaves the old file and no temporary file")
    func failedWriteKeepsOldFile() throws {
        let directory = try TemporaryDirectory()
        let path = directory.file("target")
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: false)
        try FileManager.default.createDirectory(atPath: path + "/child", withIntermediateDirectories: false)
        // rename(2) cannot replace a non-empty directory with a file.
        expectFileError(.unavailable) { try SecureFile.write(Data("x".utf8), to: path) }
        #expect(try Self.entries(directory) == ["target"])
    }

    @Test("writing into a missing directory is unavailable")
    func missingDirectory() throws {
        let directory = try TemporaryDirectory()
        expectFileError(.unavailable) { try SecureFile.write(Data("x".utf8), to: directory.file("no/such/file")) }
    }

    @Test("requirePrivate accepts owner-only modes and refuses any group or other bit")
    func requirePrivate() throws {
        let directory = try TemporaryDirectory()
        let path = directory.file("f")
        try SecureFile.write(Data("x".utf8), to: path)
        for mode: mode_t in [0o600, 0o400, 0o700] {
            chmod(path, mode)
            #expect(throws: Never.self) { try SecureFile.requirePrivate(path) }
        }
        for mode: mode_t in [0o610, 0o601, 0o620, 0o644] {
            chmod(path, mode)
            expectFileError(.insecure) { try SecureFile.requirePrivate(path) }
        }
        expectFileError(.unavailable) { try SecureFile.requirePrivate(directory.file("missing")) }
    }

    @Test("ensurePrivateDirectory creates missing directories 0700 and tightens wide ones")
    func ensurePrivateDirectory() throws {
        let parent = try TemporaryDirectory()
        let nested = parent.file("a/b")
        try SecureFile.ensurePrivateDirectory(nested)
        #expect(fileMode(nested) == 0o700)
        chmod(nested, 0o777)
        try SecureFile.ensurePrivateDirectory(nested)
        #expect(fileMode(nested) == 0o700)
    }
}

/// Expects `body` to throw a `FileError` with `code`.
func expectFileError<R>(
    _ code: FileError.Code, sourceLocation: SourceLocation = #_sourceLocation, _ body: () throws -> R
) {
    let error = #expect(throws: FileError.self, sourceLocation: sourceLocation) { try body() }
    if let error { #expect(error.code == code, "\(error)", sourceLocation: sourceLocation) }
}
