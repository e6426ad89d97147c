import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import SigilAPIModels
import SigilCore
import SigilCrypto
import Synchronization

/// The trust console: read-only pages under `/ui/` on the HTTPS listener. The trust chain and the timeline show
/// what `/v1/authorities` already publishes; workloads, activity and audit need an operator session
/// (`ConsoleSessions`). Nothing here changes state but sessions: break-glass stays on the admin socket. Every
/// login, logout and export is audited.
final class TrustConsole: Sendable {
    static let cookie = "sigil_console"
    /// Expiry horizons of the workloads page.
    static let horizons: [Duration] = [.seconds(300), .seconds(900), .seconds(3600)]
    /// The most audit records a page shows and an export holds.
    static let pageLimit = 200
    static let exportLimit = 100_000

    let api: SigilAPI
    let sessions: ConsoleSessions
    let verification: AuditVerificationCache
    private let base = Mutex<String?>(nil)

    /// `https://<first TLS name>:<port>`, once the HTTPS listener is up: what login URLs start with.
    var baseURL: String? { base.withLock { $0 } }

    func listening(host: String, port: Int) {
        base.withLock { $0 = "https://\(host.contains(":") ? "[\(host)]" : host):\(port)" }
    }

    init(api: SigilAPI, sessions: ConsoleSessions) {
        self.api = api
        self.sessions = sessions
        verification = AuditVerificationCache(store: api.store, clock: api.clock, logger: api.logger)
    }

    var ca: CertificateAuthority { api.ca }
    var clock: any WallClock { api.clock }

    func addRoutes(to router: Router<SigilRequestContext>) {
        router.get("/ui") { _, _ in Self.redirect("/ui/chain") }
        let ui = router.group("/ui").add(middleware: ConsoleHeaders())
        for page in ConsolePages.Page.allCases {
            ui.get("/\(page.rawValue)") { request, context in try await self.page(page, request, context) }
        }
        ui.get("/audit/export") { request, context in try await self.export(request, context) }
        ui.get("/login") { request, _ in try await self.loginPage(request) }
        ui.post("/session") { request, context in try await self.startSession(request, context) }
        ui.post("/logout") { request, context in try await self.logout(request, context) }
        ui.get("/assets/{name}") { request, context in try Self.asset(context.parameters.get("name") ?? "", request) }
    }

    // MARK: Pages

    func page(_ page: ConsolePages.Page, _ request: Request, _ context: SigilRequestContext) async throws -> Response {
        let session = sessions.session(request.cookies[Self.cookie]?.value)
        if page.needsSession && session == nil { return Self.redirect("/ui/login") }
        let now = clock.now
        let body: String
        var refresh: Int? = 30
        switch page {
        case .chain: body = ConsolePages.chain(try await authorities(now: now))
        case .timeline: body = try await timeline(now: now)
        case .workloads:
            body = ConsolePages.workloads(
                try await api.store.liveIdentities(at: now, expiringWithin: Self.horizons), horizons: Self.horizons,
                namespace: request.uri.queryParameters.get("namespace"), now: now)
        case .activity:
            let since = now - .seconds(3600)
            body = ConsolePages.activity(
                try await api.store.auditCounts(since: since),
                latestDenials: try await api.store.auditRecords(
                    AuditQuery(since: since, action: .deny, limit: 20, newestFirst: true)), since: since, now: now)
        case .audit:
            refresh = nil  // an operator may be typing filters
            let filters = Self.filters(request)
            let status = verification.status()
            body = ConsolePages.audit(
                try await api.store.auditRecords(try Self.query(filters, limit: Self.pageLimit, newestFirst: true)),
                filters: filters, verification: status.text, verified: status.ok, limit: Self.pageLimit)
        }
        return Self.html(
            ConsolePages.layout(
                page.title, current: page, trustDomain: ca.configuration.trustDomain.name, signedIn: session != nil,
                refresh: refresh, now: now, body: body),
            private: page.needsSession)
    }

