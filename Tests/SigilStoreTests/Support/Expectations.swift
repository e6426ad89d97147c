import Foundation
import SigilCore
import SigilStore
import Testing

/// Expects `body` to throw a `StorageError` with `code` (errors compare by code; this also shows the reason).
func expectStorageError<R>(
    _ code: StorageError.Code, sourceLocation: SourceLocation = #_sourceLocation, _ body: () async throws -> R
) async {
    let error = await #expect(throws: StorageError.self, sourceLocation: sourceLocation) { try await body() }
    if let error { #expect(error.code == code, "\(error)", sourceLocation: sourceLocation) }
}

/// Expects `body` to throw a `StorageError` with `code`.
func expectStorageError<R>(
    _ code: StorageError.Code, sourceLocation: SourceLocation = #_sourceLocation, _ body: () throws -> R
) {
    let error = #expect(throws: StorageError.self, sourceLocation: sourceLocation) { try body() }
    if let error { #expect(error.code == code, "\(error)", sourceLocation: sourceLocation) }
}

/// The permission bits of `path`, or nil if it cannot be stat'ed.
func fileMode(_ path: String) -> mode_t? {
    var info = stat()
    guard stat(path, &info) == 0 else { return nil }
    return info.st_mode & 0o777
}
