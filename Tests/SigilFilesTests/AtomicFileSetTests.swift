import Foundation
import SigilFiles
import SigilTestSupport
import Synchronization
import Testing

@Suite("AtomicFileSet")
struct AtomicFileSetTests {
    static func pair(_ n: Int) -> [AtomicFileSet.File] {
        [
            .init(name: "svid.key", contents: Data("key \(n)".utf8), mode: 0o600),
            .init(name: "svid.pem", contents: Data("cert \(n)".utf8), mode: 0o644),
        ]
    }

    static let now = Date(timeIntervalSince1970: 1_795_000_000)

    static func text(_ path: String) -> String? {
        FileManager.default.contents(atPath: path).map { String(decoding: $0, as: UTF8.self) }
    }

    /// Hidden names (the version directories) and visible ones, sorted; the writers' lock file is left out.
    static func entries(_ directory: TemporaryDirectory) throws -> (hidden: [String], visible: [String]) {
        let names = try FileManager.default.contentsOfDirectory(atPath: directory.path).sorted().filter {
            $0 != "..lock"
        }
        return (names.filter { $0.hasPrefix("..") }, names.filter { !$0.hasPrefix("..") })
    }

    /// A directory as the older layout left it: the key and certificate as regular files.
    static func olderLayout() throws -> TemporaryDirectory {
        let directory = try TemporaryDirectory()
        try SecureFile.write(Data("old key".utf8), to: directory.file("svid.key"))
        try SecureFile.write(Data("old cert".utf8), to: directory.file("svid.pem"), mode: 0o644)
        return directory
    }

    /// Expects svid.key and svid.pem, read through their names, to hold `key` and `cert`.
    static func expectNames(
        in directory: TemporaryDirectory, key: String, cert: String, sourceLocation: SourceLocation = #_sourceLocation
    ) {
        #expect(text(directory.file("svid.key")) == key, sourceLocation: sourceLocation)
        #expect(text(directory.file("svid.pem")) == cert, sourceLocation: sourceLocation)
    }

    /// Puts a non-empty directory at `name`: rename(2) cannot put a link over it.
    static func obstruct(_ name: String, in directory: TemporaryDirectory) throws {
        try FileManager.default.createDirectory(atPath: directory.file(name + "/x"), withIntermediateDirectories: true)
    }

    @Test("cleaning up old versions never follows a link: planted links are removed, their targets stay")
    func cleanUpFollowsNoLink() throws {
        let directory = try TemporaryDirectory()
        let outside = try TemporaryDirectory()
        try SecureFile.write(Data("precious".utf8), to: outside.file("precious"))
        try AtomicFileSet.publish(Self.pair(1), in: directory.path, at: Self.now)
        let old = try #require(try Self.entries(directory).hidden.first { $0 != AtomicFileSet.currentLink })
        // A link inside the old version to a file outside, and an old-looking version that is a link to a directory.
        #expect(symlink(outside.file("precious"), directory.file(old + "/planted")) == 0)
        #expect(symlink(outside.path, directory.file("..20260101T000000.000000Z-deadbeef")) == 0)

        try AtomicFileSet.publish(Self.pair(2), in: directory.path, at: Self.now.addingTimeInterval(1))
        #expect(Self.text(outside.file("precious")) == "precious")
        #expect(FileManager.default.fileExists(atPath: outside.path))
        #expect(!FileManager.default.fileExists(atPath: directory.file(old)), "the old version is gone")
        #expect(try Self.entries(directory).hidden.count == 2, "..data and the current version")
        Self.expectNames(in: directory, key: "key 2", cert: "cert 2")
    }

