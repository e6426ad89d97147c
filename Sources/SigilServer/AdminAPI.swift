import Foundation
import Hummingbird
import Logging
import NIOCore
import NIOPosix
import SigilAPIModels
import SigilCore
import SigilCrypto

/// Break-glass and rotation control, served only on a unix socket (mode 0600), never on TCP. Every verb is
/// audited with the caller's uid (from SO_PEERCRED) and the operator's reason.
final class AdminAPI: Sendable {
    let ca: CertificateAuthority
    let store: any CAStore
    let clock: any WallClock
    let logger: Logger
    let leaseName: String
    let console: TrustConsole

    init(
        ca: CertificateAuthority, store: any CAStore, clock: any WallClock, logger: Logger, leaseName: String,
        console: TrustConsole
    ) {
        self.console = console
        self.ca = ca
        self.store = store
        self.clock = clock
        self.logger = logger
        self.leaseName = leaseName
    }

    func addRoutes(to router: Router<SigilRequestContext>) {
        router.add(middleware: AdminProblemMiddleware())
        router.get("/admin/status") { _, context in try await self.status(context) }
        router.post("/admin/rotate") { request, context in try await self.rotate(request, context: context) }
        router.post("/admin/revoke") { request, context in try await self.revoke(request, context: context) }
        router.post("/admin/taint") { request, context in try await self.taint(request, context: context) }
        router.post("/admin/console-login") { request, context in try await self.consoleLogin(request, context: context)
        }
    }

    /// A one-time login URL for the trust console, for whoever may use this socket.
    func consoleLogin(_ request: Request, context: SigilRequestContext) async throws -> Response {
        let body = try await decode(AdminConsoleLoginRequest.self, request)
        let lifetime = Duration.seconds(body.ttlSeconds ?? Int(ConsoleSessions.maxLoginLifetime.wholeSeconds))
        guard lifetime > .zero, lifetime <= ConsoleSessions.maxLoginLifetime else {
            throw CAError(.badRequest, reason: "ttl_seconds must be 1…\(ConsoleSessions.maxLoginLifetime.wholeSeconds)")
        }
        guard let base = console.baseURL else {
            throw CAError(.noActiveAuthority, reason: "the HTTPS listener is not up yet")
        }
        let actor = try await actor(context)
        let login = try console.sessions.mintLogin(actor: actor, lifetime: lifetime)
        try await ca.audit(
            .adminConsoleLogin, actor: actor,
            reason:
                "\(body.reason.map { $0.isEmpty ? "console login" : $0 } ?? "console login"); valid until \(SigilAPI.rfc3339(login.expiresAt)), once"
        )
        return try SigilAPI.json(
            AdminConsoleLoginResponse(
                url: "\(base)/ui/login#token=\(login.token)", expiresAt: SigilAPI.rfc3339(login.expiresAt)))
    }

    func status(_ context: SigilRequestContext) async throws -> Response {
        try await ca.reload()
        let snapshot = try await ca.snapshot()
        let now = clock.now
        let counts = try await store.liveCounts(at: now)
        let lease = try await store.lease(leaseName, now: now)
        let body = AdminStatusResponse(
            trustDomain: ca.configuration.trustDomain.name, bundleSequence: snapshot.bundleSequence(at: now),
            leaseHolder: lease?.holder,
            leaseExpiresAt: lease.map { SigilAPI.rfc3339($0.expiresAt) },
            authorities: AuthorityView.all(snapshot.authorities, liveCounts: counts, now: now))
        try await ca.audit(.adminStatus, actor: try await actor(context))
        return try SigilAPI.json(body)
    }

    func rotate(_ request: Request, context: SigilRequestContext) async throws -> Response {
        let body = try await decode(AdminRotateRequest.self, request)
        guard let role = AuthorityRole(rawValue: body.role) else {
            throw CAError(.badRequest, reason: "role must be root or intermediate")
        }
        let outcome = try await ca.rotateNow(
            role, taintOld: body.taintOld ?? false, dryRun: body.dryRun ?? false,
            reason: try requireReason(body.reason),
            actor: try await actor(context))
        logger.notice("admin rotate", metadata: ["sigil.role": "\(role.rawValue)", "sigil.outcome": "\(outcome)"])
        return try SigilAPI.json(AdminRotateResponse(outcome))
    }

