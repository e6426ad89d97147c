import SigilCore
import Testing

/// Expects `decision` to be a denial with `code`.
func expectDenied(_ decision: PolicyDecision, _ code: CAError.Code, sourceLocation: SourceLocation = #_sourceLocation) {
    guard case .denied(let error) = decision else {
        Issue.record("expected a denial with \(code), got \(decision)", sourceLocation: sourceLocation)
        return
    }
    #expect(error.code == code, "\(error)", sourceLocation: sourceLocation)
}