    private func authorities(now: Date) async throws -> AuthoritiesResponse {
        let snapshot = try await ca.snapshot()
        return AuthoritiesResponse(
            trustDomain: ca.configuration.trustDomain.name, bundleSequence: snapshot.bundleSequence(at: now),
            authorities: AuthorityView.all(
                snapshot.authorities, liveCounts: try await api.store.liveCounts(at: now), now: now))
    }

    private func timeline(now: Date) async throws -> String {
        let records = try await ca.snapshot().authorities.records
        // Authorities still valid, or expired within one lifetime of their role: the recent past, not all history.
        let window = Dictionary(grouping: records, by: \.role).mapValues { group in
            group.map { $0.notAfter.timeIntervalSince($0.notBefore) }.max() ?? 0
        }
        let shown = records.filter { $0.notAfter.addingTimeInterval(window[$0.role] ?? 0) > now }
        let bars = shown.map { record in
            let schedule = ca.planner.schedule(notBefore: record.notBefore, notAfter: record.notAfter)
            return ConsolePages.TimelineBar(
                id: record.id, role: record.role.rawValue, state: record.state.rawValue, notBefore: record.notBefore,
                notAfter: record.notAfter, prepareAt: schedule.prepareAt, activateAt: schedule.activateAt)
        }
        let ids = Set(shown.map(\.id))
        var events: [ConsolePages.TimelineEvent] = []
        for action in [AuditAction.taint, .revoke] {
            for record in try await api.store.auditRecords(AuditQuery(action: action, limit: 1000, newestFirst: true)) {
                guard let id = record.event.authorityID, ids.contains(id), record.event.outcome == .success else {
                    continue
                }
                events.append(.init(authorityID: id, action: action.rawValue, time: record.event.time))
            }
        }
        return ConsolePages.timeline(bars, events: events, now: now)
    }

    // MARK: Audit export

    func export(_ request: Request, _ context: SigilRequestContext) async throws -> Response {
        guard let session = sessions.session(request.cookies[Self.cookie]?.value) else {
            return Self.redirect("/ui/login")
        }
        let filters = Self.filters(request)
        let records = try await api.store.auditRecords(try Self.query(filters, limit: Self.exportLimit))
        try await audit(
            .consoleExport, session: session, context,
            reason:
                "exported \(records.count) record(s)\(filters.queryString.isEmpty ? "" : " for \(filters.queryString)")"
        )
        var body = ByteBuffer()
        for record in records {
            body.writeString(record.jsonLine)
            body.writeString("\n")
        }
        return Response(
            status: .ok,
            headers: [
                .contentType: "application/x-ndjson", .cacheControl: "no-store",
                .contentDisposition: "attachment; filename=\"sigil-audit.jsonl\"",
            ], body: .init(byteBuffer: body))
    }

    static func filters(_ request: Request) -> ConsolePages.AuditFilters {
        let query = request.uri.queryParameters
        func value(_ name: String) -> String { query.get(name) ?? "" }
        return ConsolePages.AuditFilters(
            identity: value("identity"), serial: value("serial"), action: value("action"), outcome: value("outcome"),
            since: value("since"), until: value("until"))
    }

    static func query(_ filters: ConsolePages.AuditFilters, limit: Int, newestFirst: Bool = false) throws -> AuditQuery
    {
        func time(_ text: String, _ name: String) throws -> Date? {
            guard !text.isEmpty else { return nil }
            guard let date = Timestamp.parse(text) else {
                throw CAError(.badRequest, reason: "\(name) is not an RFC 3339 time")
            }
            return date
        }
        var query = AuditQuery(
            since: try time(filters.since, "since"), until: try time(filters.until, "until"),
            subject: filters.identity.isEmpty ? nil : filters.identity,
            serial: filters.serial.isEmpty ? nil : filters.serial, limit: limit, newestFirst: newestFirst)
        if !filters.action.isEmpty {
            guard let action = AuditAction(rawValue: filters.action) else {
                throw CAError(.badRequest, reason: "unknown audit action")
            }
            query.action = action
        }
        if !filters.outcome.isEmpty {
            guard let outcome = AuditOutcome(rawValue: filters.outcome) else {
                throw CAError(.badRequest, reason: "outcome must be success or failure")
            }
            query.outcome = outcome
        }
        return query
    }

