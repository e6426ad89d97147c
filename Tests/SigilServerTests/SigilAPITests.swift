import Foundation
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import SigilAPIModels
import SigilCore
import SigilCrypto
import SigilTestSupport
import SigilTokens
import Testing

@testable import SigilServer

/// The public routes over Hummingbird's live test framework (plain HTTP on 127.0.0.1): the handlers parse, call the
/// CA and map errors to problem+json; the middleware limits every route. The CA, its in-memory store and
/// the manual clock are real; tokens are checked by `KnownTokens`, a stand-in for the issuer's JWKS (whose
/// verifier has its own tests) so that each test names the identity a token proves.
@Suite("HTTPS API routes")
struct SigilAPITests {
    static let web = WorkloadIdentity(namespace: "default", serviceAccount: "web")

    /// Tokens the stand-in verifier accepts, and for whom.
    struct KnownTokens: TokenVerifier {
        let tokens: [String: WorkloadIdentity]
        func verify(_ token: String) async throws -> VerifiedToken {
            guard let identity = tokens[token] else { throw CAError(.tokenInvalid, reason: "unknown test token") }
            return VerifiedToken(
                identity: identity, expiresAt: TestPKI.referenceDate + .seconds(3600), audiences: ["sigil"])
        }
    }

    static let silent = Logger(label: "test") { _ in SwiftLogNoOpLogHandler() }

    let clock = ManualClock(now: TestPKI.referenceDate)
    let store = InMemoryStore()
    let ca: CertificateAuthority

    init() async throws {
        ca = CertificateAuthority(
            store: store, configuration: AuthorityConfiguration(trustDomain: try TrustDomain("cluster.local")),
            policy: IssuancePolicy(),
            clock: clock)
        try await ca.bootstrap()
    }

