import AsyncHTTPClient
import Foundation
import NIOCore
import NIOFoundationCompat
import NIOSSL
import SigilCore

/// A JWKS read from a file (re-read on every refresh, so replacing the file rotates keys without a restart).
public struct FileJWKSSource: JWKSSource {
    let path: String
    public init(path: String) { self.path = path }
    public func fetchJWKS() async throws -> Data {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw CAError(.configurationInvalid, reason: "cannot read JWKS file \(path)")
        }
        return data
    }
}

/// Token-source URLs must be `https://`: a JWKS, a discovery document or a TokenReview answer fetched in clear
/// text could be replaced on the way, and with it every identity.
func requireHTTPS(_ url: String, _ what: String) throws {
    guard let components = URLComponents(string: url), components.scheme?.lowercased() == "https", components.host?.isEmpty == false else {
        throw CAError.configuration(reason: "\(what) must be an https:// URL")
    }
}

/// An HTTP client for token sources: HTTPS only, trusting `caFile` (PEM) or the system roots, and never
/// following a redirect (a key fetch that is redirected elsewhere is refused, not followed).
func makeTokenSourceClient(caFile: String?) throws -> HTTPClient {
    var tls = TLSConfiguration.makeClientConfiguration()
    if let caFile {
        guard FileManager.default.isReadableFile(atPath: caFile) else { throw CAError.configuration(reason: "cannot read CA file \(caFile)") }
        tls.trustRoots = .file(caFile)
    }
    var configuration = HTTPClient.Configuration(tlsConfiguration: tls, redirectConfiguration: .disallow)
    configuration.timeout = .init(connect: .seconds(5), read: .seconds(10))
    return HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
}

/// A JWKS fetched over HTTPS, directly or through OIDC discovery from the issuer URL.
public struct HTTPJWKSSource: JWKSSource {
    public enum Location: Sendable {
        case jwks(String)
        case discovery(issuer: String)
    }

    let location: Location
    let client: HTTPClient

    public init(location: Location, client: HTTPClient) {
        self.location = location
        self.client = client
    }

    public func fetchJWKS() async throws -> Data {
        switch location {
        case .jwks(let url):
            return try await get(url)
        case .discovery(let issuer):
            let base = issuer.hasSuffix("/") ? String(issuer.dropLast()) : issuer
            let document = try await get(base + "/.well-known/openid-configuration")
            struct Discovery: Decodable {
                let issuer: String?
                let jwks_uri: String
            }
            guard let discovery = try? JSONDecoder().decode(Discovery.self, from: document) else {
                throw CAError(.configurationInvalid, reason: "OIDC discovery document of \(issuer) has no jwks_uri")
            }
            // OpenID Connect Discovery §4.3: the document's issuer must be exactly the one it was fetched for.
            guard discovery.issuer == issuer else {
                throw CAError(.configurationInvalid, reason: "OIDC discovery document of \(issuer) names another issuer")
            }
            try requireHTTPS(discovery.jwks_uri, "the discovery document's jwks_uri")
            return try await get(discovery.jwks_uri)
        }
    }

    private func get(_ url: String) async throws -> Data {
        try requireHTTPS(url, "a token key URL")
        var request = HTTPClientRequest(url: url)
        request.headers.add(name: "Accept", value: "application/json")
        let response = try await client.execute(request, timeout: .seconds(10))
        guard response.status == .ok else {
            let redirect = (300..<400).contains(Int(response.status.code)) ? " (redirects are not followed for token keys)" : ""
            throw CAError(.configurationInvalid, reason: "GET \(url): HTTP \(response.status.code)\(redirect)")
        }
        let body = try await response.body.collect(upTo: 1024 * 1024)
        return Data(buffer: body)
    }
}

