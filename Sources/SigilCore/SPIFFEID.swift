/// A SPIFFE ID (SPIFFE-ID.md): `spiffe://<trust-domain><path>`, validated by every rule of the standard.
public struct SPIFFEID: Hashable, Sendable, CustomStringConvertible, Comparable {
    public let trustDomain: TrustDomain
    /// The path, empty or starting with `/` (e.g. `/ns/default/sa/web`).
    public let path: String

    /// The ID in canonical form.
    public var description: String { "spiffe://\(trustDomain.name)\(path)" }

    /// Parses and validates `string`; throws `CAError` with code `invalid_spiffe_id` and the broken rule.
    public init(parsing string: String) throws {
        func fail(_ why: String) -> CAError { CAError(.invalidSPIFFEID, reason: "invalid SPIFFE ID: \(why)") }
        guard string.utf8.count <= 2048 else { throw fail("longer than 2048 bytes") }
        let scheme = "spiffe://"
        guard string.hasPrefix(scheme) else {
            throw fail(string.lowercased().hasPrefix(scheme) ? "scheme must be lowercase" : "scheme must be spiffe://")
        }
        let rest = string.dropFirst(scheme.count)
        let slash = rest.firstIndex(of: "/")
        let domain = String(rest[..<(slash ?? rest.endIndex)])
        let path = String(rest[(slash ?? rest.endIndex)...])
        do {
            trustDomain = try TrustDomain(domain)
        } catch let error as CAError {
            throw fail(error.reason)
        }
        try Self.validatePath(path).map { throw fail($0) }
        self.path = path
    }

    /// Builds an ID from a trust domain and path segments; each segment is validated.
    public init(trustDomain: TrustDomain, segments: [String]) throws {
        // A "/" inside a segment would smuggle extra path segments into the ID (a namespace
        // "prod/sa/admin/ns/x" must not become a different identity).
        if segments.contains(where: { $0.utf8.contains(UInt8(ascii: "/")) }) {
            throw CAError(.invalidSPIFFEID, reason: "invalid SPIFFE ID: a path segment contains /")
        }
        let path = segments.map { "/" + $0 }.joined()
        if let problem = Self.validatePath(path) {
            throw CAError(.invalidSPIFFEID, reason: "invalid SPIFFE ID: \(problem)")
        }
        guard ("spiffe://" + trustDomain.name + path).utf8.count <= 2048 else {
            throw CAError(.invalidSPIFFEID, reason: "invalid SPIFFE ID: longer than 2048 bytes")
        }
        self.trustDomain = trustDomain
        self.path = path
    }

    /// Whether this is a workload ID (non-empty path) rather than the trust domain's own ID.
    public var isWorkload: Bool { !path.isEmpty }

    /// Returns nil if `path` is valid, else the rule it breaks.
    static func validatePath(_ path: String) -> String? {
        if path.isEmpty { return nil }
        guard path.first == "/" else { return "path must start with /" }
        if path.hasSuffix("/") { return "path must not end with /" }
        for segment in path.dropFirst().split(separator: "/", omittingEmptySubsequences: false) {
            if segment.isEmpty { return "path has an empty segment" }
            if segment == "." || segment == ".." { return "path has a dot segment" }
            for byte in segment.utf8 where !(isAlphanumeric(byte) || byte == 0x2e || byte == 0x2d || byte == 0x5f) {
                if byte == 0x25 { return "path must not be percent-encoded" }
                if byte == 0x3f || byte == 0x23 { return "query and fragment are not allowed" }
                return "path segment has a character outside [A-Za-z0-9._-]"
            }
        }
        return nil
    }

    public static func < (lhs: SPIFFEID, rhs: SPIFFEID) -> Bool { lhs.description < rhs.description }
}

/// A SPIFFE trust domain name: lowercase `[a-z0-9._-]`, no port or userinfo, at most 255 bytes.
public struct TrustDomain: Hashable, Sendable, CustomStringConvertible {
    public let name: String

    public init(_ name: String) throws {
        func fail(_ why: String) -> CAError { CAError(.invalidSPIFFEID, reason: "trust domain \(why)") }
        guard !name.isEmpty else { throw fail("is empty") }
        guard name.utf8.count <= 255 else { throw fail("is longer than 255 bytes") }
        for byte in name.utf8 {
            if byte == 0x3a { throw fail("must not contain a port") }
            if byte == 0x40 { throw fail("must not contain userinfo") }
            if byte >= 0x41 && byte <= 0x5a { throw fail("must be lowercase") }
            if byte == 0x25 { throw fail("must not be percent-encoded") }
            guard
                (byte >= 0x61 && byte <= 0x7a) || (byte >= 0x30 && byte <= 0x39) || byte == 0x2e || byte == 0x2d
                    || byte == 0x5f
            else { throw fail("has a character outside [a-z0-9._-]") }
        }
        self.name = name
    }

    /// `spiffe://<name>`: the ID signing certificates carry (X509-SVID.md §5.1).
    public var id: SPIFFEID {
        try! SPIFFEID(parsing: "spiffe://\(name)")  // precondition: a validated trust domain with no path is a valid ID
    }

    public var description: String { name }
}

/// A Kubernetes workload: namespace and service account, mapped by the identity template
/// `spiffe://<td>/ns/<namespace>/sa/<service-account>`.
public struct WorkloadIdentity: Hashable, Sendable {
    public let namespace: String
    public let serviceAccount: String

    public init(namespace: String, serviceAccount: String) {
        self.namespace = namespace
        self.serviceAccount = serviceAccount
    }

    /// The SPIFFE ID of this workload; throws `invalid_spiffe_id` for names the SPIFFE path grammar rejects.
    public func spiffeID(in trustDomain: TrustDomain) throws -> SPIFFEID {
        try SPIFFEID(trustDomain: trustDomain, segments: ["ns", namespace, "sa", serviceAccount])
    }

    /// Reads the template back from an ID; nil if the path is not `/ns/<ns>/sa/<sa>`.
    public init?(_ id: SPIFFEID) {
        let parts = id.path.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 5, parts[0].isEmpty, parts[1] == "ns", parts[3] == "sa" else { return nil }
        self.init(namespace: String(parts[2]), serviceAccount: String(parts[4]))
    }
}

private func isAlphanumeric(_ byte: UInt8) -> Bool {
    (byte >= 0x61 && byte <= 0x7a) || (byte >= 0x41 && byte <= 0x5a) || (byte >= 0x30 && byte <= 0x39)
}
