import Foundation
import JWTKit
import SigilCore
import SigilTokens
import SigilCrypto
import SigilTestSupport
import Synchronization
import Testing

@Suite("JWKSTokenVerifier")
struct TokenVerifierTests {
    static let now = TestPKI.referenceDate

    let clock = ManualClock(now: now)
    let issuer: TokenIssuer
    let source: StaticJWKSSource
    let verifier: JWKSTokenVerifier

    /// One issuer for the suite: RSA key generation is the slow part of these tests.
    static let sharedIssuer = Task { try await TokenIssuer() }

    init() async throws {
        issuer = try await Self.sharedIssuer.value
        source = StaticJWKSSource(try issuer.jwks())
        verifier = JWKSTokenVerifier(policy: TokenPolicy(issuer: TokenIssuer.issuer), source: source, clock: clock)
    }

    func claims() -> TokenIssuer.Claims { TokenIssuer.claims(at: Self.now) }

    @Test(
        "a projected token signed by a JWKS key proves its namespace and service account", arguments: ["ec-1", "rsa-1"])
    func validToken(_ kid: String) async throws {
        let token = try await issuer.sign(claims(), kid: kid)
        let verified = try await verifier.verify(token)
        #expect(verified.identity == WorkloadIdentity(namespace: "default", serviceAccount: "web"))
        #expect(verified.expiresAt == Self.now + .seconds(600))
        #expect(verified.podName == "web-7d9f8")
    }

    @Test("a single-string audience is accepted like a list")
    func singleAudience() async throws {
        var claims = claims()
        claims.aud = .single("sigil")
        #expect(try await verifier.verify(issuer.sign(claims)).identity.serviceAccount == "web")
    }

    @Test("exp is honoured with at most 60 s of leeway")
    func expiry() async throws {
        let token = try await issuer.sign(claims())
        clock.set(Self.now + .seconds(600 + 59))
        _ = try await verifier.verify(token)
        clock.set(Self.now + .seconds(600 + 60))
        await expectCAError(.tokenExpired) { try await verifier.verify(token) }
        #expect(TokenPolicy(issuer: "x", leeway: .seconds(3600)).leeway == .seconds(60))
    }

    @Test("nbf and iat in the future beyond the leeway are refused")
    func notYetValid() async throws {
        var early = claims()
        early.nbf = Self.now.timeIntervalSince1970 + 61
        await expectCAError(.tokenInvalid) { try await verifier.verify(issuer.sign(early)) }
        early.nbf = Self.now.timeIntervalSince1970 + 59
        _ = try await verifier.verify(issuer.sign(early))

        var future = claims()
        future.iat = Self.now.timeIntervalSince1970 + 61
        await expectCAError(.tokenInvalid) { try await verifier.verify(issuer.sign(future)) }
    }

    @Test("a token for another audience is an audience mismatch")
    func wrongAudience() async throws {
        var claims = claims()
        claims.aud = .list(["https://kubernetes.default.svc", "vault"])
        await expectCAError(.audienceMismatch) { try await verifier.verify(issuer.sign(claims)) }
        claims.aud = .list(["vault", "sigil"])
        #expect(try await verifier.verify(issuer.sign(claims)).audiences == ["sigil"])
    }

    @Test("with several audiences configured, a token for any of them verifies and says which it is for")
    func severalAudiences() async throws {
        let both = JWKSTokenVerifier(
            policy: TokenPolicy(issuer: TokenIssuer.issuer, audiences: ["sigil", "istio-ca"]), source: source,
            clock: clock)
        var claims = claims()
        claims.aud = .list(["istio-ca", "vault"])
        #expect(try await both.verify(issuer.sign(claims)).audiences == ["istio-ca"])
        claims.aud = .list(["istio-ca", "sigil"])
        #expect(try await both.verify(issuer.sign(claims)).audiences == ["sigil", "istio-ca"])
        claims.aud = .list(["vault"])
        await expectCAError(.audienceMismatch) { try await both.verify(issuer.sign(claims)) }
    }

    @Test(
        "missing or inconsistent claims are refused",
        arguments: [
            "no exp", "no aud", "other issuer", "no issuer", "sub mismatch", "no namespace", "no service account",
        ])
    func badClaims(_ defect: String) async throws {
        var claims = claims()
        switch defect {
        case "no exp": claims.exp = nil
        case "no aud": claims.aud = nil
        case "other issuer": claims.iss = "https://evil.example"
        case "no issuer": claims.iss = nil
        case "sub mismatch": claims.sub = "system:serviceaccount:kube-system:admin"
        case "no namespace": claims.kubernetes?.namespace = nil
        default: claims.kubernetes?.serviceaccount = nil
        }
        await expectCAError(.tokenInvalid) { try await verifier.verify(issuer.sign(claims)) }
    }

