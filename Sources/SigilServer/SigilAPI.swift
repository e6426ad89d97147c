import Foundation
import Hummingbird
import Logging
import NIOCore
import NIOFoundationCompat
import NIOSSL
import SigilAPIModels
import SigilCore
import SigilCrypto
import SigilTokens
import Synchronization

/// The public HTTP API: issuance and the read endpoints.
final class SigilAPI: Sendable {
    let ca: CertificateAuthority
    let store: any CAStore
    let verifier: any TokenVerifier
    /// Keyed with the audit key: audit records name tokens by this MAC, never by value.
    let tokenMAC: HMACSHA256
    let tokenCache: CachingTokenVerifier?
    /// Decides which unauthenticated denials are audited one by one (the rest are counted and summarised).
    let denials: DenialBudget
    let metrics: ServerMetrics
    let configuration: ServerConfiguration
    let clock: any WallClock
    let logger: Logger
    let clientLimiter: RateLimiter
    let identityLimiter: RateLimiter
    /// When readiness last signed, and with which authority (see `ready`).
    private let readiness = Mutex<(signedAt: Date, authorityID: String)?>(nil)

    init(
        ca: CertificateAuthority, store: any CAStore, verifier: any TokenVerifier, auditKey: [UInt8],
        tokenCache: CachingTokenVerifier?,
        denials: DenialBudget, metrics: ServerMetrics, configuration: ServerConfiguration, clock: any WallClock,
        logger: Logger
    ) {
        self.ca = ca
        self.store = store
        self.verifier = verifier
        tokenMAC = HMACSHA256(key: auditKey)
        self.tokenCache = tokenCache
        self.denials = denials
        self.metrics = metrics
        self.configuration = configuration
        self.clock = clock
        self.logger = logger
        clientLimiter = RateLimiter(limit: configuration.clientRateLimit, clock: clock)
        identityLimiter = RateLimiter(limit: configuration.identityRateLimit, clock: clock)
    }

    /// Every public route and its method, so a known path with another method gets 405, not 404.
    static let routes: [String: String] = [
        "/v1/certificates": "POST", "/v1/bundle": "GET", "/v1/bundle.pem": "GET", "/v1/authorities": "GET",
        "/v1/crl": "GET",
        "/v1/crl.pem": "GET", "/healthz": "GET", "/readyz": "GET", "/metrics": "GET",
    ]

    func addRoutes(to router: Router<SigilRequestContext>) {
        router.add(middleware: ProblemMiddleware(metrics: metrics, logger: logger))
        router.add(middleware: ClientRateLimitMiddleware(api: self))
        router.post("/v1/certificates") { request, context in try await self.issue(request, context: context) }
        router.get("/v1/bundle") { request, _ in try await self.bundle(request) }
        router.get("/v1/bundle.pem") { _, _ in try await self.bundlePEM() }
        router.get("/v1/authorities") { _, _ in try await self.authorities() }
        router.get("/v1/crl") { _, _ in try await self.crl() }
        router.get("/v1/crl.pem") { _, _ in try await self.crlsPEM() }
        router.get("/v1/crl/{authority}") { _, context in
            try await self.crl(authorityID: context.parameters.get("authority") ?? "")
        }
        router.get("/healthz") { _, _ in try Self.json(["status": "ok"]) }
        router.get("/readyz") { _, _ in try await self.ready() }
        router.get("/metrics") { _, _ in self.prometheus() }
    }

    // MARK: Issuance

