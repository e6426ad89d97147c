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

/// A JWKS fetched over HTTP(S), directly or through OIDC discovery from the issuer URL.
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
            struct Discovery: Decodable { let jwks_uri: String }
            guard let discovery = try? JSONDecoder().decode(Discovery.self, from: document) else {
                throw CAError(.configurationInvalid, reason: "OIDC discovery document of \(issuer) has no jwks_uri")
            }
            return try await get(discovery.jwks_uri)
        }
    }

    private func get(_ url: String) async throws -> Data {
        var request = HTTPClientRequest(url: url)
        request.headers.add(name: "Accept", value: "application/json")
        let response = try await client.execute(request, timeout: .seconds(10))
        guard response.status == .ok else { throw CAError(.configurationInvalid, reason: "GET \(url): HTTP \(response.status.code)") }
        let body = try await response.body.collect(upTo: 1024 * 1024)
        return Data(buffer: body)
    }
}

/// Kubernetes TokenReview (authentication.k8s.io/v1): the API server says whether a token is valid and live,
/// which also catches tokens of deleted pods. The audience is sent in `spec.audiences`.
public struct TokenReviewVerifier: TokenVerifier {
    let url: String
    let credentialFile: String?
    let audience: String
    let client: HTTPClient
    let clock: any WallClock
    /// How long a reviewed token is trusted when the API server does not say (the caching layer keys on this).
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
        if let audiences = status.audiences, !audiences.contains(audience) {
            throw CAError(.audienceMismatch, reason: "TokenReview: audience \(audience) not granted")
        }
        let parts = username.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 4, parts[0] == "system", parts[1] == "serviceaccount" else {
            throw CAError(.tokenInvalid, reason: "TokenReview user is not a service account")
        }
        return VerifiedToken(
            identity: WorkloadIdentity(namespace: String(parts[2]), serviceAccount: String(parts[3])),
            expiresAt: clock.now + assumedLifetime, podName: status.user?.extra?["authentication.kubernetes.io/pod-name"]?.first)
    }
}