    /// The router of a server configured by `configure`, under test.
    func withAPI(
        denialBudget: Int = 100, _ configure: (inout ServerConfiguration) -> Void = { _ in },
        _ test: @escaping @Sendable (any TestClientProtocol) async throws -> Void
    ) async throws {
        var configuration = ServerConfiguration(authority: ca.configuration)
        configure(&configuration)
        let api = SigilAPI(
            ca: ca, store: store, verifier: KnownTokens(tokens: ["good": Self.web]),
            auditKey: try await store.auditKey(), tokenCache: nil,
            denials: DenialBudget(perSecond: denialBudget, clock: clock), metrics: ServerMetrics(),
            configuration: configuration, clock: clock,
            logger: Self.silent)
        let router = Router(context: SigilRequestContext.self)
        api.addRoutes(to: router)
        try await Application(
            router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)),
            logger: Self.silent
        ).test(.live, test)
    }

    static func body(_ csr: String, ttl: Int? = nil) throws -> ByteBuffer {
        ByteBuffer(bytes: try JSONEncoder().encode(IssuanceRequestBody(csr: csr, ttlSeconds: ttl)))
    }

    static func csr() throws -> String {
        try TestPKI.makeCSR(names: [.uri("spiffe://cluster.local/ns/default/sa/web")]).csr.pem
    }

    static let json: HTTPFields = [.contentType: "application/json", .authorization: "Bearer good"]

    /// Expects problem+json with `status` and `code`; returns the problem.
    @discardableResult
    static func expectProblem(_ response: TestResponse, _ status: HTTPResponse.Status, _ code: String) throws -> Problem
    {
        #expect(response.status == status)
        #expect(response.headers[.contentType] == "application/problem+json")
        let problem = try JSONDecoder().decode(Problem.self, from: Data(buffer: response.body))
        #expect(problem.code == code && problem.status == Int(status.code), "\(problem)")
        return problem
    }

    @Test("an issuance answers 201 with the chain, the bundle and the times, and is audited")
    func issues() async throws {
        let csr = try Self.csr()
        try await withAPI { client in
            try await client.execute(
                uri: "/v1/certificates", method: .post, headers: Self.json, body: try Self.body(csr, ttl: 600)
            ) { response in
                #expect(response.status == .created)
                let issued = try JSONDecoder().decode(IssuanceResponse.self, from: Data(buffer: response.body))
                #expect(
                    issued.spiffeID == "spiffe://cluster.local/ns/default/sa/web" && issued.chain.count == 2
                        && issued.trustBundle.count == 1)
                let leaf = try Certificate(pem: issued.chain[0])
                #expect(
                    leaf.notAfter.timeIntervalSince(leaf.notBefore) == 630, "ttl_seconds 600 and 30 s of backdating")
            }
        }
        #expect(await store.auditLog.last?.event.action == .issue)
    }

    @Test(
        "refusals are problem+json with their stable code, and those before authentication are audited",
        arguments: [
            ("application/jsonp", "Bearer good", 415, "unsupported_media_type"),
            ("application/json", "Bearer bad", 401, "token_invalid"),
            ("application/json", "Basic Zm9vOmJhcg==", 401, "unauthenticated"),
            ("application/json", "", 401, "unauthenticated"),
        ])
    func refusals(_ contentType: String, _ authorization: String, _ status: Int, _ code: String) async throws {
        let csr = try Self.csr()
        try await withAPI { client in
            var headers: HTTPFields = [.contentType: contentType]
            if !authorization.isEmpty { headers[.authorization] = authorization }
            try await client.execute(uri: "/v1/certificates", method: .post, headers: headers, body: try Self.body(csr))
            { response in
                let problem = try Self.expectProblem(response, .init(code: status), code)
                #expect(!problem.detail.contains("test token"), "the reason stays in the log and the audit record")
                if status == 401 { #expect(response.headers[.wwwAuthenticate] == "Bearer") }
            }
        }
        let denial = try #require(await store.auditLog.last?.event)
        #expect(denial.action == .deny && denial.code == code && denial.actor == "anonymous")
    }

    @Test("a body that is not the request's shape, or too large, is refused after the token check")
    func badBodies() async throws {
        try await withAPI({ $0.maxBodyBytes = 1024 }) { client in
            try await client.execute(
                uri: "/v1/certificates", method: .post, headers: Self.json,
                body: ByteBuffer(string: #"{"csr": "x", "ttl_seconds": 6e2}"#)
            ) { try Self.expectProblem($0, .badRequest, "bad_request") }
            try await client.execute(
                uri: "/v1/certificates", method: .post, headers: Self.json, body: ByteBuffer(string: #"{"csr": "x"}"#)
            ) {
                try Self.expectProblem($0, .badRequest, "csr_invalid")
            }
            try await client.execute(
                uri: "/v1/certificates", method: .post, headers: Self.json,
                body: ByteBuffer(repeating: 0x20, count: 2048)
            ) { try Self.expectProblem($0, .contentTooLarge, "payload_too_large") }
        }
    }

    @Test("an unknown path is 404 and a known path with another method is 405 with Allow")
    func unknownRoutes() async throws {
        try await withAPI { client in
            try await client.execute(uri: "/v1/nothing", method: .get) {
                try Self.expectProblem($0, .notFound, "not_found")
            }
            try await client.execute(uri: "/v1/certificates", method: .get) { response in
                try Self.expectProblem(response, .methodNotAllowed, "method_not_allowed")
                #expect(response.headers[.allow] == "POST")
            }
        }
    }

    @Test("every route is limited per client: over the burst the answer is 429 with Retry-After")
    func everyRouteIsLimited() async throws {
        try await withAPI({ $0.clientRateLimit = RateLimit(perSecond: 1, burst: 2) }) { client in
            for path in ["/v1/bundle", "/healthz"] {
                try await client.execute(uri: path, method: .get) { #expect($0.status == .ok) }
            }
            for path in ["/v1/crl", "/readyz", "/metrics"] {
                try await client.execute(uri: path, method: .get) { response in
                    try Self.expectProblem(response, .tooManyRequests, "rate_limited")
                    #expect(response.headers[.retryAfter] == "1")
                }
            }
        }
        let audited = await store.auditLog.filter { $0.event.code == "rate_limited" }
        #expect(audited.count == 1, "a client's refusals are audited once a minute")
    }

    @Test("unauthenticated refusals past the denial budget are counted, not written one by one")
    func denialBudget() async throws {
        let csr = try Self.csr()
        let before = await store.auditLog.count
        try await withAPI(denialBudget: 2) { client in
            for _ in 0..<5 {
                try await client.execute(
                    uri: "/v1/certificates", method: .post,
                    headers: [.contentType: "application/json", .authorization: "Bearer bad"],
                    body: try Self.body(csr)
                ) { try Self.expectProblem($0, .unauthorized, "token_invalid") }
            }
        }
        #expect(await store.auditLog.count == before + 2)
    }

    @Test("the CRLs come from the CA's snapshot: the root's, one authority's, all as PEM; unknown ids are 404")
    func crls() async throws {
        let root = try #require(try await ca.snapshot().authorities.active(.root))
        try await withAPI { client in
            try await client.execute(uri: "/v1/crl", method: .get) { response in
                #expect(response.status == .ok && response.headers[.contentType] == "application/pkix-crl")
                let crl = try CertificateRevocationList(der: Array(buffer: response.body))
                #expect(crl.isSigned(by: root.certificate))
            }
            try await client.execute(uri: "/v1/crl/\(root.id)", method: .get) { #expect($0.status == .ok) }
            try await client.execute(uri: "/v1/crl/root-0000000000000000", method: .get) {
                try Self.expectProblem($0, .notFound, "not_found")
            }
            try await client.execute(uri: "/v1/crl.pem", method: .get) { response in
                #expect(
                    String(buffer: response.body).components(separatedBy: "-----BEGIN X509 CRL-----").count == 3,
                    "root and intermediate")
            }
        }
    }

    @Test("readiness: ready while the store answers and the intermediate signs")
    func readiness() async throws {
        try await withAPI { client in
            try await client.execute(uri: "/readyz", method: .get) { response in
                #expect(response.status == .ok)
                #expect(String(buffer: response.body) == #"{"status":"ready"}"#)
            }
        }
    }
}