    func issue(_ request: Request, context: SigilRequestContext) async throws -> Response {
        let started = ContinuousClock.now
        var requester = Requester(
            actor: "anonymous", requestID: context.requestID, clientAddress: context.channel?.remoteAddress?.ipAddress)
        var reachedAuthority = false
        var auditRefusal = true
        do {
            // Exactly one Content-Type whose media type (parameters aside) is application/json: a prefix match
            // let application/jsonp or "application/json, text/plain" through.
            let contentTypes = request.headers[values: .contentType]
            guard contentTypes.count == 1,
                contentTypes[0].split(separator: ";", omittingEmptySubsequences: false)[0].trimmingOptionalWhitespace
                    .lowercased()
                    == "application/json"
            else {
                throw CAError(
                    .unsupportedMediaType,
                    reason:
                        "content type is not application/json: \(SafeText.excerpt(contentTypes.joined(separator: " | ")))"
                )
            }
            if let length = request.headers[.contentLength].flatMap(Int.init), length > configuration.maxBodyBytes {
                throw CAError(.payloadTooLarge, reason: "declared body of \(length) bytes")
            }
            let identity = try await authenticate(
                authorization: request.headers[.authorization], audience: configuration.tokenAudience,
                requester: &requester
            ) { try await self.peerCertificate(context) }
            try admitIdentity(identity, auditRefusal: &auditRefusal)
            let issuance = try IssuanceRequest(body: try await readBody(request), identity: identity)
            reachedAuthority = true
            let issued = try await ca.issue(issuance, requester: requester)
            let roots = try await ca.snapshot().trustBundlePEM
            logger.info(
                "issued",
                metadata: [
                    LogKey.identity: "\(issued.spiffeID)", LogKey.serial: "\(issued.serial)",
                    LogKey.requestID: "\(context.requestID)",
                ])
            metrics.issued.increment()
            metrics.issuanceDuration.record(ContinuousClock.now - started)
            return Response(
                status: .created, headers: [.contentType: "application/json"],
                body: .init(byteBuffer: ByteBuffer(bytes: IssuanceResponse(issued, trustBundle: roots).json)))
        } catch let refusal as CAError {
            throw await answerRefusal(
                refusal, requester: requester, reachedAuthority: reachedAuthority, auditRefusal: auditRefusal)
        }
    }

    /// The answer to a request refused with `refusal` (an issuance on HTTPS or Istio's API, a console login). The authority audits its own
    /// decisions; refusals before it are audited here. No audit, no answer. Rate-limit refusals are audited once
    /// per key a minute (`auditRefusal` false otherwise; counted always): auditing each one durably would let a
    /// flood cost the CA a disk write per request. Refusals before authentication succeeded are audited within
    /// the denial budget, the rest counted and summarised.
    func answerRefusal(
        _ refusal: CAError, requester: Requester, reachedAuthority: Bool, auditRefusal: Bool
    ) async -> CAError {
        var audit = !reachedAuthority && auditRefusal
        if audit && !requester.isAuthenticated && !denials.admit(refusal.code.rawValue) {
            audit = false
            metrics.deniedUnaudited.increment()
        }
        return await refused(refusal, requester: requester, audit: audit)
    }

    /// Takes one issuance from `identity`'s bucket, or throws `rate_limited` (`auditRefusal` false when this
    /// refusal is not the one a minute that is audited).
    func admitIdentity(_ identity: SPIFFEID, auditRefusal: inout Bool) throws {
        guard case .limited(let wait, let audit) = identityLimiter.take("identity \(identity)") else { return }
        auditRefusal = audit
        throw CAError.rateLimited(reason: "identity \(identity) over \(identityLimiter.limit)", retryAfter: wait)
    }

    /// Counts, logs and (with `audit`) records a refusal; returns the error to answer with, which becomes
    /// `audit_unavailable` when the record cannot be written.
    func refused(_ refusal: CAError, requester: Requester, audit: Bool) async -> CAError {
        var error = refusal
        if audit {
            do {
                _ = try await store.appendAudit(requester.denial(refusal, subject: nil, at: clock.now))
            } catch let auditFailure {
                error = CAError(.auditUnavailable, reason: "denial could not be audited: \(auditFailure)")
            }
        }
        metrics.denied(error.code)
        logger.log(
            level: audit ? .notice : .debug, "request refused",
            metadata: [
                LogKey.code: "\(error.code)", LogKey.reason: "\(error.reason)",
                LogKey.requestID: "\(requester.requestID ?? "")",
            ])
        return error
    }

    /// Takes one request's worth from the client's bucket (every route), or throws `rate_limited`, audited
    /// once per client a minute and within the denial budget.
    func admitClient(_ context: SigilRequestContext) async throws {
        try await admitClient(address: context.channel?.remoteAddress?.ipAddress, requestID: context.requestID)
    }