    /// An `authority_id` revokes a tainted authority; a `serial` revokes one leaf.
    func revoke(_ request: Request, context: SigilRequestContext) async throws -> Response {
        let body = try await decode(AdminRevokeRequest.self, request)
        let reason = try requireReason(body.reason)
        switch (body.authorityID, body.serial) {
        case (let id?, nil):
            let record = try await ca.revoke(id, reason: reason, actor: try await actor(context))
            logger.notice("admin revoke", metadata: [LogKey.authority: "\(record.id)"])
            return try SigilAPI.json(
                AdminRevokedAuthority(id: record.id, role: record.role.rawValue, state: record.state.rawValue))
        case (nil, let text?):
            guard let serial = SerialNumber(hex: text) else {
                throw CAError(.badRequest, reason: "serial must be hexadecimal")
            }
            let outcome = try await ca.revokeCertificate(serial, reason: reason, actor: try await actor(context))
            logger.notice(
                "admin revoke", metadata: [LogKey.serial: "\(outcome.serial)", LogKey.identity: "\(outcome.spiffeID)"])
            return try SigilAPI.json(AdminRevokedCertificate(outcome))
        default:
            throw CAError(.badRequest, reason: "name exactly one of authority_id and serial")
        }
    }

    func taint(_ request: Request, context: SigilRequestContext) async throws -> Response {
        let body = try await decode(AdminTaintRequest.self, request)
        let outcome = try await ca.taint(
            body.authorityID, reason: try requireReason(body.reason), dryRun: body.dryRun ?? false,
            actor: try await actor(context))
        logger.notice(
            "admin taint", metadata: [LogKey.authority: "\(outcome.authorityID)", "sigil.dry_run": "\(outcome.dryRun)"])
        return try SigilAPI.json(AdminTaintResponse(outcome))
    }

    private func requireReason(_ reason: String) throws -> String {
        let trimmed = reason.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !trimmed.isEmpty else {
            throw CAError(.badRequest, reason: "a --reason is required for every admin verb")
        }
        return trimmed
    }

    private func decode<T: Decodable>(_ type: T.Type, _ request: Request) async throws -> T {
        let buffer = try await request.body.collect(upTo: 16 * 1024)
        do {
            return try JSONDecoder().decode(type, from: buffer)
        } catch {
            throw CAError(.badRequest, reason: "admin request body does not decode")
        }
    }

    /// `admin:uid=<uid>,pid=<pid>` from the kernel's peer credentials of the socket.
    private func actor(_ context: SigilRequestContext) async throws -> String {
        struct PeerCredentials {
            var pid: Int32 = 0
            var uid: UInt32 = 0
            var gid: UInt32 = 0
        }
        guard let provider = context.channel as? any SocketOptionProvider else { return "admin" }
        let credentials: PeerCredentials? = try? await provider.unsafeGetSocketOption(
            level: SocketOptionLevel(SOL_SOCKET), name: SocketOptionName(SO_PEERCRED)
        ).get()
        guard let credentials else { return "admin" }
        return "admin:uid=\(credentials.uid),pid=\(credentials.pid)"
    }
}

/// problem+json for the admin socket, like the public API.
struct AdminProblemMiddleware: RouterMiddleware {
    typealias Context = SigilRequestContext
    func handle(
        _ request: Request, context: Context, next: (Request, Context) async throws -> Response
    ) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as CAError {
            return error.response(requestID: context.requestID, detail: error.reason)
        } catch let error as HTTPError {
            return CAError(error.status == .notFound ? .notFound : .badRequest, reason: "\(error)").response(
                requestID: context.requestID)
        } catch {
            return CAError(.internalError, reason: "\(error)").response(
                requestID: context.requestID, detail: "\(error)")
        }
    }
}
