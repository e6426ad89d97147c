import Foundation

/// The body of `POST /v1/certificates`: `{"csr": PEM, "ttl_seconds"?: integer}`. The agent writes it; the
/// server reads it more strictly than `Decodable` would (`IssuanceRequest(body:identity:)` in SigilCore:
/// `6e2` is not 600).
public struct IssuanceRequestBody: Codable, Sendable, Equatable {
    /// PEM PKCS#10 certificate request.
    public var csr: String
    /// Requested lifetime; nil: the policy's default.
    public var ttlSeconds: Int?

    public init(csr: String, ttlSeconds: Int? = nil) {
        self.csr = csr
        self.ttlSeconds = ttlSeconds
    }

    enum CodingKeys: String, CodingKey {
        case csr
        case ttlSeconds = "ttl_seconds"
    }
}

/// The body of a successful `POST /v1/certificates`, and of `sigil issue --json`. Times are RFC 3339 UTC with
/// whole seconds.
public struct IssuanceResponse: Codable, Sendable, Equatable {
    public let spiffeID: String
    /// Lowercase hex.
    public let serial: String
    public let notBefore: String
    public let notAfter: String
    /// Half of the lifetime: when the holder should renew.
    public let renewAfter: String
    /// PEM certificates, leaf first, then intermediates.
    public let chain: [String]
    /// PEM roots.
    public let trustBundle: [String]

    public init(
        spiffeID: String, serial: String, notBefore: String, notAfter: String, renewAfter: String, chain: [String],
        trustBundle: [String]
    ) {
        self.spiffeID = spiffeID
        self.serial = serial
        self.notBefore = notBefore
        self.notAfter = notAfter
        self.renewAfter = renewAfter
        self.chain = chain
        self.trustBundle = trustBundle
    }

    public enum CodingKeys: String, CodingKey {
        case spiffeID = "spiffe_id"
        case serial
        case notBefore = "not_before"
        case notAfter = "not_after"
        case renewAfter = "renew_after"
        case chain
        case trustBundle = "trust_bundle"
    }
}

/// An RFC 9457 problem document with Sigil's stable `code`: every refusal of the HTTPS and admin APIs.
public struct Problem: Codable, Sendable, Equatable {
    public let type: String
    public let title: String
    public let status: Int
    public let detail: String
    /// The stable code (`token_invalid`, `rate_limited`, …).
    public let code: String
    public let requestID: String?

    public init(type: String, title: String, status: Int, detail: String, code: String, requestID: String?) {
        self.type = type
        self.title = title
        self.status = status
        self.detail = detail
        self.code = code
        self.requestID = requestID
    }

    enum CodingKeys: String, CodingKey {
        case type, title, status, detail, code
        case requestID = "request_id"
    }
}