    /// `admitClient` for a client at `address` (nil when unknown).
    func admitClient(address: String?, requestID: String) async throws {
        let key = NetworkAddress.rateLimitKey(address)
        guard case .limited(let wait, var audit) = clientLimiter.take(key) else { return }
        if audit && !denials.admit(CAError.Code.rateLimited.rawValue) {
            audit = false
            metrics.deniedUnaudited.increment()
        }
        let requester = Requester(actor: "anonymous", requestID: requestID, clientAddress: address)
        throw await refused(
            CAError.rateLimited(reason: "\(key) over \(clientLimiter.limit)", retryAfter: wait), requester: requester,
            audit: audit)
    }

    private func readBody(_ request: Request) async throws -> [UInt8] {
        let buffer: ByteBuffer
        do {
            buffer = try await request.body.collect(upTo: configuration.maxBodyBytes)
        } catch is NIOTooManyBytesError {
            throw CAError(.payloadTooLarge, reason: "body larger than \(configuration.maxBodyBytes) bytes")
        } catch {
            throw CAError(.badRequest, reason: "body incomplete (connection closed or request timeout): \(error)")
        }
        return Array(buffer.readableBytesView)
    }

    /// The caller's identity: from a bearer token (`authorization`) for `audience`, the calling API's, else from
    /// the client certificate `peerCertificate` reads, when Sigil issued it and it may still renew
    /// (`CertificateAuthority.renewalIdentity`).
    func authenticate(
        authorization: String?, audience: String, requester: inout Requester,
        peerCertificate: () async throws -> [UInt8]?
    ) async throws -> SPIFFEID {
        if let authorization {
            let prefix = "bearer "
            guard authorization.prefix(prefix.count).lowercased() == prefix else {
                throw CAError(.unauthenticated, reason: "Authorization is not a bearer token")
            }
            let token = String(authorization.dropFirst(prefix.count).trimmingOptionalWhitespace)
            requester.tokenHMAC = hexString(tokenMAC.authenticate(token.utf8))
            let verified = try await verifier.verify(token)
            // The verifier accepts every configured API's audience; this API takes only tokens for its own.
            guard verified.audiences.contains(audience) else {
                throw CAError(.audienceMismatch, reason: "token audience does not include \(audience)")
            }
            let identity = try verified.identity.spiffeID(in: ca.configuration.trustDomain)
            requester.actor = identity.description
            return identity
        }
        if let peer = try await peerCertificate() {
            switch try await ca.renewalIdentity(peerChain: [peer]) {
            case .granted(let grant):
                requester.actor = grant.identity.description
                requester.isRenewal = true
                requester.authenticatedAt = grant.authenticatedAt
                requester.renewing = grant.serial
                return grant.identity
            case .refused(let error):
                throw error
            }
        }
        throw CAError(.unauthenticated, reason: "no bearer token and no client certificate")
    }

    /// The DER of the TLS client certificate, nil when none was presented. Anything OpenSSL cannot read is a
    /// refusal (401 with its denial record), never a 500.
    private func peerCertificate(_ context: SigilRequestContext) async throws -> [UInt8]? {
        guard let channel = context.channel else { return nil }
        do {
            guard let peer = try await channel.nioSSL_peerCertificate().get() else { return nil }
            return try peer.toDERBytes()
        } catch {
            throw CAError(.unauthenticated, reason: "the client certificate could not be read")
        }
    }

    // MARK: Read endpoints

    func bundle(_ request: Request) async throws -> Response {
        let snapshot = try await ca.snapshot()
        let now = clock.now
        let roots = snapshot.authorities.bundleRoots(at: now).map(\.certificate)
        let body = try SPIFFEBundle(
            roots: roots, sequence: snapshot.bundleSequence(at: now), refreshHint: configuration.bundleRefreshHint
        ).json()
        let etag = "\"\(hexString(Digest.sha256(body).prefix(16)))\""
        if let match = request.headers[.ifNoneMatch],
            match.split(separator: ",").contains(where: { $0.trimmingOptionalWhitespace == etag })
        {
            return Response(status: .notModified, headers: [.eTag: etag])
        }
        return Response(
            status: .ok,
            headers: [
                .contentType: "application/json", .eTag: etag,
                .cacheControl: "max-age=\(configuration.bundleRefreshHint.wholeSeconds)",
            ],
            body: .init(byteBuffer: ByteBuffer(bytes: body)))
    }

