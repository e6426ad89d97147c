import Foundation
import SigilCrypto

/// What leaves Sigil may be issued: lifetimes, key types, extra SANs, namespaces.
public struct IssuancePolicy: Sendable, Equatable {
    /// Leaf lifetime when the request names none. Default 1 h.
    public var defaultTTL: Duration
    /// Longest leaf lifetime a request may ask for. Default 24 h.
    public var maxTTL: Duration
    /// Shortest leaf lifetime a request may ask for. Default 1 min.
    public var minTTL: Duration
    /// How far `notBefore` is set before the issuance time, for clock skew between machines. Default 30 s.
    public var backdate: Duration
    /// Key types a CSR may carry. Default: EC P-256, EC P-384, RSA 2048/3072/4096, Ed25519.
    public var allowedKeys: Set<KeyAlgorithm>
    /// DNS SAN templates; `{namespace}` and `{service_account}` are substituted; `*.` only as the first label.
    /// A DNS SAN in a CSR is allowed only if it equals an expanded template. Default: none.
    public var dnsTemplates: [String]
    /// When non-empty, only these namespaces may obtain certificates. Default: all.
    public var allowedNamespaces: Set<String>
    /// Namespaces that may never obtain certificates. Default: none.
    public var deniedNamespaces: Set<String>
    /// Per-namespace maximum TTL, tighter than `maxTTL`. Default: none.
    public var namespaceMaxTTL: [String: Duration]
    /// How long a chain of renewals by client certificate may go on after the identity was last proven with a
    /// token; past it a renewal is refused with `reauthentication_required`. Default 24 h (`renewal_max_age`).
    public var renewalMaxAge: Duration = .seconds(86_400)

    public init(
        defaultTTL: Duration = .seconds(3600), maxTTL: Duration = .seconds(86_400), minTTL: Duration = .seconds(60),
        backdate: Duration = .seconds(30),
        allowedKeys: Set<KeyAlgorithm> = Set(KeyAlgorithm.generatable), dnsTemplates: [String] = [],
        allowedNamespaces: Set<String> = [], deniedNamespaces: Set<String> = [],
        namespaceMaxTTL: [String: Duration] = [:]
    ) {
        self.defaultTTL = defaultTTL
        self.maxTTL = maxTTL
        self.minTTL = minTTL
        self.backdate = backdate
        self.allowedKeys = allowedKeys
        self.dnsTemplates = dnsTemplates
        self.allowedNamespaces = allowedNamespaces
        self.deniedNamespaces = deniedNamespaces
        self.namespaceMaxTTL = namespaceMaxTTL
    }

    /// Checks cross-field rules; throws `configuration_invalid`.
    public func validate() throws {
        guard minTTL > .zero, minTTL <= defaultTTL, defaultTTL <= maxTTL else {
            throw CAError.configuration(reason: "leaf TTLs must satisfy 0 < min ≤ default ≤ max")
        }
        guard backdate >= .zero, backdate < minTTL else {
            throw CAError.configuration(reason: "backdate must be ≥ 0 and shorter than the minimum TTL")
        }
        guard !allowedKeys.isEmpty else { throw CAError.configuration(reason: "no key type allowed") }
        guard renewalMaxAge > .zero else {
            throw CAError.configuration(reason: "renewal_max_age must be longer than 0s")
        }
    }

    /// The maximum TTL for `identity` (the per-namespace limit when there is one).
    public func maxTTL(for identity: SPIFFEID) -> Duration {
        guard let workload = WorkloadIdentity(identity), let limit = namespaceMaxTTL[workload.namespace] else {
            return maxTTL
        }
        return min(limit, maxTTL)
    }

    /// Whether `identity` may receive certificates at all.
    public func admits(_ identity: SPIFFEID) -> Bool {
        guard let workload = WorkloadIdentity(identity) else { return allowedNamespaces.isEmpty }
        if deniedNamespaces.contains(workload.namespace) { return false }
        return allowedNamespaces.isEmpty || allowedNamespaces.contains(workload.namespace)
    }

    /// The DNS names `identity` may carry.
    public func allowedDNSNames(for identity: SPIFFEID) -> [String] {
        guard let workload = WorkloadIdentity(identity) else { return [] }
        return dnsTemplates.map {
            $0.replacingOccurrences(of: "{namespace}", with: workload.namespace)
                .replacingOccurrences(of: "{service_account}", with: workload.serviceAccount)
                .lowercased()
        }
    }
}

/// The outcome of checking a request against policy.
public enum PolicyDecision: Sendable, Equatable {
    /// Allowed, with the subject alternative names to issue.
    case allowed(subjectAlternativeNames: [GeneralName])
    /// Refused, with a stable code and a reason for logs and audit.
    case denied(CAError)
}
