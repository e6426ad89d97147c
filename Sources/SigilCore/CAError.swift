/// An operation of the authority that could not be carried out, or a request it refuses.
///
/// `code` is stable and safe to show to clients; `reason` is for logs and audit and may name internal
/// detail, but never a token, key or CSR body.
public struct CAError: Error, Equatable, CustomStringConvertible, Sendable {
    /// A stable error code; its `rawValue` is the wire spelling (`token_invalid`, …).
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Base: String, Sendable, CaseIterable {
            case tokenInvalid = "token_invalid"
            case tokenExpired = "token_expired"
            case audienceMismatch = "audience_mismatch"
            case unauthenticated = "unauthenticated"
            case csrInvalid = "csr_invalid"
            case csrSignatureInvalid = "csr_signature_invalid"
            case identityMismatch = "identity_mismatch"
            case invalidSPIFFEID = "invalid_spiffe_id"
            case keyNotAllowed = "key_not_allowed"
            case policyDenied = "policy_denied"
            case ttlOutOfRange = "ttl_out_of_range"
            case rateLimited = "rate_limited"
            case payloadTooLarge = "payload_too_large"
            case badRequest = "bad_request"
            case auditUnavailable = "audit_unavailable"
            case storeUnavailable = "store_unavailable"
            case noActiveAuthority = "no_active_authority"
            case selfCheckFailed = "self_check_failed"
            case notFound = "not_found"
            case conflict = "conflict"
            case configurationInvalid = "configuration_invalid"
            case internalError = "internal_error"
            case unsupportedMediaType = "unsupported_media_type"
            case methodNotAllowed = "method_not_allowed"
            case reauthenticationRequired = "reauthentication_required"
        }
        private let base: Base
        private init(_ base: Base) { self.base = base }

        public var rawValue: String { base.rawValue }
        public var description: String { base.rawValue }

        public static let tokenInvalid = Code(.tokenInvalid)
        public static let tokenExpired = Code(.tokenExpired)
        public static let audienceMismatch = Code(.audienceMismatch)
        public static let unauthenticated = Code(.unauthenticated)
        public static let csrInvalid = Code(.csrInvalid)
        public static let csrSignatureInvalid = Code(.csrSignatureInvalid)
        public static let identityMismatch = Code(.identityMismatch)
        public static let invalidSPIFFEID = Code(.invalidSPIFFEID)
        public static let keyNotAllowed = Code(.keyNotAllowed)
        public static let policyDenied = Code(.policyDenied)
        public static let ttlOutOfRange = Code(.ttlOutOfRange)
        public static let rateLimited = Code(.rateLimited)
        public static let payloadTooLarge = Code(.payloadTooLarge)
        public static let badRequest = Code(.badRequest)
        public static let auditUnavailable = Code(.auditUnavailable)
        public static let storeUnavailable = Code(.storeUnavailable)
        public static let noActiveAuthority = Code(.noActiveAuthority)
        public static let selfCheckFailed = Code(.selfCheckFailed)
        public static let notFound = Code(.notFound)
        public static let conflict = Code(.conflict)
        public static let configurationInvalid = Code(.configurationInvalid)
        public static let internalError = Code(.internalError)
        public static let unsupportedMediaType = Code(.unsupportedMediaType)
        public static let methodNotAllowed = Code(.methodNotAllowed)
        /// A renewal by client certificate whose identity was last proven with a token longer ago than
        /// `renewal_max_age`: the caller must present its token again.
        public static let reauthenticationRequired = Code(.reauthenticationRequired)
    }

    public let code: Code
    public let reason: String
    public let file: String
    public let line: Int
    /// For `rate_limited`: when the caller may try again.
    public var retryAfter: Duration?

    public init(_ code: Code, reason: String, file: String = #fileID, line: Int = #line) {
        self.code = code
        self.reason = reason
        self.file = file
        self.line = line
    }

    public var description: String { "\(code): \(reason)" }
    public static func == (lhs: CAError, rhs: CAError) -> Bool { lhs.code == rhs.code }

    public static func csrInvalid(reason: String, file: String = #fileID, line: Int = #line) -> CAError {
        CAError(.csrInvalid, reason: reason, file: file, line: line)
    }
    public static func policyViolation(reason: String, file: String = #fileID, line: Int = #line) -> CAError {
        CAError(.policyDenied, reason: reason, file: file, line: line)
    }
    public static func configuration(reason: String, file: String = #fileID, line: Int = #line) -> CAError {
        CAError(.configurationInvalid, reason: reason, file: file, line: line)
    }
    public static func rateLimited(
        reason: String, retryAfter: Duration, file: String = #fileID, line: Int = #line
    ) -> CAError {
        var error = CAError(.rateLimited, reason: reason, file: file, line: line)
        error.retryAfter = retryAfter
        return error
    }
}
