import AsyncHTTPClient
import Foundation
import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import NIOSSL
import ServiceLifecycle
import SigilCore
import SigilTokens
import SigilCrypto
import SigilStore

/// What `buildServer` returns: the services to run in one `ServiceGroup`.
public struct SigilServerServices: Sendable {
    public let services: [any Service]
}

/// Builds the CA server: opens (or initialises) the store, repairs missing/expired authorities, sets up
/// token authentication, the HTTPS API and the rotation service. `sigil serve` and the tests both call this.
/// - Parameters:
///   - onListening: called with the bound port once the server accepts connections.
///   - onGRPCListening: the same for Istio's CA API (`grpcListen`).
public func buildServer(
    configuration: ServerConfiguration, clock: any WallClock, logger: Logger,
    onListening: @escaping @Sendable (Int) async -> Void = { _ in },
    onGRPCListening: @escaping @Sendable (Int) async -> Void = { _ in }
) async throws -> SigilServerServices {
    if configuration.tokenSource == .local && !NetworkAddress.isLoopback(configuration.host)
        && !configuration.localModeOnNetwork
    {
        throw CAError.configuration(
            reason:
                "local mode (no token source: anyone who reads the data directory mints any identity) listens only on loopback; "
                + "configure a token source, or pass --local-mode to listen on \(configuration.host) anyway")
    }
    // Before anything is created: a token source that could be read in clear text is a configuration error.
    switch configuration.tokenSource {
    case .jwksURL(let url): try requireHTTPS(url, "--token-jwks URL")
    case .discovery: try requireHTTPS(try requireIssuer(configuration), "--token-issuer (OIDC discovery)")
    case .tokenReview(let url, _, _): try requireHTTPS(url, "--token-review URL")
    case .local, .jwksFile: break
    }
    let directory = DataDirectory(path: configuration.dataDirectory)
    let store = try await directory.openStore(
        configuration.store, create: true, logger: logger, clock: clock,
        connectTimeout: configuration.storeConnectTimeout)
    if let sink = configuration.auditSink {
        let stream = try JSONLinesAuditSink(destination: sink, logger: logger)
        store.observeAudit { stream.emit($0) }
    }
    var authorityConfiguration = configuration.authority
    if let recorded = try await store.loadAuthorityConfiguration() {
        if recorded.trustDomain != configuration.authority.trustDomain {
            logger.notice(
                "using the trust domain recorded in the store",
                metadata: ["sigil.trust_domain": "\(recorded.trustDomain)"])
        }
        authorityConfiguration = recorded
    } else {
        try authorityConfiguration.validate(leafPolicy: configuration.policy)
        try await store.saveAuthorityConfiguration(authorityConfiguration)
    }
    let ca = CertificateAuthority(
        store: store, configuration: authorityConfiguration, policy: configuration.policy,
        rotation: configuration.rotation, clock: clock,
        logger: logger)
    let created: Bool
    do {
        created = try await ca.bootstrap()
    } catch let error as StorageError where error.code == .conflict {
        // Another replica initialised the shared store at the same moment: use its authorities.
        try await ca.reload()
        created = false
    }
    if created {
        logger.notice(
            "initialised a new CA",
            metadata: [
                "sigil.trust_domain": "\(authorityConfiguration.trustDomain)", "sigil.data_dir": "\(directory.path)",
            ])
    }
    for role in [AuthorityRole.root, .intermediate] {
        if case .renew(let reason) = try await ca.plan(role) {
            logger.warning("repairing \(role.rawValue) authority at start-up: \(reason)")
            try await ca.perform(.renew(reason: reason), for: role)
        }
    }
    // Stores written by versions that kept the keys of retired, tainted and revoked authorities.
    let erased = try await ca.eraseKeysOfNonSigningAuthorities()
    if !erased.isEmpty {
        logger.notice(
            "erased the private keys of authorities that no longer sign", metadata: ["sigil.authorities": "\(erased)"])
    }

    let metrics = ServerMetrics()
    var services: [any Service] = []
    if configuration.tokenSource == .local {
        // Creates the development issuer's key and JWKS on first start; tokens are then checked like any JWKS's.
        _ = try LocalTokenIssuer.load(dataDirectory: directory.path, create: true)
        logger.warning(
            "LOCAL MODE: no token source configured; tokens are checked against the development issuer in \(directory.path). Mint them with `sigil dev token`. Do not use in production."
        )
    }
    // One verifier (one JWKS or TokenReview client, one cache) for every API's audience; each API checks its own.
    let audiences = Set(
        [configuration.tokenAudience] + (configuration.grpcListen == nil ? [] : [configuration.istioTokenAudience]))
    let cache = try makeTokenVerifier(
        configuration, audiences: audiences, directory: directory, clock: clock, logger: logger, services: &services)

    let identity = ServerIdentity(names: configuration.tlsNames, servesGRPC: configuration.grpcListen != nil)
    try identity.renew(with: try await ca.signingAuthority(), at: clock.now)
    let rotation = RotationService(
        ca: ca, store: store, identity: identity, metrics: metrics, directory: directory, clock: clock,
        refreshInterval: configuration.authorityRefreshInterval, logger: logger)
    _ = try await rotation.step()

    try await ca.audit(.start, actor: "system", reason: "sigil serve on \(configuration.host):\(configuration.port)")
    let denials = DenialBudget(perSecond: configuration.auditDenialBudget, clock: clock)
    services.append(
        DenialSummaryService(
            budget: denials, ca: ca, interval: configuration.denialSummaryInterval, clock: clock, logger: logger))
    let api = SigilAPI(
        ca: ca, store: store, verifier: cache, auditKey: try await store.auditKey(), tokenCache: cache,
        denials: denials, metrics: metrics,
        configuration: configuration, clock: clock, logger: logger)
    let router = Router(context: SigilRequestContext.self)
    api.addRoutes(to: router)
    let console = TrustConsole(api: api, sessions: ConsoleSessions(clock: clock))
    console.addRoutes(to: router)
    let requestTimeout = configuration.requestTimeout
    let http = HTTP1Channel.Configuration(
        additionalChannelHandlers: [RequestDeadlineHandler(timeout: requestTimeout, logger: logger)],
        idleTimeout: TimeAmount(configuration.idleTimeout),
        // Bearer tokens are capped at 16 KiB by the verifier; larger header fields are refused by the parser.
        httpDecoderConfiguration: .init(
            maxHeaderFieldSize: 32 * 1024, maxHeaderListSize: 64 * 1024, maxHeaderFieldCount: 100))
    let app = Application(
        router: router,
        server: HTTPServerBuilder { responder in
            ServerTLSChannel(base: HTTP1Channel(responder: responder, configuration: http), identity: identity)
        },
        configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: "sigil"),
        onServerRunning: { channel in
            let port = channel.localAddress?.port ?? configuration.port
            console.listening(host: configuration.tlsNames.first ?? configuration.host, port: port)
            await onListening(port)
        },
        logger: logger)
    let adminPath = configuration.adminSocket ?? directory.path + "/admin.sock"
    guard adminPath.utf8.count < 104 else {
        throw CAError.configuration(
            reason: "admin socket path \(adminPath) is too long for a unix socket; set --admin-socket")
    }
    unlink(adminPath)  // a stale socket from a crashed run
    let adminRouter = Router(context: SigilRequestContext.self)
    AdminAPI(
        ca: ca, store: store, clock: clock, logger: logger, leaseName: RotationService.leaseName, console: console
    ).addRoutes(to: adminRouter)
    let admin = Application(
        router: adminRouter,
        configuration: .init(address: .unixDomainSocket(path: adminPath), serverName: "sigil-admin"),
        onServerRunning: { _ in chmod(adminPath, 0o600) }, logger: logger)
    services.insert(contentsOf: [app, admin, rotation] as [any Service], at: 0)
    if let grpc = configuration.grpcListen {
        services.append(
            IstioCAServer(
                listener: IstioListener(host: grpc.host, port: grpc.port, identity: identity),
                service: IstioCertificateService(api: api, allowedClusters: configuration.istioClusterIDs),
                configuration: configuration, onListening: onGRPCListening))
    }
    services.append(LifecycleAuditService(ca: ca))
    return SigilServerServices(services: services)
}