/// Kubernetes TokenReview (authentication.k8s.io/v1): the API server says whether a token is valid and live,
/// which also catches tokens of deleted pods. The audience is sent in `spec.audiences`, and the answer must
/// name it in `status.audiences` (an answer without audiences means "the API server's own audience", which
/// is not ours). A review is trusted until the token's `exp` or for `assumedLifetime`, whichever comes first.
public struct TokenReviewVerifier: TokenVerifier {
    let url: String
    let credentialFile: String?
    let audience: String
    let client: HTTPClient
    let clock: any WallClock
    /// The longest a review is trusted (the caching layer keys on this); a token expiring sooner ends it sooner.
    let assumedLifetime: Duration

    public init(
        url: String, credentialFile: String?, audience: String, client: HTTPClient, clock: any WallClock,
        assumedLifetime: Duration = .seconds(60)
    ) {
        self.url = url
        self.credentialFile = credentialFile
        self.audience = audience
        self.client = client
        self.clock = clock
        self.assumedLifetime = assumedLifetime
    }

    struct Review: Codable {
        struct Spec: Codable {
            let token: String
            let audiences: [String]?
        }
        struct Status: Codable {
            struct User: Codable {
                let username: String?
                let extra: [String: [String]]?
            }
            let authenticated: Bool?
            let user: User?
            let audiences: [String]?
            let error: String?
        }
        var apiVersion = "authentication.k8s.io/v1"
        var kind = "TokenReview"
        let spec: Spec?
        let status: Status?
    }

    public func verify(_ token: String) async throws -> VerifiedToken {
        var request = HTTPClientRequest(url: url.hasSuffix("/tokenreviews") ? url : url + "/apis/authentication.k8s.io/v1/tokenreviews")
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        if let credentialFile {
            guard let credential = FileManager.default.contents(atPath: credentialFile) else {
                throw CAError(.tokenInvalid, reason: "TokenReview credential file unreadable")
            }
            let bearer = String(decoding: credential, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            request.headers.add(name: "Authorization", value: "Bearer \(bearer)")
        }
        let body = try JSONEncoder().encode(Review(spec: .init(token: token, audiences: [audience]), status: nil))
        request.body = .bytes(ByteBuffer(bytes: body))
        let response: HTTPClientResponse
        do {
            response = try await client.execute(request, timeout: .seconds(10))
        } catch {
            throw CAError(.tokenInvalid, reason: "TokenReview request failed: \(error)")
        }
        guard response.status == .created || response.status == .ok else {
            throw CAError(.tokenInvalid, reason: "TokenReview answered HTTP \(response.status.code)")
        }
        let data = Data(buffer: try await response.body.collect(upTo: 1024 * 1024))
        guard let review = try? JSONDecoder().decode(Review.self, from: data), let status = review.status else {
            throw CAError(.tokenInvalid, reason: "TokenReview response does not parse")
        }
        guard status.authenticated == true, let username = status.user?.username else {
            throw CAError(.tokenInvalid, reason: "TokenReview: not authenticated")
        }
        guard let audiences = status.audiences, audiences.contains(audience) else {
            throw CAError(.audienceMismatch, reason: "TokenReview: audience \(audience) not granted")
        }
        let parts = username.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 4, parts[0] == "system", parts[1] == "serviceaccount" else {
            throw CAError(.tokenInvalid, reason: "TokenReview user is not a service account")
        }
        let now = clock.now
        var expiresAt = now + assumedLifetime
        if let exp = Self.unverifiedExpiry(token) { expiresAt = min(expiresAt, exp) }
        return VerifiedToken(
            identity: WorkloadIdentity(namespace: String(parts[2]), serviceAccount: String(parts[3])),
            expiresAt: expiresAt, podName: status.user?.extra?["authentication.kubernetes.io/pod-name"]?.first)
    }

    /// The `exp` of a JWT the API server has just authenticated (so reading it unverified is safe): a review
    /// must not outlive the token it reviewed. Nil for anything that is not a JWT with a numeric `exp`.
    static func unverifiedExpiry(_ token: String) -> Date? {
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, parts[1].utf8.count <= 16 * 1024, let claims = Data(base64URL: String(parts[1])),
            let object = try? JSONSerialization.jsonObject(with: claims) as? [String: Any], let exp = object["exp"] as? NSNumber
        else { return nil }
        return Date(timeIntervalSince1970: exp.doubleValue)
    }
}
