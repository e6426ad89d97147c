import ArgumentParser
import Foundation

/// One setting of `sigil serve`, spelled once: its JSON key (`rate_limit_client`, `policy.max_ttl`), from which
/// the flag (`--rate-limit-client`) and the environment variable (`SIGIL_RATE_LIMIT_CLIENT`) are derived; its
/// default and meaning, which the flag's help and `docs/configuration.md` (`sigil serve --configuration-table`)
/// show.
struct ConfigurationKey: Sendable {
    let key: String
    /// The default as shown to people ("none" where there is none).
    let defaultText: String
    let meaning: String
    /// Whether `sigil serve` takes it as a flag (the nested `authority.*` and `policy.*` keys are file and
    /// environment only).
    let isFlag: Bool

    init(_ key: String, _ defaultText: String, _ meaning: String, flag: Bool = true) {
        self.key = key
        self.defaultText = defaultText
        self.meaning = meaning
        self.isFlag = flag
    }

    /// `--rate-limit-client`.
    var flag: String { key.replacingOccurrences(of: "_", with: "-") }
    /// `SIGIL_RATE_LIMIT_CLIENT`, `SIGIL_POLICY_MAX_TTL`.
    var environment: String { "SIGIL_" + key.uppercased().replacingOccurrences(of: ".", with: "_") }
    /// The flag's help: the meaning and the default.
    var help: ArgumentHelp { ArgumentHelp("\(meaning) [default: \(defaultText)]") }
    /// For ArgumentParser: the flag's name.
    var name: NameSpecification { .customLong(flag) }
}

