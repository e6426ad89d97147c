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
        abstract:
            "Run the CA: HTTPS issuance API, rotation, and (with no token source) a local development token issuer.",
        discussion: """
            Settings come from flags, then SIGIL_* environment variables (SIGIL_LISTEN, SIGIL_TOKEN_ISSUER, …), then the \
            JSON config file (--config / SIGIL_CONFIG, keys as in pki/sigil.example.json; unknown keys are rejected), \
            then defaults. With an empty data directory the CA initialises itself.
            """)

    typealias Keys = ConfigurationKeys
    @Option(name: Keys.dataDir.name, help: Keys.dataDir.help) var dataDir: String?
    @Option(name: Keys.listen.name, help: Keys.listen.help) var listen: String?
    @Option(name: Keys.trustDomain.name, help: Keys.trustDomain.help) var trustDomain: String?
    @Option(name: Keys.store.name, help: Keys.store.help) var store: String?
    @Option(name: Keys.storeConnectTimeout.name, help: Keys.storeConnectTimeout.help) var storeConnectTimeout: String?
    @Option(name: Keys.tokenIssuer.name, help: Keys.tokenIssuer.help) var tokenIssuer: String?
    @Option(name: Keys.tokenJWKS.name, help: Keys.tokenJWKS.help) var tokenJWKS: String?
    @Option(name: Keys.tokenJWKSRefresh.name, help: Keys.tokenJWKSRefresh.help) var tokenJWKSRefresh: String?
    @Option(name: Keys.tokenJWKSCA.name, help: Keys.tokenJWKSCA.help) var tokenJWKSCA: String?
    @Option(name: Keys.tokenAudience.name, help: Keys.tokenAudience.help) var tokenAudience: String?
    @Option(name: Keys.tokenReview.name, help: Keys.tokenReview.help) var tokenReview: String?
    @Option(name: Keys.tokenReviewCA.name, help: Keys.tokenReviewCA.help) var tokenReviewCA: String?
    @Option(name: Keys.tokenReviewCredential.name, help: Keys.tokenReviewCredential.help) var tokenReviewCredential:
        String?
    @Flag(name: Keys.localMode.name, help: Keys.localMode.help) var localMode = false
    @Option(name: .customLong("tls-name"), help: Keys.tlsNames.help) var tlsNames: [String] = []
    @Option(name: Keys.grpcListen.name, help: Keys.grpcListen.help) var grpcListen: String?
    @Option(name: Keys.istioTokenAudience.name, help: Keys.istioTokenAudience.help) var istioTokenAudience: String?
    @Option(name: .customLong("istio-cluster-id"), help: Keys.istioClusterIDs.help) var istioClusterIDs: [String] = []
    @Option(name: Keys.adminSocket.name, help: Keys.adminSocket.help) var adminSocket: String?
    @Option(name: Keys.auditSink.name, help: Keys.auditSink.help) var auditSink: String?
    @Option(name: Keys.auditDenialBudget.name, help: Keys.auditDenialBudget.help) var auditDenialBudget: String?
    @Option(name: Keys.rateLimitClient.name, help: Keys.rateLimitClient.help) var rateLimitClient: String?
    @Option(name: Keys.rateLimitClientBurst.name, help: Keys.rateLimitClientBurst.help) var rateLimitClientBurst:
        String?
    @Option(name: Keys.rateLimitIdentity.name, help: Keys.rateLimitIdentity.help) var rateLimitIdentity: String?
    @Option(name: Keys.rateLimitIdentityBurst.name, help: Keys.rateLimitIdentityBurst.help) var rateLimitIdentityBurst:
        String?
    @Option(name: Keys.requestTimeout.name, help: Keys.requestTimeout.help) var requestTimeout: String?
    @Option(name: Keys.idleTimeout.name, help: Keys.idleTimeout.help) var idleTimeout: String?
    @Option(name: Keys.renewalMaxAge.name, help: Keys.renewalMaxAge.help) var renewalMaxAge: String?
    @Option(name: Keys.logLevel.name, help: Keys.logLevel.help) var logLevel: String?
    @Option(
        help:
            "JSON config file (keys as in pki/sigil.example.json; unknown keys are rejected). [default: $SIGIL_CONFIG]")
    var config: String?
    @Flag(help: .hidden) var configurationTable = false

    func run() async throws {
        if configurationTable { return print(Keys.markdownTable) }
        let settings = try Settings(configPath: config ?? ProcessInfo.processInfo.environment["SIGIL_CONFIG"])
        func value(_ key: ConfigurationKey, _ flag: String?) -> String? { flag ?? settings.value(key) }

        let level = value(Keys.logLevel, logLevel) ?? "info"
        guard let logLevel = Logger.Level(rawValue: level) else {
            throw CLIError("configuration_invalid", "log level \(level) is not known")
        }
        LoggingSystem.bootstrap(LineLogHandler.factory(level: logLevel))
        let logger = Logger(label: "sigil")

        let (host, port) = try hostPort(value(Keys.listen, listen) ?? "127.0.0.1:8443", flag: "--listen")

        var authority = AuthorityConfiguration(
            trustDomain: try TrustDomain(value(Keys.trustDomain, trustDomain) ?? "cluster.local"))
        if let key = settings.value(Keys.authorityKeyType) {
            guard let algorithm = KeyAlgorithm(configurationName: key) else {
                throw CLIError("configuration_invalid", "authority.key_type \(key) is not known")
            }
            authority.keyAlgorithm = algorithm
        }
        if let ttl = settings.value(Keys.authorityRootTTL) {
            authority.rootLifetime = try parseDuration(ttl, flag: Keys.authorityRootTTL.key)
        }
        if let ttl = settings.value(Keys.authorityIntermediateTTL) {
            authority.intermediateLifetime = try parseDuration(ttl, flag: Keys.authorityIntermediateTTL.key)
        }
        let policy = try settings.policy()
        try policy.validate()
        try authority.validate(leafPolicy: policy)

        let review = value(Keys.tokenReview, tokenReview)
        let jwks = value(Keys.tokenJWKS, tokenJWKS)
        let issuer = value(Keys.tokenIssuer, tokenIssuer)
        let source: TokenSource
        if let review {
            source = .tokenReview(
                url: review, caFile: value(Keys.tokenReviewCA, tokenReviewCA),
                credentialFile: value(Keys.tokenReviewCredential, tokenReviewCredential))
        } else if let jwks {
            source = jwks.hasPrefix("https://") || jwks.hasPrefix("http://") ? .jwksURL(jwks) : .jwksFile(path: jwks)
        } else if issuer != nil {
            source = .discovery
        } else {
            source = .local
        }
        var configuration = ServerConfiguration(
            dataDirectory: value(Keys.dataDir, dataDir) ?? "pki", host: host, port: port,
            store: value(Keys.store, store) ?? "sqlite",
            authority: authority, policy: policy, tokenSource: source, tokenIssuer: issuer,
            tokenAudience: value(Keys.tokenAudience, tokenAudience) ?? "sigil")
        if !tlsNames.isEmpty {
            configuration.tlsNames = tlsNames
        } else if let names = settings.list(Keys.tlsNames) {
            configuration.tlsNames = names
        }
        configuration.grpcListen = try value(Keys.grpcListen, grpcListen).map {
            try hostPort($0, flag: "--grpc-listen")
        }
        configuration.istioTokenAudience = value(Keys.istioTokenAudience, istioTokenAudience) ?? "istio-ca"
        configuration.istioClusterIDs = Set(
            istioClusterIDs.isEmpty ? settings.list(Keys.istioClusterIDs) ?? [] : istioClusterIDs)
        configuration.auditSink = value(Keys.auditSink, auditSink)
        configuration.adminSocket = value(Keys.adminSocket, adminSocket)
        if let bytes = settings.value(Keys.maxBodyBytes).flatMap(Int.init) { configuration.maxBodyBytes = bytes }
        if let hint = settings.value(Keys.bundleRefreshHint) {
            configuration.bundleRefreshHint = try parseDuration(hint, flag: "bundle_refresh_hint")
        }
        configuration.clientRateLimit = try rateLimit(
            value(Keys.rateLimitClient, rateLimitClient), value(Keys.rateLimitClientBurst, rateLimitClientBurst),
            default: configuration.clientRateLimit, name: "--rate-limit-client")
        configuration.identityRateLimit = try rateLimit(
            value(Keys.rateLimitIdentity, rateLimitIdentity),
            value(Keys.rateLimitIdentityBurst, rateLimitIdentityBurst),
            default: configuration.identityRateLimit, name: "--rate-limit-identity")
        if let timeout = value(Keys.requestTimeout, requestTimeout) {
            configuration.requestTimeout = try parseDuration(timeout, flag: "--request-timeout")
        }
        if let timeout = value(Keys.idleTimeout, idleTimeout) {
            configuration.idleTimeout = try parseDuration(timeout, flag: "--idle-timeout")
        }
        if let age = value(Keys.renewalMaxAge, renewalMaxAge) {
            configuration.policy.renewalMaxAge = try parseDuration(age, flag: "--renewal-max-age")
        }
        if let refresh = value(Keys.tokenJWKSRefresh, tokenJWKSRefresh) {
            configuration.tokenJWKSRefresh = try parseDuration(refresh, flag: "--token-jwks-refresh")
        }
        configuration.tokenJWKSCA = value(Keys.tokenJWKSCA, tokenJWKSCA)
        if let timeout = value(Keys.storeConnectTimeout, storeConnectTimeout) {
            configuration.storeConnectTimeout = try parseDuration(timeout, flag: "--store-connect-timeout")
        }
        if let budget = value(Keys.auditDenialBudget, auditDenialBudget) {
            guard let perSecond = Int(budget), perSecond >= 0 else {
                throw CLIError("configuration_invalid", "--audit-denial-budget \(budget) is not a whole number ≥ 0")
            }
            configuration.auditDenialBudget = perSecond
        }
        configuration.localModeOnNetwork = localMode || ["true", "1"].contains(value(Keys.localMode, nil) ?? "")

        @Sendable func announce(_ scheme: String, _ host: String, _ port: Int, _ what: String = "") {
            let line = "sigil listening on \(scheme)://\(host.contains(":") ? "[\(host)]" : host):\(port)\(what)\n"
            FileHandle.standardOutput.write(Data(line.utf8))
        }
        let grpcHost = configuration.grpcListen?.host ?? ""
        let built = try await buildServer(
            configuration: configuration, clock: SystemClock(), logger: logger,
            onListening: { announce("https", host, $0) },
            onGRPCListening: { announce("grpcs", grpcHost, $0, " (Istio CA)") })
        let group = ServiceGroup(
            configuration: .init(
                services: built.services.map { .init(service: $0) }, gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger))
        try await group.run()
    }

    /// `value` as host and port (`[::1]:15012` for IPv6).
    private func hostPort(_ value: String, flag: String) throws -> (host: String, port: Int) {
        guard let colon = value.lastIndex(of: ":"), let port = Int(value[value.index(after: colon)...]),
            (0...65535).contains(port)
        else {
            throw CLIError("configuration_invalid", "\(flag) \(value) is not host:port")
        }
        return (String(value[..<colon]).trimmingCharacters(in: CharacterSet(charactersIn: "[]")), port)
    }

    private func rateLimit(
        _ rate: String?, _ burst: String?, default fallback: RateLimit, name: String
    ) throws -> RateLimit {
        var limit = fallback
        if let rate {
            guard let value = Double(rate) else {
                throw CLIError("configuration_invalid", "\(name) \(rate) is not a number")
            }
            limit.perSecond = value
        }
        if let burst {
            guard let value = Int(burst) else {
                throw CLIError("configuration_invalid", "\(name)-burst \(burst) is not a whole number")
            }
            limit.burst = value
        }
        try limit.validate(name)
        return limit
    }
}

