import Foundation
import SigilCore

/// Where bearer tokens are checked.
public enum TokenSource: Sendable, Equatable {
    /// Local mode: a development issuer in the data directory (`sigil dev token`). Never for production.
    case local
    /// A JWKS file, re-read when an unknown `kid` arrives.
    case jwksFile(path: String)
    /// A JWKS URL, fetched again when an unknown `kid` arrives.
    case jwksURL(String)
    /// OIDC discovery from the issuer URL: `<issuer>/.well-known/openid-configuration` → `jwks_uri`.
    case discovery
    /// Kubernetes TokenReview against an API server.
    case tokenReview(url: String, caFile: String?, credentialFile: String?)
}

/// Everything `sigil serve` needs, already validated by the executable.
public struct ServerConfiguration: Sendable {
    /// Data directory (store, KEK, bundle, local issuer). Default `pki`.
    public var dataDirectory: String
    /// Listen host. Default `127.0.0.1`.
    public var host: String
    /// Listen port; 0 picks a free one (printed at start). Default 8443.
    public var port: Int
    /// Store: `sqlite` (in the data directory) or a `postgres://` URL. Default `sqlite`.
    public var store: String
    public var authority: AuthorityConfiguration
    public var policy: IssuancePolicy
    public var rotation: RotationPolicy
    public var tokenSource: TokenSource
    /// Expected `iss`; in local mode the development issuer's.
    public var tokenIssuer: String?
    /// Audience a token must carry. Default `sigil`.
    public var tokenAudience: String
    /// DNS names and IP addresses of the server's own TLS certificate. Default `localhost`, `127.0.0.1`.
    public var tlsNames: [String]
    /// Largest request body. Default 64 KiB.
    public var maxBodyBytes: Int
    /// `spiffe_refresh_hint` of the bundle. Default 5 minutes.
    public var bundleRefreshHint: Duration
    /// How often authorities are re-read from the store (changes by other replicas or admin). Default 10 s.
    public var authorityRefreshInterval: Duration
    /// Token validations remembered until the token's `exp`. Default 10,000.
    public var tokenCacheSize: Int
    /// Admin unix socket (mode 0600). Default `<data dir>/admin.sock`.
    public var adminSocket: String?
    /// Streaming audit sink: `stdout` or a file path for JSON lines. Default none.
    public var auditSink: String?
    /// Issuance requests per client address (before authentication). Default 100/s, burst 1,000.
    public var clientRateLimit = RateLimit(perSecond: 100, burst: 1_000)
    /// Issuance requests per authenticated identity. Default 100/s, burst 1,000 (all replicas of a
    /// deployment share one service account, so a rollout is a burst for one identity).
    public var identityRateLimit = RateLimit(perSecond: 100, burst: 1_000)
    /// A connection's first request, and every request's body once its headers arrived, must be complete
    /// within this time, or the connection is closed (slowloris). Default 10 s.
    public var requestTimeout: Duration = .seconds(10)
    /// Keep-alive connections with no request in progress are closed after this long; this also bounds
    /// headers sent slowly on a reused connection. Default 30 s.
    public var idleTimeout: Duration = .seconds(30)
    /// How often a JWKS (file, URL or discovered) is fetched again, besides the rate-limited fetch on an unknown
    /// `kid`: a key removed by the issuer stops verifying within this time. Default 5 min.
    public var tokenJWKSRefresh: Duration = .seconds(300)
    /// PEM roots for the HTTPS token sources (JWKS URL, OIDC discovery); default the system's roots.
    public var tokenJWKSCA: String?
    /// How long `sigil serve` keeps trying to reach a PostgreSQL store before it gives up. Default 30 s.
    public var storeConnectTimeout: Duration = .seconds(30)
    /// Unauthenticated denials audited one by one per second; the rest are counted in
    /// `sigil_audit_denials_suppressed_total` and summarised in one `deny_summary` record per
    /// `denialSummaryInterval`. 0 audits every one. Default 100.
    public var auditDenialBudget: Int = 100
    /// Default 10 s.
    public var denialSummaryInterval: Duration = .seconds(10)
    /// Local mode (the development token issuer) on a listen address other than loopback: refused unless set
    /// (`--local-mode`), since anyone who can read the data directory can then mint any identity. Default false.
    public var localModeOnNetwork = false
    /// Where Istio's CA API (`IstioCertificateService`, gRPC over TLS) listens (`--grpc-listen`; port 0 picks a
    /// free one). Default off.
    public var grpcListen: (host: String, port: Int)?
    /// Audience a token must carry on Istio's CA API (the HTTPS API's is `tokenAudience`). Default `istio-ca`.
    public var istioTokenAudience = "istio-ca"
    /// When non-empty, Istio's CA API serves only calls naming one of these ClusterIDs. Default: any.
    public var istioClusterIDs: Set<String> = []

    public init(
        dataDirectory: String = "pki", host: String = "127.0.0.1", port: Int = 8443, store: String = "sqlite",
        authority: AuthorityConfiguration, policy: IssuancePolicy = IssuancePolicy(),
        rotation: RotationPolicy = RotationPolicy(),
        tokenSource: TokenSource = .local, tokenIssuer: String? = nil, tokenAudience: String = "sigil",
        tlsNames: [String] = ["localhost", "127.0.0.1"], maxBodyBytes: Int = 64 * 1024,
        bundleRefreshHint: Duration = .seconds(300),
        authorityRefreshInterval: Duration = .seconds(10), tokenCacheSize: Int = 10_000, auditSink: String? = nil
    ) {
        self.auditSink = auditSink
        self.dataDirectory = dataDirectory
        self.host = host
        self.port = port
        self.store = store
        self.authority = authority
        self.policy = policy
        self.rotation = rotation
        self.tokenSource = tokenSource
        self.tokenIssuer = tokenIssuer
        self.tokenAudience = tokenAudience
        self.tlsNames = tlsNames
        self.maxBodyBytes = maxBodyBytes
        self.bundleRefreshHint = bundleRefreshHint
        self.authorityRefreshInterval = authorityRefreshInterval
        self.tokenCacheSize = tokenCacheSize
    }
}
