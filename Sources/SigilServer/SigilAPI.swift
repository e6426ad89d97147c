import Foundation
import Hummingbird
import Logging
import NIOCore
import NIOFoundationCompat
import NIOSSL
import SigilCore
import SigilCrypto

/// The public HTTP API: issuance and the read endpoints.
final class SigilAPI: Sendable {
    let ca: CertificateAuthority
    let store: any CAStore
    let verifier: any TokenVerifier
    /// Keyed with the audit key: audit records name tokens by this MAC, never by value.
    let tokenMAC: HMACSHA256
    let tokenCache: CachingTokenVerifier?
    let metrics: ServerMetrics
    let configuration: ServerConfiguration
    let clock: any WallClock
    let logger: Logger
    let clientLimiter: RateLimiter
    let identityLimiter: RateLimiter

    init(
        ca: CertificateAuthority, store: any CAStore, verifier: any TokenVerifier, auditKey: [UInt8], tokenCache: CachingTokenVerifier?, metrics: ServerMetrics,
        configuration: ServerConfiguration, clock: any WallClock, logger: Logger
    ) {
        self.ca = ca
        self.store = store
        self.verifier = verifier
        tokenMAC = HMACSHA256(key: auditKey)
        self.tokenCache = tokenCache
        self.metrics = metrics
        self.configuration = configuration
        self.clock = clock
        self.logger = logger
        clientLimiter = RateLimiter(limit: configuration.clientRateLimit, clock: clock)
        identityLimiter = RateLimiter(limit: configuration.identityRateLimit, clock: clock)
    }

    /// Every public route and its method, so a known path with another method gets 405, not 404.
    static let routes: [String: String] = [
        "/v1/certificates": "POST", "/v1/bundle": "GET", "/v1/bundle.pem": "GET", "/v1/authorities": "GET", "/v1/crl": "GET",
        "/healthz": "GET", "/readyz": "GET", "/metrics": "GET",
    ]