/// The JSON config file, flattened to dotted keys, with environment fallbacks (`SIGIL_` + upper-cased key).
struct Settings {
    static let knownKeys = Set(ConfigurationKeys.all.map(\.key))

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
            throw CLIError(
                "configuration_invalid",
                "config file \(configPath): unknown key(s) \(unknown.sorted().joined(separator: ", "))")
        }
    }

    func value(_ key: ConfigurationKey) -> String? {
        if let env = environment[key.environment], !env.isEmpty { return env }
        switch file[key.key] {
        case let string as String: return string
        case let number as NSNumber: return number.stringValue
        default: return nil
        }
    }

    func list(_ key: ConfigurationKey) -> [String]? {
        if let env = environment[key.environment], !env.isEmpty {
            return env.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        }
        return file[key.key] as? [String]
    }

    func policy() throws -> IssuancePolicy {
        var policy = IssuancePolicy()
        if let ttl = value(ConfigurationKeys.policyDefaultTTL) {
            policy.defaultTTL = try parseDuration(ttl, flag: "policy.default_ttl")
        }
        if let ttl = value(ConfigurationKeys.policyMaxTTL) {
            policy.maxTTL = try parseDuration(ttl, flag: "policy.max_ttl")
        }
        if let ttl = value(ConfigurationKeys.policyMinTTL) {
            policy.minTTL = try parseDuration(ttl, flag: "policy.min_ttl")
        }
        if let backdate = value(ConfigurationKeys.policyBackdate) {
            guard let duration = Duration(parsing: backdate) else {
                throw CLIError("configuration_invalid", "policy.backdate \(backdate) is not a duration")
            }
            policy.backdate = duration
        }
        if let keys = list(ConfigurationKeys.policyAllowedKeyTypes) {
            policy.allowedKeys = Set(
                try keys.map { name in
                    guard let algorithm = KeyAlgorithm(configurationName: name) else {
                        throw CLIError("configuration_invalid", "policy.allowed_key_types: \(name) is not known")
                    }
                    return algorithm
                })
        }
        if let templates = list(ConfigurationKeys.policyDNSTemplates) { policy.dnsTemplates = templates }
        if let namespaces = list(ConfigurationKeys.policyAllowedNamespaces) {
            policy.allowedNamespaces = Set(namespaces)
        }
        if let namespaces = list(ConfigurationKeys.policyDeniedNamespaces) { policy.deniedNamespaces = Set(namespaces) }
        if let limits = file[ConfigurationKeys.policyNamespaceMaxTTL.key] as? [String: String] {
            policy.namespaceMaxTTL = try limits.mapValues { try parseDuration($0, flag: "policy.namespace_max_ttl") }
        }
        return policy
    }
}