    @Test("two writers on one directory take turns: neither removes the other's version before its switch")
    func writersTakeTurns() async throws {
        let directory = try TemporaryDirectory()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for writer in 0..<2 {
                group.addTask {
                    for round in 0..<25 {
                        try AtomicFileSet.publish(
                            Self.pair(writer * 100 + round), in: directory.path,
                            at: Self.now.addingTimeInterval(TimeInterval(round)))
                    }
                }
            }
            try await group.waitForAll()
        }
        let key = try #require(Self.text(directory.file("svid.key")))
        let number = try #require(Int(key.dropFirst(4)))
        Self.expectNames(in: directory, key: "key \(number)", cert: "cert \(number)")
        #expect(try Self.entries(directory).hidden.count == 2)
    }

    @Test("publish makes each name a link through ..data to one version directory, with the files' modes")
    func layout() throws {
        let directory = try TemporaryDirectory()
        try AtomicFileSet.publish(Self.pair(1), in: directory.path, at: Self.now)

        Self.expectNames(in: directory, key: "key 1", cert: "cert 1")
        #expect(fileMode(directory.file("svid.key")) == 0o600)
        #expect(fileMode(directory.file("svid.pem")) == 0o644)
        for name in ["svid.key", "svid.pem"] {
            #expect(try FileManager.default.destinationOfSymbolicLink(atPath: directory.file(name)) == "..data/\(name)")
        }
        let (hidden, visible) = try Self.entries(directory)
        #expect(visible == ["svid.key", "svid.pem"])
        #expect(hidden.count == 2 && hidden.contains("..data"), "\(hidden)")
        let version = try FileManager.default.destinationOfSymbolicLink(atPath: directory.file("..data"))
        #expect(hidden.contains(version))
        #expect(
            try FileManager.default.contentsOfDirectory(atPath: directory.file(version)).sorted() == [
                "svid.key", "svid.pem",
            ])
    }

    @Test(
        "a second publish switches every name and removes the earlier version; a reader of the old one keeps it whole")
    func replace() throws {
        let directory = try TemporaryDirectory()
        try AtomicFileSet.publish(Self.pair(1), in: directory.path, at: Self.now)
        let first = try FileManager.default.destinationOfSymbolicLink(atPath: directory.file("..data"))
        let oldKey = try FileHandle(forReadingFrom: URL(fileURLWithPath: directory.file("svid.key")))
        defer { try? oldKey.close() }

        try AtomicFileSet.publish(Self.pair(2), in: directory.path, at: Self.now)
        Self.expectNames(in: directory, key: "key 2", cert: "cert 2")
        #expect(AtomicFileSet.read("svid.pem", in: directory.path) == Data("cert 2".utf8))
        let (hidden, _) = try Self.entries(directory)
        #expect(hidden.count == 2 && !hidden.contains(first), "the earlier version was not removed: \(hidden)")
        #expect(try oldKey.readToEnd() == Data("key 1".utf8))
    }

    @Test("regular files left by the older layout are replaced by links")
    func migratesRegularFiles() throws {
        let directory = try Self.olderLayout()
        try AtomicFileSet.publish(Self.pair(1), in: directory.path, at: Self.now)
        #expect(Self.text(directory.file("svid.key")) == "key 1")
        #expect(
            try FileManager.default.destinationOfSymbolicLink(atPath: directory.file("svid.pem")) == "..data/svid.pem")
    }

    @Test("a publish that cannot place a name fails, keeps the current version and leaves no new one behind")
    func failureKeepsCurrent() throws {
        let directory = try TemporaryDirectory()
        try AtomicFileSet.publish(Self.pair(1), in: directory.path, at: Self.now)
        let before = try Self.entries(directory)
        try Self.obstruct("bundle.pem", in: directory)
        let files = Self.pair(2) + [.init(name: "bundle.pem", contents: Data("bundle".utf8), mode: 0o644)]

        expectFileError(.unavailable) { try AtomicFileSet.publish(files, in: directory.path, at: Self.now) }
        Self.expectNames(in: directory, key: "key 1", cert: "cert 1")
        #expect(try Self.entries(directory).hidden == before.hidden)
    }

    @Test(
        "a first publish over the older layout that cannot switch leaves the regular files readable, not dangling links"
    )
    func failedFirstSwitchKeepsOldFiles() throws {
        let directory = try Self.olderLayout()
        try Self.obstruct("..data", in: directory)

        expectFileError(.unavailable) { try AtomicFileSet.publish(Self.pair(1), in: directory.path, at: Self.now) }
        Self.expectNames(in: directory, key: "old key", cert: "old cert")
        #expect(try Self.entries(directory) == (["..data"], ["svid.key", "svid.pem"]))

        // Once the obstacle is gone the next publish completes the layout.
        try FileManager.default.removeItem(atPath: directory.file("..data"))
        try AtomicFileSet.publish(Self.pair(2), in: directory.path, at: Self.now)
        #expect(Self.text(directory.file("svid.key")) == "key 2")
        #expect(
            try FileManager.default.destinationOfSymbolicLink(atPath: directory.file("svid.key")) == "..data/svid.key")
    }

    @Test("temporary links a crash left behind, of ..data and of the names, are removed by the next publish")
    func removesCrashLeftovers() throws {
        let directory = try TemporaryDirectory()
        try AtomicFileSet.publish(Self.pair(1), in: directory.path, at: Self.now)
        for (name, target) in [
            ("..data.tmp-0011223344556677", "..20261126T000000000000Z-00112233"),
            ("svid.pem.tmp-8899aabbccddeeff", "..data/svid.pem"),
        ] {
            #expect(symlink(target, directory.file(name)) == 0)
        }
        // A workload's own file that happens to contain ".tmp-" is not Sigil's to remove.
        try SecureFile.write(Data("mine".utf8), to: directory.file("notes.tmp-1"))

        try AtomicFileSet.publish(Self.pair(2), in: directory.path, at: Self.now)
        let (hidden, visible) = try Self.entries(directory)
        #expect(hidden.count == 2 && hidden.contains("..data"), "\(hidden)")
        #expect(visible == ["notes.tmp-1", "svid.key", "svid.pem"])
    }

    @Test("a reader that resolves ..data once always gets a matching key and certificate while versions change")
    func readersSeeMatchingPairs() async throws {
        let directory = try TemporaryDirectory()
        try AtomicFileSet.publish(Self.pair(0), in: directory.path, at: Self.now)
        let shared = ReaderState()
        let path = directory.path
        // A thread of its own, not a task: under a busy test run the cooperative pool might not schedule it.
        let (finished, finish) = AsyncStream.makeStream(of: Void.self)
        let reader = Thread {
            while !shared.done.load(ordering: .acquiring) {
                // One directory descriptor for both reads: the version cannot change between them.
                let fd = open(path + "/..data", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
                guard fd >= 0 else { continue }
                defer { close(fd) }
                guard let key = Self.read(at: fd, "svid.key"), let cert = Self.read(at: fd, "svid.pem") else {
                    continue
                }
                shared.pairs.add(1, ordering: .relaxed)
                if key.dropFirst(4) != cert.dropFirst(5) {
                    shared.mismatches.withLock { $0.append("\(key) / \(cert)") }
                }
            }
            finish.finish()
        }
        reader.start()
        // At least 200 switches, and on until the reader has checked 50 pairs (bounded, should it never run).
        var n = 0
        while n < 200 || (shared.pairs.load(ordering: .relaxed) < 50 && n < 100_000) {
            n += 1
            try AtomicFileSet.publish(Self.pair(n), in: directory.path, at: Self.now)
        }
        shared.done.store(true, ordering: .releasing)
        for await _ in finished {}
        let found = shared.mismatches.withLock { $0 }
        #expect(found.count == 0, "first mismatches: \(found.prefix(5))")
        #expect(shared.pairs.load(ordering: .relaxed) >= 50)
        #expect(Self.text(directory.file("svid.pem")) == "cert \(n)")
    }

    /// What the reader thread and the test share.
    final class ReaderState: Sendable {
        let done = Atomic<Bool>(false)
        let pairs = Atomic<Int>(0)
        let mismatches = Mutex<[String]>([])
    }

    /// The contents of `name` in the directory open at `fd`, or nil when it was removed meanwhile.
    static func read(at fd: Int32, _ name: String) -> String? {
        let file = openat(fd, name, O_RDONLY | O_CLOEXEC)
        guard file >= 0 else { return nil }
        defer { close(file) }
        var buffer = [UInt8](repeating: 0, count: 64)
        let count = Foundation.read(file, &buffer, buffer.count)
        return count > 0 ? String(decoding: buffer[..<count], as: UTF8.self) : nil
    }
}
