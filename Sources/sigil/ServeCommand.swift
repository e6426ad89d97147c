import ArgumentParser
import Foundation
import Logging
import ServiceLifecycle
import SigilCore
import SigilCrypto
import SigilServer

struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Run the CA: HTTPS issuance API, rotation, and (with no token source) a local development token issuer.",
        discussion: """
            Settings come from flags, then SIGIL_* environment variables (SIGIL_LISTEN, SIGIL_TOKEN_ISSUER, …), then the \
            JSON config file (--config / SIGIL_CONFIG, keys as in pki/sigil.example.json; unknown keys are rejected), \
            then defaults. With an empty data directory the CA initialises itself.
            """)

    @Option(help: "Data directory. [default: pki]") var dataDir: String?
    @Option(help: "Listen address host:port (port 0 picks a free one). [default: 127.0.0.1:8443]") var listen: String?
    @Option(help: "Trust domain for a new CA. [default: cluster.local]") var trustDomain: String?
    @Option(help: "Store: sqlite or postgres://… [default: sqlite]") var store: String?
    @Option(help: "Token issuer (iss); alone it enables OIDC discovery of the JWKS.") var tokenIssuer: String?
    @Option(help: "JWKS of the token issuer: a file path or an http(s) URL.") var tokenJwks: String?
    @Option(help: "Audience tokens must carry. [default: sigil]") var tokenAudience: String?
    @Option(help: "Kubernetes API server URL for TokenReview.") var tokenReview: String?
    @Option(help: "CA bundle (PEM) for the TokenReview API server.") var tokenReviewCa: String?
    @Option(help: "File holding the bearer credential for TokenReview calls.") var tokenReviewCredential: String?
    @Option(name: .customLong("tls-name"), help: "DNS name or IP of the server certificate (repeat). [default: localhost, 127.0.0.1]")
    var tlsNames: [String] = []
    @Option(help: "Stream audit records as JSON lines to stdout or a file.") var auditSink: String?
    @Option(help: "Admin unix socket (0600). [default: <data-dir>/admin.sock]") var adminSocket: String?
    @Option(help: "Issuance requests per second per client address; 0 turns the limit off. [default: 100]") var rateLimitClient: String?
    @Option(help: "Burst allowed per client address. [default: 1000]") var rateLimitClientBurst: String?
    @Option(help: "Issuance requests per second per workload identity; 0 turns the limit off. [default: 100]") var rateLimitIdentity: String?
    @Option(help: "Burst allowed per workload identity. [default: 1000]") var rateLimitIdentityBurst: String?
    @Option(help: "Time a client has to send a whole request (first request: from connecting). [default: 10s]") var requestTimeout: String?
    @Option(help: "Keep-alive connections with no request are closed after this long. [default: 30s]") var idleTimeout: String?
    @Option(help: "Renewals by client certificate are refused this long after the identity was last proven with a token. [default: 24h]")
    var renewalMaxAge: String?
    @Option(help: "How often the token issuer's JWKS is fetched again (removed keys stop verifying). [default: 5m]") var tokenJwksRefresh: String?
    @Option(help: "CA bundle (PEM) for an https JWKS URL or OIDC discovery. [default: system roots]") var tokenJwksCa: String?
    @Option(help: "How long to keep trying to reach a PostgreSQL store at start-up. [default: 30s]") var storeConnectTimeout: String?
    @Option(help: "Unauthenticated denials audited one by one per second; the rest are summarised. 0: all. [default: 100]")
    var auditDenialBudget: String?
    @Flag(help: "Allow local mode (the development token issuer) on a listen address other than loopback.") var localMode = false
    @Option(help: "JSON config file.") var config: String?
    @Option(help: "Log level: trace, debug, info, notice, warning, error. [default: info]") var logLevel: String?

    func run() async throws {
        let settings = try Settings(configPath: config ?? ProcessInfo.processInfo.environment["SIGIL_CONFIG"])
        func value(_ key: String, _ flag: String?) -> String? { flag ?? settings.value(key) }

        let level = value("log_level", logLevel) ?? "info"
        guard let logLevel = Logger.Level(rawValue: level) else { throw CLIError("configuration_invalid", "log level \(level) is not known") }
        LoggingSystem.bootstrap(LineLogHandler.factory(level: logLevel))
        let logger = Logger(label: "sigil")

        let listenValue = value("listen", listen) ?? "127.0.0.1:8443"
        guard let colon = listenValue.lastIndex(of: ":"), let port = Int(listenValue[listenValue.index(after: colon)...]), (0...65535).contains(port) else {
            throw CLIError("configuration_invalid", "--listen \(listenValue) is not host:port")
        }
        let host = String(listenValue[..<colon]).trimmingCharacters(in: CharacterSet(charactersIn: "[]"))

        var authority = AuthorityConfiguration(trustDomain: try TrustDomain(value("trust_domain", trustDomain) ?? "cluster.local"))
        if let key = settings.value("authority.key_type") {
            guard let algorithm = KeyAlgorithm(configurationName: key) else { throw CLIError("configuration_invalid", "authority.key_type \(key) is not known") }
            authority.keyAlgorithm = algorithm
        }
        if let ttl = settings.value("authority.root_ttl") { authority.rootLifetime = try parseDuration(ttl, flag: "authority.root_ttl") }
        if let ttl = settings.value("authority.intermediate_ttl") {
            authority.intermediateLifetime = try parseDuration(ttl, flag: "authority.intermediate_ttl")
        }
        let policy = try settings.policy()
        try policy.validate()
        try authority.validate(leafPolicy: policy)

        let review = value("token_review", tokenReview)
        let jwks = value("token_jwks", tokenJwks)
        let issuer = value("token_issuer", tokenIssuer)
        let source: TokenSource
        if let review {
            source = .tokenReview(
                url: review, caFile: value("token_review_ca", tokenReviewCa), credentialFile: value("token_review_credential", tokenReviewCredential))
        } else if let jwks {
            source = jwks.hasPrefix("https://") || jwks.hasPrefix("http://") ? .jwksURL(jwks) : .jwksFile(path: jwks)
        } else if issuer != nil {
            source = .discovery
        } else {
            source = .local
        }
        var configuration = ServerConfiguration(
            dataDirectory: value("data_dir", dataDir) ?? "pki", host: host, port: port, store: value("store", store) ?? "sqlite",
            authority: authority, policy: policy, tokenSource: source, tokenIssuer: issuer,
            tokenAudience: value("token_audience", tokenAudience) ?? "sigil")
        if !tlsNames.isEmpty {
            configuration.tlsNames = tlsNames
        } else if let names = settings.list("tls_names") {
            configuration.tlsNames = names
        }
        configuration.auditSink = value("audit_sink", auditSink)
        configuration.adminSocket = value("admin_socket", adminSocket)
        if let bytes = settings.value("max_body_bytes").flatMap(Int.init) { configuration.maxBodyBytes = bytes }
        if let hint = settings.value("bundle_refresh_hint") { configuration.bundleRefreshHint = try parseDuration(hint, flag: "bundle_refresh_hint") }
        configuration.clientRateLimit = try rateLimit(
            value("rate_limit_client", rateLimitClient), value("rate_limit_client_burst", rateLimitClientBurst),
            default: configuration.clientRateLimit, name: "--rate-limit-client")
        configuration.identityRateLimit = try rateLimit(
            value("rate_limit_identity", rateLimitIdentity), value("rate_limit_identity_burst", rateLimitIdentityBurst),
            default: configuration.identityRateLimit, name: "--rate-limit-identity")
        if let timeout = value("request_timeout", requestTimeout) {
            configuration.requestTimeout = try parseDuration(timeout, flag: "--request-timeout")
        }
        if let timeout = value("idle_timeout", idleTimeout) { configuration.idleTimeout = try parseDuration(timeout, flag: "--idle-timeout") }
        if let age = value("renewal_max_age", renewalMaxAge) { configuration.policy.renewalMaxAge = try parseDuration(age, flag: "--renewal-max-age") }
        if let refresh = value("token_jwks_refresh", tokenJwksRefresh) {
            configuration.tokenJWKSRefresh = try parseDuration(refresh, flag: "--token-jwks-refresh")
        }
        configuration.tokenJWKSCA = value("token_jwks_ca", tokenJwksCa)
        if let timeout = value("store_connect_timeout", storeConnectTimeout) {
            configuration.storeConnectTimeout = try parseDuration(timeout, flag: "--store-connect-timeout")
        }
        if let budget = value("audit_denial_budget", auditDenialBudget) {
            guard let perSecond = Int(budget), perSecond >= 0 else {
                throw CLIError("configuration_invalid", "--audit-denial-budget \(budget) is not a whole number ≥ 0")
            }
            configuration.auditDenialBudget = perSecond
        }
        configuration.localModeOnNetwork = localMode || ["true", "1"].contains(value("local_mode", nil) ?? "")

        let built = try await buildServer(configuration: configuration, clock: SystemClock(), logger: logger) { port in
            let line = "sigil listening on https://\(host.contains(":") ? "[\(host)]" : host):\(port)\n"
            FileHandle.standardOutput.write(Data(line.utf8))
        }
        let group = ServiceGroup(
            configuration: .init(services: built.services.map { .init(service: $0) }, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
    }

    private func rateLimit(_ rate: String?, _ burst: String?, default fallback: RateLimit, name: String) throws -> RateLimit {
        var limit = fallback
        if let rate {
            guard let value = Double(rate) else { throw CLIError("configuration_invalid", "\(name) \(rate) is not a number") }
            limit.perSecond = value
        }
        if let burst {
            guard let value = Int(burst) else { throw CLIError("configuration_invalid", "\(name)-burst \(burst) is not a whole number") }
            limit.burst = value
        }
        try limit.validate(name)
        return limit
    }
}

/// The JSON config file, flattened to dotted keys, with environment fallbacks (`SIGIL_` + upper-cased key).
struct Settings {
    static let knownKeys: Set<String> = [
        "data_dir", "listen", "trust_domain", "store", "token_issuer", "token_jwks", "token_audience", "token_review", "token_review_ca",
        "token_review_credential", "tls_names", "log_level", "audit_sink", "admin_socket", "max_body_bytes", "bundle_refresh_hint",
        "rate_limit_client", "rate_limit_client_burst", "rate_limit_identity", "rate_limit_identity_burst", "request_timeout", "idle_timeout",
        "renewal_max_age", "token_jwks_refresh", "token_jwks_ca", "store_connect_timeout", "audit_denial_budget", "local_mode",
        "authority.key_type", "authority.root_ttl", "authority.intermediate_ttl",
        "policy.default_ttl", "policy.max_ttl", "policy.min_ttl", "policy.backdate", "policy.allowed_key_types", "policy.dns_templates",
        "policy.allowed_namespaces", "policy.denied_namespaces", "policy.namespace_max_ttl",
    ]

    private var file: [String: Any] = [:]
    private let environment = ProcessInfo.processInfo.environment

    init(configPath: String?) throws {
        guard let configPath else { return }
        guard let data = FileManager.default.contents(atPath: configPath),
            let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
        else { throw CLIError("configuration_invalid", "config file \(configPath) is not a readable JSON object") }
        for (key, value) in object {
            if let nested = value as? [String: Any], key == "authority" || key == "policy" {
                for (inner, innerValue) in nested { file["\(key).\(inner)"] = innerValue }
            } else {
                file[key] = value
            }
        }
        let unknown = Set(file.keys).subtracting(Self.knownKeys)
        guard unknown.isEmpty else {
            throw CLIError("configuration_invalid", "config file \(configPath): unknown key(s) \(unknown.sorted().joined(separator: ", "))")
        }
    }

    func value(_ key: String) -> String? {
        if let env = environment["SIGIL_" + key.uppercased().replacingOccurrences(of: ".", with: "_")], !env.isEmpty { return env }
        switch file[key] {
        case let string as String: return string
        case let number as NSNumber: return number.stringValue
        default: return nil
        }
    }

    func list(_ key: String) -> [String]? {
        if let env = environment["SIGIL_" + key.uppercased().replacingOccurrences(of: ".", with: "_")], !env.isEmpty {
            return env.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        }
        return file[key] as? [String]
    }

    func policy() throws -> IssuancePolicy {
        var policy = IssuancePolicy()
        if let ttl = value("policy.default_ttl") { policy.defaultTTL = try parseDuration(ttl, flag: "policy.default_ttl") }
        if let ttl = value("policy.max_ttl") { policy.maxTTL = try parseDuration(ttl, flag: "policy.max_ttl") }
        if let ttl = value("policy.min_ttl") { policy.minTTL = try parseDuration(ttl, flag: "policy.min_ttl") }
        if let backdate = value("policy.backdate") {
            guard let duration = Duration(parsing: backdate) else { throw CLIError("configuration_invalid", "policy.backdate \(backdate) is not a duration") }
            policy.backdate = duration
        }
        if let keys = list("policy.allowed_key_types") {
            policy.allowedKeys = Set(try keys.map { name in
                guard let algorithm = KeyAlgorithm(configurationName: name) else { throw CLIError("configuration_invalid", "policy.allowed_key_types: \(name) is not known") }
                return algorithm
            })
        }
        if let templates = list("policy.dns_templates") { policy.dnsTemplates = templates }
        if let namespaces = list("policy.allowed_namespaces") { policy.allowedNamespaces = Set(namespaces) }
        if let namespaces = list("policy.denied_namespaces") { policy.deniedNamespaces = Set(namespaces) }
        if let limits = file["policy.namespace_max_ttl"] as? [String: String] {
            policy.namespaceMaxTTL = try limits.mapValues { try parseDuration($0, flag: "policy.namespace_max_ttl") }
        }
        return policy
    }
}