/// The token verifier for `audiences` on the configured token source, behind a cache; appends the services it
/// needs (JWKS refresh, HTTP client shutdown) to `services`.
private func makeTokenVerifier(
    _ configuration: ServerConfiguration, audiences: Set<String>, directory: DataDirectory, clock: any WallClock,
    logger: Logger, services: inout [any Service]
) throws -> CachingTokenVerifier {
    let inner: any TokenVerifier
    var added: [any Service] = []
    func jwks(_ issuer: String, _ source: any JWKSSource) -> JWKSTokenVerifier {
        let verifier = JWKSTokenVerifier(
            policy: TokenPolicy(issuer: issuer, audiences: audiences), source: source, clock: clock)
        added.append(
            JWKSRefreshService(
                verifier: verifier, interval: configuration.tokenJWKSRefresh, clock: clock, logger: logger))
        return verifier
    }
    switch configuration.tokenSource {
    case .local:
        inner = jwks(LocalTokenIssuer.issuerURL, FileJWKSSource(path: LocalTokenIssuer.jwksPath(directory.path)))
    case .jwksFile(let path):
        inner = jwks(try requireIssuer(configuration), FileJWKSSource(path: path))
    case .jwksURL(let url):
        let client = try makeTokenSourceClient(caFile: configuration.tokenJWKSCA)
        added.append(HTTPClientService(client: client))
        inner = jwks(try requireIssuer(configuration), HTTPJWKSSource(location: .jwks(url), client: client))
    case .discovery:
        let issuer = try requireIssuer(configuration)
        let client = try makeTokenSourceClient(caFile: configuration.tokenJWKSCA)
        added.append(HTTPClientService(client: client))
        inner = jwks(issuer, HTTPJWKSSource(location: .discovery(issuer: issuer), client: client))
    case .tokenReview(let url, let caFile, let credentialFile):
        let client = try makeTokenSourceClient(caFile: caFile)
        added.append(HTTPClientService(client: client))
        inner = TokenReviewVerifier(
            url: url, credentialFile: credentialFile, audiences: audiences, client: client, clock: clock)
    }
    services += added
    return CachingTokenVerifier(inner, clock: clock, capacity: configuration.tokenCacheSize)
}

private func requireIssuer(_ configuration: ServerConfiguration) throws -> String {
    guard let issuer = configuration.tokenIssuer, !issuer.isEmpty else {
        throw CAError.configuration(reason: "--token-issuer is required with a JWKS or discovery token source")
    }
    return issuer
}

/// Shuts an HTTP client down with the service group.
struct HTTPClientService: Service {
    let client: HTTPClient
    func run() async throws {
        try? await gracefulShutdown()
        try await client.shutdown()
    }
}

/// Audits the server's stop once graceful shutdown begins.
struct LifecycleAuditService: Service {
    let ca: CertificateAuthority
    func run() async throws {
        try? await gracefulShutdown()
        try await ca.audit(.stop, actor: "system", reason: "graceful shutdown")
    }
}