    // MARK: Sessions

    func loginPage(_ request: Request) async throws -> Response {
        let signedIn = sessions.session(request.cookies[Self.cookie]?.value) != nil
        return Self.html(
            ConsolePages.layout(
                "Operator sign-in", current: nil, trustDomain: ca.configuration.trustDomain.name, signedIn: signedIn,
                now: clock.now, body: ConsolePages.login + ConsolePages.signInNeeded),
            private: true)
    }

    /// Exchanges the one-time token of `sigil admin console-login` (JSON `{"token": …}`) for a session cookie.
    func startSession(_ request: Request, _ context: SigilRequestContext) async throws -> Response {
        var requester = Requester(
            actor: "anonymous", requestID: context.requestID, clientAddress: context.channel?.remoteAddress?.ipAddress)
        do {
            guard request.headers[.contentType]?.lowercased().hasPrefix("application/json") == true else {
                throw CAError(.unsupportedMediaType, reason: "console login body is not application/json")
            }
            let body: ByteBuffer
            do {
                body = try await request.body.collect(upTo: 1024)
            } catch {
                throw CAError(.payloadTooLarge, reason: "console login body over 1 KiB")
            }
            guard let object = try StrictJSON.object(Array(body.readableBytesView), code: .badRequest, maxDepth: 2),
                let token = object.string("token")
            else {
                throw CAError(.badRequest, reason: "console login body is not {\"token\": string}")
            }
            let (id, session) = try sessions.redeem(token)
            requester.actor = session.actor
            try await audit(
                .consoleLogin, session: session, context,
                reason: "console session until \(Timestamp.seconds(session.expiresAt))")
            var response = Response(status: .noContent)
            response.headers[.setCookie] =
                "\(Self.cookie)=\(id); Path=/ui; Max-Age=\(ConsoleSessions.sessionLifetime.wholeSeconds); HttpOnly; Secure; SameSite=Strict"
            response.headers[.cacheControl] = "no-store"
            return response
        } catch let refusal as CAError {
            throw await api.answerRefusal(refusal, requester: requester, reachedAuthority: false, auditRefusal: true)
        }
    }

    func logout(_ request: Request, _ context: SigilRequestContext) async throws -> Response {
        if let session = sessions.end(request.cookies[Self.cookie]?.value) {
            try await audit(.consoleLogout, session: session, context, reason: "console session ended")
        }
        var response = Self.redirect("/ui/chain")
        response.headers[.setCookie] = "\(Self.cookie)=; Path=/ui; Max-Age=0; HttpOnly; Secure; SameSite=Strict"
        return response
    }

    private func audit(
        _ action: AuditAction, session: ConsoleSessions.Session, _ context: SigilRequestContext, reason: String
    ) async throws {
        var event = AuditEvent(
            time: clock.now, actor: session.actor, action: action, reason: reason, requestID: context.requestID,
            clientAddress: context.channel?.remoteAddress?.ipAddress)
        event.outcome = .success
        do {
            _ = try await api.store.appendAudit(event)
        } catch {
            throw CAError(.auditUnavailable, reason: "console \(action.rawValue) could not be audited: \(error)")
        }
    }

    // MARK: Responses

    static func asset(_ name: String, _ request: Request) throws -> Response {
        guard let asset = ConsoleAssets.files[name] else {
            throw CAError(.notFound, reason: "no console asset \(SafeText.excerpt(name))")
        }
        let etag = "\"\(hexString(Digest.sha256(Array(asset.body.utf8)).prefix(12)))\""
        if request.headers[.ifNoneMatch] == etag { return Response(status: .notModified, headers: [.eTag: etag]) }
        return Response(
            status: .ok, headers: [.contentType: asset.contentType, .eTag: etag, .cacheControl: "no-cache"],
            body: .init(byteBuffer: ByteBuffer(string: asset.body)))
    }

