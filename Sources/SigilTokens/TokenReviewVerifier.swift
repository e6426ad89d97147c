import AsyncHTTPClient
import Foundation
import NIOCore
import NIOFoundationCompat
import NIOSSL
import SigilCore

/// Kubernetes TokenReview (authentication.k8s.io/v1): the API server says whether a token is valid and live,
/// which also catches tokens of deleted pods. The audiences are sent in `spec.audiences`, and the answer must
/// name at least one of them in `status.audiences` (an answer without audiences means "the API server's own
/// audience", which is not ours). A review is trusted until the token's `exp` or for `assumedLifetime`, whichever comes first.
public struct TokenReviewVerifier: TokenVerifier {
    let url: String
    let credentialFile: String?
    let audiences: [String]
    let client: HTTPClient
    let clock: any WallClock
    /// The longest a review is trusted (the caching layer keys on this); a token expiring sooner ends it sooner.
    let assumedLifetime: Duration

    public init(
        url: String, credentialFile: String?, audiences: Set<String>, client: HTTPClient, clock: any WallClock,
        assumedLifetime: Duration = .seconds(60)
    ) {
        self.url = url
        self.credentialFile = credentialFile
        self.audiences = audiences.sorted()
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
        var request = HTTPClientRequest(
            url: url.hasSuffix("/tokenreviews") ? url : url + "/apis/authentication.k8s.io/v1/tokenreviews")
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        if let credentialFile {
            guard let credential = FileManager.default.contents(atPath: credentialFile) else {
                throw CAError(.tokenInvalid, reason: "TokenReview credential file unreadable")
            }
            let bearer = String(decoding: credential, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            request.headers.add(name: "Authorization", value: "Bearer \(bearer)")
        }
        let body = try JSONEncoder().encode(Review(spec: .init(token: token, audiences: audiences), status: nil))
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
        let granted = Set(audiences).intersection(status.audiences ?? [])
        guard !granted.isEmpty else {
            throw CAError(
                .audienceMismatch, reason: "TokenReview: none of \(audiences.joined(separator: ", ")) granted")
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
            expiresAt: expiresAt, audiences: granted,
            podName: status.user?.extra?["authentication.kubernetes.io/pod-name"]?.first)
    }

    /// The `exp` of a JWT the API server has just authenticated (so reading it unverified is safe): a review
    /// must not outlive the token it reviewed. Nil for anything that is not a JWT with a numeric `exp`.
    static func unverifiedExpiry(_ token: String) -> Date? {
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, parts[1].utf8.count <= 16 * 1024, let claims = Data(base64URL: String(parts[1])),
            let object = try? JSONSerialization.jsonObject(with: claims) as? [String: Any],
            let exp = object["exp"] as? NSNumber
        else { return nil }
        return Date(timeIntervalSince1970: exp.doubleValue)
    }
}