    func addRoutes(to router: Router<SigilRequestContext>) {
        router.add(middleware: ProblemMiddleware(metrics: metrics, logger: logger))
        router.post("/v1/certificates") { request, context in try await self.issue(request, context: context) }
        router.get("/v1/bundle") { request, _ in try await self.bundle(request) }
        router.get("/v1/bundle.pem") { _, _ in try await self.bundlePEM() }
        router.get("/v1/authorities") { _, _ in try await self.authorities() }
        router.get("/v1/crl") { _, _ in try await self.crl() }
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
            // Per client first, before any parsing or token check: the cheap refusal is the point.
            try admit(clientLimiter, "client \(requester.clientAddress ?? "unknown")", auditRefusal: &auditRefusal)
            // Exactly one Content-Type whose media type (parameters aside) is application/json: a prefix match
            // let application/jsonp or "application/json, text/plain" through.
            let contentTypes = request.headers[values: .contentType]
            guard contentTypes.count == 1,
                contentTypes[0].split(separator: ";", omittingEmptySubsequences: false)[0].trimmingOptionalWhitespace.lowercased()
                    == "application/json"
            else {
                throw CAError(.unsupportedMediaType, reason: "content type \(contentTypes.joined(separator: " | ").prefix(100))")
            }
            if let length = request.headers[.contentLength].flatMap(Int.init), length > configuration.maxBodyBytes {
                throw CAError(.payloadTooLarge, reason: "declared body of \(length) bytes")
            }
            let identity = try await authenticate(request, context: context, requester: &requester)
            try admit(identityLimiter, "identity \(identity)", auditRefusal: &auditRefusal)
            let issuance = try await readBody(request).request(for: identity)
            reachedAuthority = true
            let issued = try await ca.issue(issuance, requester: requester)
            let roots = try await ca.snapshot().trustBundlePEM
            logger.info(
                "issued", metadata: [LogKey.identity: "\(issued.spiffeID)", LogKey.serial: "\(issued.serial)", LogKey.requestID: "\(context.requestID)"])
            metrics.issued.increment()
            metrics.issuanceDuration.record(ContinuousClock.now - started)
            return Response(
                status: .created, headers: [.contentType: "application/json"],
                body: .init(byteBuffer: ByteBuffer(bytes: IssuanceResponse(issued, trustBundle: roots).json)))
        } catch let refusal as CAError {
            var error = refusal
            // The authority audits its own decisions; refusals before it are audited here. No audit, no answer.
            // Rate-limit refusals are audited once per key a minute (and counted always): auditing each one
            // durably would let a flood cost the CA a disk write per request.
            if !reachedAuthority && auditRefusal {
                do {
                    _ = try await store.appendAudit(requester.denial(refusal, subject: nil, at: clock.now))
                } catch let auditFailure {
                    error = CAError(.auditUnavailable, reason: "denial could not be audited: \(auditFailure)")
                }
            }
            metrics.denied(error.code)
            logger.log(
                level: auditRefusal ? .notice : .debug, "issuance refused",
                metadata: [LogKey.code: "\(error.code)", LogKey.reason: "\(error.reason)", LogKey.requestID: "\(context.requestID)"])
            throw error
        }
    }

    /// Takes one request's worth from `key`'s bucket, or throws `rate_limited`; `auditRefusal` says whether
    /// this refusal is the one a minute that is audited.
    private func admit(_ limiter: RateLimiter, _ key: String, auditRefusal: inout Bool) throws {
        guard case .limited(let wait, let audit) = limiter.take(key) else { return }
        auditRefusal = audit
        throw CAError.rateLimited(reason: "\(key) over \(limiter.limit)", retryAfter: wait)
    }

    private func readBody(_ request: Request) async throws -> IssuanceRequestBody {
        let buffer: ByteBuffer
        do {
            buffer = try await request.body.collect(upTo: configuration.maxBodyBytes)
        } catch is NIOTooManyBytesError {
            throw CAError(.payloadTooLarge, reason: "body larger than \(configuration.maxBodyBytes) bytes")
        } catch {
            throw CAError(.badRequest, reason: "body incomplete (connection closed or request timeout): \(error)")
        }
        return try IssuanceRequestBody.decode(Array(buffer.readableBytesView))
    }

    /// The caller's identity: from a bearer token, else from a valid, untainted Sigil SVID client certificate.
    private func authenticate(_ request: Request, context: SigilRequestContext, requester: inout Requester) async throws -> SPIFFEID {
        if let authorization = request.headers[.authorization] {
            let prefix = "bearer "
            guard authorization.prefix(prefix.count).lowercased() == prefix else {
                throw CAError(.unauthenticated, reason: "Authorization is not a bearer token")
            }
            let token = String(authorization.dropFirst(prefix.count).trimmingOptionalWhitespace)
            requester.tokenHMAC = hexString(tokenMAC.authenticate(token.utf8))
            let verified = try await verifier.verify(token)
            let identity = try verified.identity.spiffeID(in: ca.configuration.trustDomain)
            requester.actor = identity.description
            return identity
        }
        if let identity = try await clientCertificateIdentity(context) {
            requester.actor = identity.description
            requester.isRenewal = true
            return identity
        }
        throw CAError(.unauthenticated, reason: "no bearer token and no client certificate")
    }

    /// Renewal by mTLS: the presented leaf must chain to a current root through one of Sigil's intermediates,
    /// be valid now, and not chain to a tainted or revoked authority.
    private func clientCertificateIdentity(_ context: SigilRequestContext) async throws -> SPIFFEID? {
        guard let channel = context.channel, let peer = try? await channel.nioSSL_peerCertificate().get() else { return nil }
        let leaf = try Certificate(der: try peer.toDERBytes())
        let authorities = try await ca.snapshot().authorities
        let now = clock.now
        let intermediates = authorities.records.filter { $0.role == .intermediate && $0.state != .revoked }.map(\.certificate)
        let roots = authorities.bundleRoots(at: now).map(\.certificate)
        guard case .valid = try ChainVerifier.verify(leaf, intermediates: intermediates, roots: roots, at: now) else {
            throw CAError(.unauthenticated, reason: "client certificate does not verify against Sigil's authorities")
        }
        guard let issuer = authorities.records.first(where: {
            $0.role == .intermediate && $0.certificate.subjectKeyIdentifier == leaf.authorityKeyIdentifier
        }) else { throw CAError(.unauthenticated, reason: "client certificate not issued by a Sigil intermediate") }
        guard issuer.state != .tainted && issuer.state != .revoked else {
            throw CAError(.unauthenticated, reason: "client certificate issued by \(issuer.state.rawValue) authority \(issuer.id)")
        }
        if let root = issuer.parentID.flatMap(authorities.record(id:)), root.state == .tainted || root.state == .revoked {
            throw CAError(.unauthenticated, reason: "client certificate chains to \(root.state.rawValue) root \(root.id)")
        }
        guard let uris = leaf.subjectAlternativeNames?.value.compactMap({ name -> String? in
            if case .uri(let uri) = name { return uri } else { return nil }
        }), uris.count == 1, let identity = try? SPIFFEID(parsing: uris[0]), identity.trustDomain == ca.configuration.trustDomain,
            identity.isWorkload
        else { throw CAError(.unauthenticated, reason: "client certificate is not an X509-SVID of this trust domain") }
        return identity
    }

    // MARK: Read endpoints

    func bundle(_ request: Request) async throws -> Response {
        let snapshot = try await ca.snapshot()
        let now = clock.now
        let roots = snapshot.authorities.bundleRoots(at: now).map(\.certificate)
        let body = try SPIFFEBundle(roots: roots, sequence: snapshot.bundleSequence(at: now), refreshHint: configuration.bundleRefreshHint).json()
        let etag = "\"\(hexString(Digest.sha256(body).prefix(16)))\""
        if let match = request.headers[.ifNoneMatch], match.split(separator: ",").contains(where: { $0.trimmingOptionalWhitespace == etag }) {
            return Response(status: .notModified, headers: [.eTag: etag])
        }
        return Response(
            status: .ok, headers: [.contentType: "application/json", .eTag: etag, .cacheControl: "max-age=\(configuration.bundleRefreshHint.wholeSeconds)"],
            body: .init(byteBuffer: ByteBuffer(bytes: body)))
    }

    func bundlePEM() async throws -> Response {
        let roots = try await ca.snapshot().authorities.bundleRoots(at: clock.now).map(\.certificate)
        return Response(
            status: .ok, headers: [.contentType: "application/x-pem-file"], body: .init(byteBuffer: ByteBuffer(string: SPIFFEBundle.pem(roots))))
    }

    func authorities() async throws -> Response {
        let snapshot = try await ca.snapshot()
        struct Body: Encodable {
            let trust_domain: String
            let bundle_sequence: Int64
            let authorities: [AuthorityView]
        }
        let body = try JSONEncoder.sorted.encode(
            Body(
                trust_domain: ca.configuration.trustDomain.name, bundle_sequence: snapshot.bundleSequence(at: clock.now),
                authorities: AuthorityView.all(snapshot.authorities)))
        let etag = "\"\(hexString(Digest.sha256(body).prefix(16)))\""
        return Response(status: .ok, headers: [.contentType: "application/json", .eTag: etag], body: .init(byteBuffer: ByteBuffer(bytes: body)))
    }

    /// DER CRL of revoked intermediates, signed by the active root.
    func crl() async throws -> Response {
        let authorities = try await ca.snapshot().authorities
        guard let root = authorities.active(.root) else { throw CAError(.noActiveAuthority, reason: "no active root") }
        let revoked = authorities.records.filter { $0.role == .intermediate && $0.state == .revoked && $0.parentID == root.id }
        let key = try await store.authorityKey(id: root.id)
        let now = clock.now
        let list = try CertificateRevocationList.sign(
            entries: revoked.map { .init(serial: $0.certificate.serial, revokedAt: $0.updatedAt) },
            number: UInt64(max(0, now.timeIntervalSince1970)), thisUpdate: now - .seconds(30), nextUpdate: now + .seconds(86_400),
            issuer: SigningIdentity(certificate: root.certificate, key: key))
        return Response(status: .ok, headers: [.contentType: "application/pkix-crl"], body: .init(byteBuffer: ByteBuffer(bytes: list.der)))
    }

    func ready() async throws -> Response {
        do {
            _ = try await store.bundleSequence()
            let signer = try await ca.signingAuthority()
            _ = try signer.identity.key.sign(Array("sigil readiness".utf8))
            guard !signer.record.isExpired(at: clock.now) else { throw CAError(.noActiveAuthority, reason: "active intermediate expired") }
            return try Self.json(["status": "ready"])
        } catch {
            logger.warning("not ready", metadata: [LogKey.reason: "\(error)"])
            return try Self.json(["status": "unavailable"], status: .serviceUnavailable)
        }
    }

    func prometheus() -> Response {
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

    static func rfc3339(_ date: Date) -> String { IssuanceResponse.timestamp(date) }
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
        guard let first = utf8.firstIndex(where: isText), let last = utf8.lastIndex(where: isText) else { return self[endIndex...] }
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

/// Turns every error into problem+json with a stable code, and counts requests by route and status.
struct ProblemMiddleware: RouterMiddleware {
    typealias Context = SigilRequestContext
    let metrics: ServerMetrics
    let logger: Logger

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let response: Response
        do {
            // RFC 9112 §3.2: a request without a Host header is a 400 (HTTPTypes carries it as the authority).
            guard request.head.authority != nil else { throw CAError(.badRequest, reason: "request without a Host header") }
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
            if code == .methodNotAllowed, let allowed = SigilAPI.routes[request.uri.path] { problem.headers[.allow] = allowed }
            response = problem
        } catch {
            logger.error("unexpected error", metadata: [LogKey.reason: "\(error)", LogKey.requestID: "\(context.requestID)"])
            response = CAError(.internalError, reason: "\(error)").response(requestID: context.requestID)
        }
        metrics.request(route: context.endpointPath ?? "unmatched", status: response.status.code)
        return response
    }
}