    func bundlePEM() async throws -> Response {
        let roots = try await ca.snapshot().authorities.bundleRoots(at: clock.now).map(\.certificate)
        return Response(
            status: .ok, headers: [.contentType: "application/x-pem-file"],
            body: .init(byteBuffer: ByteBuffer(string: SPIFFEBundle.pem(roots))))
    }

    func authorities() async throws -> Response {
        let snapshot = try await ca.snapshot()
        let body = try JSONEncoder.sorted.encode(
            AuthoritiesResponse(
                trustDomain: ca.configuration.trustDomain.name, bundleSequence: snapshot.bundleSequence(at: clock.now),
                authorities: AuthorityView.all(snapshot.authorities)))
        let etag = "\"\(hexString(Digest.sha256(body).prefix(16)))\""
        return Response(
            status: .ok, headers: [.contentType: "application/json", .eTag: etag],
            body: .init(byteBuffer: ByteBuffer(bytes: body)))
    }

    /// DER CRL of the intermediates the active root revoked (`/v1/crl`), from memory: CRLs are signed when
    /// their list changes, never per request.
    func crl() async throws -> Response {
        let snapshot = try await ca.snapshot()
        guard let root = snapshot.authorities.active(.root) else {
            throw CAError(.noActiveAuthority, reason: "no active root")
        }
        return try crlResponse(snapshot.crls[root.id], authorityID: root.id)
    }

    /// The current CRL of one authority (`/v1/crl/{id}`): a root's lists its revoked intermediates, an
    /// intermediate's its revoked leaves.
    func crl(authorityID: String) async throws -> Response {
        try crlResponse(try await ca.snapshot().crls[authorityID], authorityID: authorityID)
    }

    private func crlResponse(_ list: CertificateRevocationList?, authorityID: String) throws -> Response {
        guard let list else {
            throw CAError(
                .notFound,
                reason: "no CRL for authority \(SafeText.excerpt(authorityID)) (unknown, expired, or without a key)")
        }
        return Response(
            status: .ok, headers: [.contentType: "application/pkix-crl"],
            body: .init(byteBuffer: ByteBuffer(bytes: list.der)))
    }

    /// Every current CRL as PEM, one after another (what a relying party such as Envoy loads as its `crl`).
    func crlsPEM() async throws -> Response {
        let lists = try await ca.snapshot().crls.sorted { $0.key < $1.key }.map(\.value.pem).joined()
        return Response(
            status: .ok, headers: [.contentType: "application/x-pem-file"],
            body: .init(byteBuffer: ByteBuffer(string: lists)))
    }

    /// Ready when the store answers and the active intermediate can sign. The store is asked every time (a
    /// cheap read); the signature, which proves the key works, is made at most once a second, so an
    /// unauthenticated probe cannot make the CA sign at will.
    func ready() async throws -> Response {
        let now = clock.now
        let ready: Bool
        do {
            _ = try await store.bundleSequence()
            let signer = try await ca.signingAuthority()
            guard !signer.record.isExpired(at: now) else {
                throw CAError(.noActiveAuthority, reason: "active intermediate expired")
            }
            let recent = readiness.withLock { last in
                last.map {
                    $0.authorityID == signer.record.id && $0.signedAt <= now && now.timeIntervalSince($0.signedAt) < 1
                } ?? false
            }
            if !recent {
                _ = try signer.identity.key.sign(Array("sigil readiness".utf8))
                readiness.withLock { $0 = (now, signer.record.id) }
            }
            ready = true
        } catch {
            logger.warning("not ready", metadata: [LogKey.reason: "\(error)"])
            ready = false
        }
        return try readinessResponse(ready)
    }

    private func readinessResponse(_ ready: Bool) throws -> Response {
        ready
            ? try Self.json(["status": "ready"]) : try Self.json(["status": "unavailable"], status: .serviceUnavailable)
    }

