import Foundation

/// A fresh private directory under the system temporary directory, removed with everything in it when
/// the last reference goes away.
public final class TemporaryDirectory: Sendable {
    /// Absolute path of the directory (mode 0700, as `mkdtemp(3)` makes it).
    public let path: String

    /// Creates the directory.
    /// - Throws: `CocoaError(.fileWriteUnknown)` if `mkdtemp` fails.
    public init(prefix: String = "sigil-test") throws {
        let base = NSTemporaryDirectory().hasSuffix("/") ? NSTemporaryDirectory() : NSTemporaryDirectory() + "/"
        var template = Array("\(base)\(prefix)-XXXXXX".utf8CString)
        guard let created = mkdtemp(&template) else { throw CocoaError(.fileWriteUnknown) }
        path = String(cString: created)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }

    /// The path of `name` inside the directory.
    public func file(_ name: String) -> String { path + "/" + name }
}

/// Runs `body` with a fresh temporary directory and removes the directory afterwards.
public func withTemporaryDirectory<T>(_ body: (TemporaryDirectory) async throws -> T) async throws -> T {
    let directory = try TemporaryDirectory()
    return try await body(directory)
}
