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
public func requireHTTPS(_ url: String, _ what: String) throws {
    guard let components = URLComponents(string: url), components.scheme?.lowercased() == "https",
        components.host?.isEmpty == false
    else {
        throw CAError.configuration(reason: "\(what) must be an https:// URL")
    }
}

/// An HTTP client for token sources: HTTPS only, trusting `caFile` (PEM) or the system roots, and never
/// following a redirect (a key fetch that is redirected elsewhere is refused, not followed).
public func makeTokenSourceClient(caFile: String?) throws -> HTTPClient {
    var tls = TLSConfiguration.makeClientConfiguration()
    if let caFile {
        guard FileManager.default.isReadableFile(atPath: caFile) else {
            throw CAError.configuration(reason: "cannot read CA file \(caFile)")
        }
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
                throw CAError(
                    .configurationInvalid, reason: "OIDC discovery document of \(issuer) names another issuer")
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
            let redirect =
                (300..<400).contains(Int(response.status.code)) ? " (redirects are not followed for token keys)" : ""
            throw CAError(.configurationInvalid, reason: "GET \(url): HTTP \(response.status.code)\(redirect)")
        }
        let body = try await response.body.collect(upTo: 1024 * 1024)
        return Data(buffer: body)
    }
}
