import Foundation
import SigilCore
import Testing

// Expectations shared by the test targets (Swift Testing): errors compare by code, and the reason is shown.

/// Expects `body` to throw a `CAError` with `code`.
@discardableResult
public func expectCAError<R>(
    _ code: CAError.Code, sourceLocation: SourceLocation = #_sourceLocation, _ body: () throws -> R
) -> CAError? {
    let error = #expect(throws: CAError.self, sourceLocation: sourceLocation) { try body() }
    if let error { #expect(error.code == code, "\(error)", sourceLocation: sourceLocation) }
    return error
}

/// Expects `body` to throw a `CAError` with `code`.
@discardableResult
public func expectCAError<R>(
    _ code: CAError.Code, sourceLocation: SourceLocation = #_sourceLocation, _ body: () async throws -> R
) async -> CAError? {
    let error = await #expect(throws: CAError.self, sourceLocation: sourceLocation) { try await body() }
    if let error { #expect(error.code == code, "\(error)", sourceLocation: sourceLocation) }
    return error
}

/// Expects `body` to throw a `StorageError` with `code`.
public func expectStorageError<R>(
    _ code: StorageError.Code, sourceLocation: SourceLocation = #_sourceLocation, _ body: () async throws -> R
) async {
    let error = await #expect(throws: StorageError.self, sourceLocation: sourceLocation) { try await body() }
    if let error { #expect(error.code == code, "\(error)", sourceLocation: sourceLocation) }
}

/// Expects `body` to throw a `StorageError` with `code`.
public func expectStorageError<R>(
    _ code: StorageError.Code, sourceLocation: SourceLocation = #_sourceLocation, _ body: () throws -> R
) {
    let error = #expect(throws: StorageError.self, sourceLocation: sourceLocation) { try body() }
    if let error { #expect(error.code == code, "\(error)", sourceLocation: sourceLocation) }
}

/// The permission bits of `path`, or nil if it cannot be stat'ed.
public func fileMode(_ path: String) -> mode_t? {
    var info = stat()
    guard stat(path, &info) == 0 else { return nil }
    return info.st_mode & 0o777
}
