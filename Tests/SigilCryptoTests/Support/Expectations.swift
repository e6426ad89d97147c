import SigilCrypto
import Testing

/// Expects `body` to throw an `OpenSSLError` with `code` (errors compare by code; this also shows the reason).
func expectOpenSSLError<R>(
    _ code: OpenSSLError.Code, sourceLocation: SourceLocation = #_sourceLocation, _ body: () throws -> R
) {
    let error = #expect(throws: OpenSSLError.self, sourceLocation: sourceLocation) { try body() }
    if let error { #expect(error.code == code, "\(error)", sourceLocation: sourceLocation) }
}
