import Foundation
import Hummingbird
import SigilAPIModels
import SigilCore

extension CAError.Code {
    /// The HTTP status for this code. Only SigilServer knows HTTP.
    var httpStatus: HTTPResponse.Status {
        switch self {
        case .tokenInvalid, .tokenExpired, .audienceMismatch, .unauthenticated, .reauthenticationRequired:
            return .unauthorized
        case .csrInvalid, .csrSignatureInvalid, .invalidSPIFFEID, .keyNotAllowed, .ttlOutOfRange, .badRequest:
            return .badRequest
        case .identityMismatch, .policyDenied: return .forbidden
        case .rateLimited: return .tooManyRequests
        case .payloadTooLarge: return .contentTooLarge
        case .notFound: return .notFound
        case .conflict: return .conflict
        case .auditUnavailable, .storeUnavailable, .noActiveAuthority: return .serviceUnavailable
        case .unsupportedMediaType: return .unsupportedMediaType
        case .methodNotAllowed: return .methodNotAllowed
        default: return .internalServerError
        }
    }

    /// A safe, fixed sentence for clients; the detailed reason goes to the log and audit only.
    var clientDetail: String {
        switch self {
        // Authentication failures never say whether an identity exists or which check failed in detail.
        case .tokenInvalid: return "The bearer token is not valid for this service."
        case .tokenExpired: return "The bearer token has expired."
        case .audienceMismatch: return "The bearer token is not intended for this service."
        case .unauthenticated:
            return "Authenticate with a service-account bearer token or a valid SVID client certificate."
        case .reauthenticationRequired:
            return "The client certificate may no longer renew itself: authenticate with a service-account token."
        case .csrInvalid: return "The CSR could not be parsed as a PKCS#10 request."
        case .csrSignatureInvalid: return "The CSR signature does not verify (no proof of possession)."
        case .identityMismatch: return "The CSR asks for an identity other than the caller's."
        case .invalidSPIFFEID: return "The identity is not a valid SPIFFE ID."
        case .keyNotAllowed: return "The CSR's key type or size is not allowed."
        case .policyDenied: return "The request is not allowed by the issuance policy."
        case .ttlOutOfRange:
            return "The requested lifetime is outside the policy or the signing authority's remaining life."
        case .rateLimited: return "Too many requests; retry later."
        case .payloadTooLarge: return "The request body is too large."
        case .badRequest: return "The request body is not the expected JSON."
        case .auditUnavailable: return "The request could not be recorded in the audit log; nothing was issued."
        case .storeUnavailable: return "The store is unavailable."
        case .noActiveAuthority: return "No signing authority is active."
        case .notFound: return "No such resource."
        case .unsupportedMediaType: return "Send the request body as application/json."
        case .methodNotAllowed: return "Method not allowed on this resource."
        default: return "Internal error."
        }
    }
}

extension CAError {
    /// The problem+json response for this error.
    /// - Parameter detail: overrides the fixed client sentence; only for the admin socket, whose callers are operators.
    func response(requestID: String?, detail: String? = nil) -> Response {
        let status = code.httpStatus
        let problem = Problem(
            type: "https://sigil.dev/problems/\(code.rawValue)", title: status.reasonPhrase, status: status.code,
            detail: detail ?? code.clientDetail, code: code.rawValue, requestID: requestID)
        let body = (try? JSONEncoder.sorted.encode(problem)) ?? Data()
        var headers: HTTPFields = [.contentType: "application/problem+json"]
        // RFC 9110 §11.6.1: a 401 names the scheme to authenticate with.
        if status == .unauthorized { headers[.wwwAuthenticate] = "Bearer" }
        if code == .rateLimited {
            // RFC 9110 §10.2.3: whole seconds; round up so a client that waits exactly this long is let in.
            let wait = retryAfter ?? .seconds(1)
            headers[.retryAfter] = "\(max(1, wait.wholeSeconds + (wait.components.attoseconds > 0 ? 1 : 0)))"
        }
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: body)))
    }
}