    @Test("a changed payload breaks the signature")
    func tamperedPayload() async throws {
        let token = try await issuer.sign(claims())
        let parts = token.split(separator: ".").map(String.init)
        let forged = try JSONEncoder().encode(
            TokenIssuer.claims(namespace: "kube-system", serviceAccount: "admin", at: Self.now))
        await expectCAError(.tokenInvalid) {
            try await verifier.verify([parts[0], base64URL(Array(forged)), parts[2]].joined(separator: "."))
        }
        await expectCAError(.tokenInvalid) { try await verifier.verify(parts[0] + "." + parts[1] + ".") }
    }

    @Test(
        "headers naming other algorithms or other key sources are refused before any key is used",
        arguments: [
            ["alg": "none", "kid": "ec-1"], ["alg": "HS256", "kid": "ec-1"], ["alg": "EdDSA", "kid": "ec-1"],
            ["kid": "ec-1"], ["alg": "ES256"], ["alg": "ES256", "kid": ""],
            ["alg": "ES256", "kid": "ec-1", "jku": "https://evil.example/jwks"],
            ["alg": "ES256", "kid": "ec-1", "x5u": "https://evil.example/cert"],
            ["alg": "ES256", "kid": "ec-1", "jwk": "{}"], ["alg": "ES256", "kid": "ec-1", "x5c": "MII"],
            ["alg": "ES256", "kid": "ec-1", "crit": "exp"],
            // Key confusion: the algorithm must fit the named key's type and curve.
            ["alg": "RS256", "kid": "ec-1"], ["alg": "PS256", "kid": "ec-1"], ["alg": "ES256", "kid": "rsa-1"],
            ["alg": "ES384", "kid": "ec-1"],
        ])
    func refusedHeaders(_ header: [String: String]) async throws {
        let token = try TokenIssuer.unsigned(header: header, claims: claims())
        let error = await expectCAError(.tokenInvalid) { try await verifier.verify(token) }
        // Refused by the header screen, not by the (meaningless) signature.
        #expect(error?.reason.contains("signature") == false, "\(error?.reason ?? "")")
    }

    @Test(
        "malformed and oversized tokens are refused",
        arguments: ["", "abc", "a.b", "a.b.c.d", "..", "a..c", "!!.e30.c2ln"])
    func malformedTokens(_ token: String) async {
        await expectCAError(.tokenInvalid) { try await verifier.verify(token) }
    }

    @Test("a token over 16 KiB is refused")
    func oversizedToken() async throws {
        var claims = claims()
        claims.kubernetes?.pod?.name = String(repeating: "p", count: 17 * 1024)
        await expectCAError(.tokenInvalid) { try await verifier.verify(issuer.sign(claims)) }
    }

    @Test("an unknown kid triggers at most one JWKS refresh per interval, and a rotated key is found")
    func unknownKidRefresh() async throws {
        let rotated = try PrivateKey.generate(.p256)
        let keys = issuer.keys
        await keys.add(ecdsa: try ES256PrivateKey(pem: rotated.pkcs8PEM()), kid: "ec-2")
        let token = try await issuer.sign(claims(), kid: "ec-2")

        await expectCAError(.tokenInvalid) { try await verifier.verify(token) }
        let fetches = source.fetches
        await expectCAError(.tokenInvalid) { try await verifier.verify(token) }
        #expect(source.fetches == fetches, "no second refresh within the interval")

        var jwk = rotated.jwkPublicParameters
        jwk["kty"] = "EC"
        jwk["kid"] = "ec-2"
        source.serve(try issuer.jwks(extra: [jwk]))
        await expectCAError(.tokenInvalid) { try await verifier.verify(token) }
        #expect(source.fetches == fetches)

        clock.advance(by: .seconds(30))
        #expect(try await verifier.verify(token).identity.namespace == "default")
        #expect(source.fetches == fetches + 1)
        // Known kids never cause a fetch.
        _ = try await verifier.verify(issuer.sign(claims(), kid: "ec-1"))
        #expect(source.fetches == fetches + 1)
    }