    func prometheus() -> Response {
        metrics.rejectedAuthorities.set(to: Double(ca.cachedSnapshot?.rejected.count ?? 0))
        if let statistics = tokenCache?.statistics {
            metrics.tokenCacheHits.set(to: Double(statistics.hits))
            metrics.tokenCacheMisses.set(to: Double(statistics.misses))
        }
        return Response(
            status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
            body: .init(byteBuffer: ByteBuffer(bytes: metrics.registry.emitToBuffer())))
    }

    // MARK: Encoding

    static func json(_ value: some Encodable, status: HTTPResponse.Status = .ok) throws -> Response {
        Response(
            status: status, headers: [.contentType: "application/json"],
            body: .init(byteBuffer: ByteBuffer(bytes: try JSONEncoder.sorted.encode(value))))
    }

    static func rfc3339(_ date: Date) -> String { Timestamp.seconds(date) }
}

extension JSONEncoder {
    static var sorted: JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }
}

extension Substring {
    /// Without leading and trailing spaces and tabs, HTTP's optional whitespace (RFC 9110 §5.6.3). Foundation's
    /// `trimmingCharacters(in:)` bridges to NSString: on a bearer token that was 7 % of the server's CPU.
    var trimmingOptionalWhitespace: Substring {
        let isText = { (byte: UInt8) in byte != 0x20 && byte != 0x09 }
        guard let first = utf8.firstIndex(where: isText), let last = utf8.lastIndex(where: isText) else {
            return self[endIndex...]
        }
        return self[first...last]
    }
}

/// Log metadata keys (dotted lower case, one place).
enum LogKey {
    static let code = "sigil.code"
    static let reason = "sigil.reason"
    static let serial = "sigil.serial"
    static let identity = "sigil.identity"
    static let authority = "sigil.authority"
    static let requestID = "request.id"
}

/// The per-client rate limit on every route, before any other work (the cheap refusal is the point).
struct ClientRateLimitMiddleware: RouterMiddleware {
    typealias Context = SigilRequestContext
    let api: SigilAPI

    func handle(
        _ request: Request, context: Context, next: (Request, Context) async throws -> Response
    ) async throws -> Response {
        try await api.admitClient(context)
        return try await next(request, context)
    }
}

/// Turns every error into problem+json with a stable code, and counts requests by route and status.
struct ProblemMiddleware: RouterMiddleware {
    typealias Context = SigilRequestContext
    let metrics: ServerMetrics
    let logger: Logger

    func handle(
        _ request: Request, context: Context, next: (Request, Context) async throws -> Response
    ) async throws -> Response {
        let response: Response
        do {
            // RFC 9112 §3.2: a request without a Host header is a 400 (HTTPTypes carries it as the authority).
            guard request.head.authority != nil else {
                throw CAError(.badRequest, reason: "request without a Host header")
            }
            response = try await next(request, context)
        } catch let error as CAError {
            response = error.response(requestID: context.requestID)
        } catch let error as HTTPError {
            let code: CAError.Code
            switch error.status {
            case .notFound where SigilAPI.routes[request.uri.path] != nil: code = .methodNotAllowed
            case .notFound: code = .notFound
            case .methodNotAllowed: code = .methodNotAllowed
            case .contentTooLarge: code = .payloadTooLarge
            case .unsupportedMediaType: code = .unsupportedMediaType
            default: code = error.status.code < 500 ? .badRequest : .internalError
            }
            var problem = CAError(code, reason: "\(error)").response(requestID: context.requestID)
            if code == .methodNotAllowed, let allowed = SigilAPI.routes[request.uri.path] {
                problem.headers[.allow] = allowed
            }
            response = problem
        } catch {
            logger.error(
                "unexpected error", metadata: [LogKey.reason: "\(error)", LogKey.requestID: "\(context.requestID)"])
            response = CAError(.internalError, reason: "\(error)").response(requestID: context.requestID)
        }
        metrics.request(route: context.endpointPath ?? "unmatched", status: response.status.code)
        return response
    }
}
