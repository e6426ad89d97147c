import AsyncHTTPClient
import Foundation
import NIOCore
import NIOFoundationCompat
import NIOSSL
import SigilAPIModels
import SigilCrypto
import SigilCore
import Synchronization

/// A refusal or failure reported by the server (problem+json) or on the way to it.
public struct AgentError: Error, CustomStringConvertible, Sendable {
    public let code: String
    public let reason: String
    public init(_ code: String, _ reason: String) {
        self.code = code
        self.reason = reason
    }
    public var description: String { "\(code): \(reason)" }
}

/// The agent's HTTPS client. It trusts the out-of-band `--ca-bundle` plus the bundle last received from the
/// server, and rebuilds its TLS configuration when that bundle changes (so a root rotation does not cut it off).
final class SigilClient: Sendable {
    private let configuration: AgentConfiguration
    private let current = Mutex<(client: HTTPClient, trust: String)?>(nil)

    /// The bundle last received from the server (PEM), trusted in addition to `--ca-bundle`.
    private let receivedBundle: @Sendable () -> String?

    init(configuration: AgentConfiguration, receivedBundle: @escaping @Sendable () -> String?) {
        self.configuration = configuration
        self.receivedBundle = receivedBundle
    }

    func shutdown() async {
        let client = current.withLock { state -> HTTPClient? in
            defer { state = nil }
            return state?.client
        }
        try? await client?.shutdown()
    }

    private func client() throws -> HTTPClient {
        var trust =
            (FileManager.default.contents(atPath: configuration.caBundle)).map { String(decoding: $0, as: UTF8.self) }
            ?? ""
        guard !trust.isEmpty else {
            throw AgentError("configuration_invalid", "cannot read --ca-bundle \(configuration.caBundle)")
        }
        if let received = receivedBundle() { trust += "\n" + received }
        if let cached = current.withLock({ $0 }), cached.trust == trust { return cached.client }
        var tls = TLSConfiguration.makeClientConfiguration()
        do {
            tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMBytes(Array(trust.utf8)))
        } catch {
            throw AgentError("configuration_invalid", "trust bundle is not PEM certificates")
        }
        var configuration = HTTPClient.Configuration(tlsConfiguration: tls)
        configuration.timeout = .init(connect: .seconds(3), read: .seconds(15))
        let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
        let previous = current.withLock { state -> HTTPClient? in
            defer { state = (client, trust) }
            return state?.client
        }
        if let previous { Task { try? await previous.shutdown() } }
        return client
    }

    /// - Parameter timeout: the longest this request may take (the agent's `--once` deadline caps it).
    func requestCertificate(
        csrPEM: String, token: String, timeout: Duration = .seconds(15)
    ) async throws -> IssuanceResponse {
        var request = HTTPClientRequest(url: configuration.serverURL + "/v1/certificates")
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        request.headers.add(name: "Authorization", value: "Bearer \(token)")
        request.body = .bytes(ByteBuffer(bytes: try JSONEncoder().encode(IssuanceRequestBody(csr: csrPEM))))
        let (status, data) = try await send(request, timeout: timeout)
        guard status == 201 else { throw problem(status, data) }
        do {
            return try JSONDecoder().decode(IssuanceResponse.self, from: data)
        } catch {
            throw AgentError("bad_response", "issuance response does not decode")
        }
    }

    /// The authorities, or nil when unchanged since `etag`.
    func authorities(etag: String?) async throws -> (AuthoritiesResponse?, String?) {
        var request = HTTPClientRequest(url: configuration.serverURL + "/v1/authorities")
        if let etag { request.headers.add(name: "If-None-Match", value: etag) }
        let response = try await execute(request)
        let newTag = response.headers.first(name: "ETag")
        if response.status.code == 304 { return (nil, etag) }
        let data = Data(buffer: try await response.body.collect(upTo: 4 * 1024 * 1024))
        guard response.status.code == 200 else { throw problem(Int(response.status.code), data) }
        guard let body = try? JSONDecoder().decode(AuthoritiesResponse.self, from: data) else {
            throw AgentError("bad_response", "authorities response does not decode")
        }
        return (body, newTag)
    }

    /// Every current CRL of the trust domain, DER (from `/v1/crl.pem`).
    func crls() async throws -> [[UInt8]] {
        let (status, data) = try await send(HTTPClientRequest(url: configuration.serverURL + "/v1/crl.pem"))
        guard status == 200 else { throw problem(status, data) }
        return try PEMBlock.parseAll(String(decoding: data, as: UTF8.self)).filter { $0.label == "X509 CRL" }.map(\.der)
    }

    func bundlePEM() async throws -> String {
        let (status, data) = try await send(HTTPClientRequest(url: configuration.serverURL + "/v1/bundle.pem"))
        guard status == 200 else { throw problem(status, data) }
        return String(decoding: data, as: UTF8.self)
    }

    private func send(_ request: HTTPClientRequest, timeout: Duration = .seconds(15)) async throws -> (Int, Data) {
        let response = try await execute(request, timeout: timeout)
        return (Int(response.status.code), Data(buffer: try await response.body.collect(upTo: 4 * 1024 * 1024)))
    }

    private func execute(
        _ request: HTTPClientRequest, timeout: Duration = .seconds(15)
    ) async throws -> HTTPClientResponse {
        do {
            return try await client().execute(
                request, timeout: .nanoseconds(Int64(max(timeout, .milliseconds(100)).timeInterval * 1e9)))
        } catch let error as AgentError {
            throw error
        } catch {
            throw AgentError("server_unreachable", "\(configuration.serverURL): \(error)")
        }
    }

    private func problem(_ status: Int, _ data: Data) -> AgentError {
        let problem = try? JSONDecoder().decode(Problem.self, from: data)
        return AgentError(problem?.code ?? "http_\(status)", problem?.detail ?? "HTTP \(status)")
    }
}
