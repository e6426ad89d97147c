import SigilCore
import Testing

/// Expects `body` to throw a `CAError` with `code` (errors compare by code; this also shows the reason).
@discardableResult
func expectCAError<R>(
    _ code: CAError.Code, sourceLocation: SourceLocation = #_sourceLocation, _ body: () throws -> R
) -> CAError? {
    let error = #expect(throws: CAError.self, sourceLocation: sourceLocation) { try body() }
    if let error { #expect(error.code == code, "\(error)", sourceLocation: sourceLocation) }
    return error
}

/// Expects `body` to throw a `CAError` with `code`.
@discardableResult
func expectCAError<R>(
    _ code: CAError.Code, sourceLocation: SourceLocation = #_sourceLocation, _ body: () async throws -> R
) async -> CAError? {
    let error = await #expect(throws: CAError.self, sourceLocation: sourceLocation) { try await body() }
    if let error { #expect(error.code == code, "\(error)", sourceLocation: sourceLocation) }
    return error
}

/// Expects `decision` to be a denial with `code`.
func expectDenied(_ decision: PolicyDecision, _ code: CAError.Code, sourceLocation: SourceLocation = #_sourceLocation) {
    guard case .denied(let error) = decision else {
        Issue.record("expected a denial with \(code), got \(decision)", sourceLocation: sourceLocation)
        return
    }
    #expect(error.code == code, "\(error)", sourceLocation: sourceLocation)
}