    static func html(_ page: String, private: Bool) -> Response {
        Response(
            status: .ok,
            headers: [.contentType: "text/html; charset=utf-8", .cacheControl: `private` ? "no-store" : "no-cache"],
            body: .init(byteBuffer: ByteBuffer(string: page)))
    }

    static func redirect(_ location: String) -> Response {
        Response(status: .seeOther, headers: [.location: location, .cacheControl: "no-store"])
    }
}

/// Headers of every console response: a strict CSP (only this server's script and style, no inline script, no
/// framing, no third-party requests), the server's time to render it (`Server-Timing`, which the benchmark reads),
/// and a bound on the query string.
struct ConsoleHeaders: RouterMiddleware {
    typealias Context = SigilRequestContext
    static let maxQueryBytes = 2048
    static let frameOptions = HTTPField.Name("X-Frame-Options")!  // precondition: a valid field name
    static let referrerPolicy = HTTPField.Name("Referrer-Policy")!  // precondition: a valid field name
    static let serverTiming = HTTPField.Name("Server-Timing")!  // precondition: a valid field name
    static let contentSecurityPolicy =
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
        + "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"

    func handle(
        _ request: Request, context: Context, next: (Request, Context) async throws -> Response
    ) async throws -> Response {
        if let query = request.uri.query, query.utf8.count > Self.maxQueryBytes {
            throw CAError(.badRequest, reason: "console query string over \(Self.maxQueryBytes) bytes")
        }
        let started = ContinuousClock.now
        var response = try await next(request, context)
        let elapsed = ContinuousClock.now - started
        response.headers[Self.serverTiming] = String(
            format: "render;dur=%.2f",
            Double(elapsed.components.seconds) * 1000 + Double(elapsed.components.attoseconds) / 1e15)
        response.headers[.contentSecurityPolicy] = Self.contentSecurityPolicy
        response.headers[Self.frameOptions] = "DENY"
        response.headers[.xContentTypeOptions] = "nosniff"
        response.headers[Self.referrerPolicy] = "no-referrer"
        return response
    }
}

/// The audit chain's verification for the console, kept current in the background: a page shows the last
/// result and never waits for a walk over the whole chain. A walk starts when the result is older than a
/// minute (one at a time) and checks the whole chain from its first record.
final class AuditVerificationCache: Sendable {
    private struct State {
        var text = "Audit chain: verification in progress…"
        var ok = true
        var checkedAt: Date?
        var running = false
    }

    private let store: any CAStore
    private let clock: any WallClock
    private let logger: Logger
    private let state = Mutex(State())

    init(store: any CAStore, clock: any WallClock, logger: Logger) {
        self.store = store
        self.clock = clock
        self.logger = logger
    }

    /// The last result; starts a new walk when it is older than a minute.
    func status() -> (ok: Bool, text: String) {
        let now = clock.now
        let (result, start) = state.withLock { state -> ((Bool, String), Bool) in
            let stale = state.checkedAt.map { now.timeIntervalSince($0) > 60 } ?? true
            let start = stale && !state.running
            if start { state.running = true }
            return ((state.ok, state.text), start)
        }
        if start { Task { await self.walk() } }
        return result
    }

    /// Walks the whole chain now and records the result.
    func walk() async {
        var ok = false
        let text: String
        do {
            switch try await store.verifyAuditChain() {
            case .valid(let count, let hash):
                ok = true
                text = "Audit chain OK: \(count) records, head \(hash) (verified \(Timestamp.seconds(clock.now)))"
            case .broken(let sequence, let reason):
                text = "Audit chain BROKEN at record \(sequence): \(reason)"
            }
        } catch {
            text = "Audit chain could not be read: \(error)"
            logger.warning("console audit verification failed", metadata: ["sigil.reason": "\(error)"])
        }
        let finished = clock.now
        state.withLock { state in
            state.ok = ok
            state.text = text
            state.checkedAt = finished
            state.running = false
        }
    }
}