/// Every key `sigil serve` reads, in the order `docs/configuration.md` lists them.
enum ConfigurationKeys {
    static let dataDir = ConfigurationKey(
        "data_dir", "`pki`", "Data directory: store, key-encryption key, bundle, local issuer.")
    static let listen = ConfigurationKey(
        "listen", "`127.0.0.1:8443`", "HTTPS address host:port (port 0: any free port, printed on stdout).")
    static let store = ConfigurationKey(
        "store", "`sqlite`",
        "`sqlite`, or `postgres://user@host:port/db[?sslmode=…&sslrootcert=FILE]` (replicas share it and the same `kek`); without `sslmode` a host other than loopback gets `verify-full`."
    )
    static let storeConnectTimeout = ConfigurationKey(
        "store_connect_timeout", "`30s`",
        "How long to keep trying to reach PostgreSQL (each failed attempt logged with its cause).")
    static let trustDomain = ConfigurationKey(
        "trust_domain", "`cluster.local`", "Trust domain of a new CA (an existing store keeps its own).")
    static let tokenIssuer = ConfigurationKey(
        "token_issuer", "none", "Expected `iss`; alone it enables OIDC discovery of the JWKS (https).")
    static let tokenJWKS = ConfigurationKey(
        "token_jwks", "none",
        "JWKS file or `https://` URL (re-read on an unknown `kid`, at most every 30 s, and every `token_jwks_refresh`)."
    )
    static let tokenJWKSRefresh = ConfigurationKey(
        "token_jwks_refresh", "`5m`",
        "How often the JWKS is fetched again: a removed key stops verifying, cached verifications included.")
    static let tokenJWKSCA = ConfigurationKey(
        "token_jwks_ca", "system roots",
        "PEM roots for an `https://` JWKS URL or OIDC discovery (no redirects are followed).")
    static let tokenAudience = ConfigurationKey("token_audience", "`sigil`", "Audience a token's `aud` must contain.")
    static let tokenReview = ConfigurationKey(
        "token_review", "none", "Kubernetes API server (`https://`) for TokenReview instead of a JWKS.")
    static let tokenReviewCA = ConfigurationKey(
        "token_review_ca", "system roots", "PEM roots for the TokenReview API server.")
    static let tokenReviewCredential = ConfigurationKey(
        "token_review_credential", "none", "File with the bearer credential for TokenReview calls.")
    static let localMode = ConfigurationKey(
        "local_mode", "`false`",
        "Allow local mode (no token source: the development issuer, `sigil dev token`) on a listen address other than loopback."
    )
    static let tlsNames = ConfigurationKey(
        "tls_names", "`localhost`, `127.0.0.1`",
        "Names of the server's own certificate (issued by its intermediate, renewed at half-life); the flag is `--tls-name`, repeated.",
        flag: false)
    static let grpcListen = ConfigurationKey(
        "grpc_listen", "off",
        "Also serve Istio's CA API (`IstioCertificateService`, gRPC over TLS) on host:port (Istio's port is 15012; port 0: any free port, printed on stdout). docs/istio.md."
    )
    static let istioTokenAudience = ConfigurationKey(
        "istio_token_audience", "`istio-ca`", "Audience a token's `aud` must contain on Istio's CA API.")
    static let istioClusterIDs = ConfigurationKey(
        "istio_cluster_ids", "any",
        "ClusterIDs Istio's CA API serves (others: PermissionDenied); the flag is `--istio-cluster-id`, repeated.",
        flag: false)
    static let adminSocket = ConfigurationKey(
        "admin_socket", "`<data_dir>/admin.sock`", "Admin API (0600 unix socket, never TCP).")
    static let auditSink = ConfigurationKey(
        "audit_sink", "none", "`stdout` or a file: every audit record as a JSON line.")
    static let auditDenialBudget = ConfigurationKey(
        "audit_denial_budget", "100",
        "Unauthenticated refusals audited one by one per second; the rest counted and summarised in a `deny_summary` record every 10 s (0: all)."
    )
    static let maxBodyBytes = ConfigurationKey("max_body_bytes", "65536", "Larger request bodies get 413.", flag: false)
    static let rateLimitClient = ConfigurationKey(
        "rate_limit_client", "100",
        "Requests per second per client address (IPv6: per /64) on every route; 0 turns it off.")
    static let rateLimitClientBurst = ConfigurationKey("rate_limit_client_burst", "1000", "Burst per client address.")
    static let rateLimitIdentity = ConfigurationKey(
        "rate_limit_identity", "100",
        "Issuance requests per second per workload identity (replicas of a deployment share one); 0 turns it off.")
    static let rateLimitIdentityBurst = ConfigurationKey(
        "rate_limit_identity_burst", "1000", "Burst per workload identity.")
    static let requestTimeout = ConfigurationKey(
        "request_timeout", "`10s`",
        "A connection's first request, and each body after its headers, must arrive within it.")
    static let idleTimeout = ConfigurationKey(
        "idle_timeout", "`30s`", "Keep-alive connections with no request in progress are closed after it.")
    static let renewalMaxAge = ConfigurationKey(
        "renewal_max_age", "`24h`",
        "A renewal by client certificate is refused (`reauthentication_required`) this long after the identity last showed a token."
    )
    static let bundleRefreshHint = ConfigurationKey(
        "bundle_refresh_hint", "`5m`", "`spiffe_refresh_hint` of the bundle.", flag: false)
    static let logLevel = ConfigurationKey("log_level", "`info`", "trace, debug, info, notice, warning or error.")
    static let authorityKeyType = ConfigurationKey(
        "authority.key_type", "`ec-p256`",
        "Key type of new authorities: also `ec-p384`, `rsa-2048/3072/4096`, `ed25519`.", flag: false)
    static let authorityRootTTL = ConfigurationKey(
        "authority.root_ttl", "`365d`",
        "Root lifetime; a successor is prepared at ½ of it remaining and activated at ⅙.", flag: false)
    static let authorityIntermediateTTL = ConfigurationKey(
        "authority.intermediate_ttl", "`48h`", "Intermediate lifetime (same thresholds).", flag: false)
    static let policyDefaultTTL = ConfigurationKey(
        "policy.default_ttl", "`1h`", "Leaf lifetime when the request names none.", flag: false)
    static let policyMaxTTL = ConfigurationKey(
        "policy.max_ttl", "`24h`",
        "Longest leaf lifetime; a leaf never outlives its issuer (`ttl_out_of_range`, never silently cut).", flag: false
    )
    static let policyMinTTL = ConfigurationKey("policy.min_ttl", "`1m`", "Shortest leaf lifetime.", flag: false)
    static let policyBackdate = ConfigurationKey(
        "policy.backdate", "`30s`", "How far `notBefore` is set back for clock skew.", flag: false)
    static let policyAllowedKeyTypes = ConfigurationKey(
        "policy.allowed_key_types", "all key types", "Key types a CSR may carry.", flag: false)
    static let policyDNSTemplates = ConfigurationKey(
        "policy.dns_templates", "none",
        "Extra DNS SANs allowed, e.g. `{service_account}.{namespace}.svc.cluster.local`.", flag: false)
    static let policyAllowedNamespaces = ConfigurationKey(
        "policy.allowed_namespaces", "all", "When set, only these namespaces obtain certificates.", flag: false)
    static let policyDeniedNamespaces = ConfigurationKey(
        "policy.denied_namespaces", "none", "Namespaces that never obtain certificates.", flag: false)
    static let policyNamespaceMaxTTL = ConfigurationKey(
        "policy.namespace_max_ttl", "none", "Per-namespace maximum lifetime, e.g. `{\"batch\": \"4h\"}`.", flag: false)

    static let all: [ConfigurationKey] = [
        dataDir, listen, store, storeConnectTimeout, trustDomain, tokenIssuer, tokenJWKS, tokenJWKSRefresh, tokenJWKSCA,
        tokenAudience,
        tokenReview, tokenReviewCA, tokenReviewCredential, localMode, tlsNames, grpcListen, istioTokenAudience,
        istioClusterIDs, adminSocket, auditSink,
        auditDenialBudget, maxBodyBytes,
        rateLimitClient, rateLimitClientBurst, rateLimitIdentity, rateLimitIdentityBurst, requestTimeout, idleTimeout,
        renewalMaxAge,
        bundleRefreshHint, logLevel, authorityKeyType, authorityRootTTL, authorityIntermediateTTL, policyDefaultTTL,
        policyMaxTTL,
        policyMinTTL, policyBackdate, policyAllowedKeyTypes, policyDNSTemplates, policyAllowedNamespaces,
        policyDeniedNamespaces,
        policyNamespaceMaxTTL,
    ]

    /// The table of `docs/configuration.md`, as Markdown.
    static var markdownTable: String {
        var lines = ["| key | flag | environment | default | meaning |", "|---|---|---|---|---|"]
        for key in all {
            let flag = key.isFlag ? "`--\(key.flag)`" : (key.key == "tls_names" ? "`--tls-name`" : "")
            lines.append("| `\(key.key)` | \(flag) | `\(key.environment)` | \(key.defaultText) | \(key.meaning) |")
        }
        return lines.joined(separator: "\n")
    }
}