    @Test("a refresh drops keys that left the JWKS at once, for the cache too; a failed refresh keeps the keys")
    func refreshDropsRemovedKeys() async throws {
        let cache = CachingTokenVerifier(verifier, clock: clock)
        let ecToken = try await issuer.sign(claims(), kid: "ec-1")
        let rsaToken = try await issuer.sign(claims(), kid: "rsa-1")
        #expect(try await cache.verify(ecToken).keyID == "ec-1")
        _ = try await cache.verify(rsaToken)

        source.serve(nil)  // the issuer is unreachable: nothing changes
        await #expect(throws: (any Error).self) { try await verifier.refresh() }
        _ = try await cache.verify(ecToken)

        // The issuer removes ec-1 (exposed): the next refresh ends its verifications, cached ones included.
        var jwks = try #require(try JSONSerialization.jsonObject(with: issuer.jwks()) as? [String: [[String: String]]])
        jwks["keys"] = jwks["keys"]?.filter { $0["kid"] != "ec-1" }
        source.serve(try JSONSerialization.data(withJSONObject: jwks))
        #expect(try await verifier.refresh() == ["ec-1"])
        let hits = cache.statistics.hits
        await expectCAError(.tokenInvalid) { try await cache.verify(ecToken) }
        #expect(cache.statistics.hits == hits, "the cached verification was not reused")
        #expect(try await cache.verify(rsaToken).keyID == "rsa-1")
    }

    @Test(
        "a refused token's header values never reach the reason",
        arguments: ["HS256\nforged log line", String(repeating: "A", count: 10_000)])
    func headerNotEchoed(_ algorithm: String) async throws {
        let token = try TokenIssuer.unsigned(header: ["alg": algorithm, "kid": "ec-1"], claims: claims())
        let error = await expectCAError(.tokenInvalid) { try await verifier.verify(token) }
        #expect(error?.reason.contains(algorithm) == false)
        #expect(error?.reason.contains("\n") == false && (error?.reason.utf8.count ?? 0) < 200)
    }

    @Test("an unreachable or unparsable JWKS refuses the token")
    func jwksUnavailable() async throws {
        let token = try await issuer.sign(claims())
        for data in [nil, Data("not json".utf8)] {
            let source = StaticJWKSSource(data)
            let verifier = JWKSTokenVerifier(
                policy: TokenPolicy(issuer: TokenIssuer.issuer), source: source, clock: clock)
            await expectCAError(.tokenInvalid) { try await verifier.verify(token) }
        }
    }
}

@Suite("CachingTokenVerifier")
struct CachingTokenVerifierTests {
    static let now = TestPKI.referenceDate

    /// Accepts any token `t<n>` as valid until `now + n` seconds; counts calls; refuses `bad`.
    final class CountingVerifier: TokenVerifier {
        private let count = Mutex(0)
        var calls: Int { count.withLock { $0 } }

        func verify(_ token: String) async throws -> VerifiedToken {
            count.withLock { $0 += 1 }
            guard token.hasPrefix("t"), let seconds = Int64(token.dropFirst()) else {
                throw CAError(.tokenInvalid, reason: "refused")
            }
            return VerifiedToken(
                identity: WorkloadIdentity(namespace: "default", serviceAccount: token),
                expiresAt: CachingTokenVerifierTests.now + .seconds(seconds), audiences: ["sigil"])
        }
    }

    let clock = ManualClock(now: now)
    let inner = CountingVerifier()

    @Test("a verified token is served from the cache until it expires")
    func cachesUntilExpiry() async throws {
        let cache = CachingTokenVerifier(inner, clock: clock)
        let first = try await cache.verify("t60")
        #expect(try await cache.verify("t60") == first)
        #expect(inner.calls == 1)
        #expect(cache.statistics.hits == 1 && cache.statistics.misses == 1)
        clock.advance(by: .seconds(60))
        _ = try await cache.verify("t60")
        #expect(inner.calls == 2)
    }

    @Test("refusals are never cached")
    func refusalsNotCached() async throws {
        let cache = CachingTokenVerifier(inner, clock: clock)
        for _ in 0..<2 { await expectCAError(.tokenInvalid) { try await cache.verify("bad") } }
        #expect(inner.calls == 2)
    }

    @Test("when full, the entry that expires first is evicted")
    func evictsEarliestExpiry() async throws {
        let cache = CachingTokenVerifier(inner, clock: clock, capacity: 2)
        for token in ["t100", "t200", "t300"] { _ = try await cache.verify(token) }
        #expect(inner.calls == 3)
        _ = try await cache.verify("t200")
        _ = try await cache.verify("t300")
        #expect(inner.calls == 3)
        _ = try await cache.verify("t100")
        #expect(inner.calls == 4)
    }

    @Test("a full cache frees a tenth at once and stays within its capacity")
    func evictsInBatches() async throws {
        let cache = CachingTokenVerifier(inner, clock: clock, capacity: 100)
        for index in 0..<350 { _ = try await cache.verify("t\(1_000 + index)") }
        #expect(inner.calls == 350)
        // The latest tokens expire last: still cached. The first ones went.
        for index in 340..<350 { _ = try await cache.verify("t\(1_000 + index)") }
        #expect(inner.calls == 350)
        _ = try await cache.verify("t1000")
        #expect(inner.calls == 351)
        #expect(cache.count <= 100)
    }
}
