import Foundation
import Logging
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
/// server, and rebuilds its TLS context when that bundle changes (so a root rotation does not cut it off).
///
/// Each request is a new connection that offers the TLS session of the previous one: renewals and polls resume
/// (no certificate exchange or server signature) instead of a full handshake, which is what the server's CPU
/// pays for when a node's worth of agents renew at once. The server declines a session after it rotates its
/// ticket keys, and the agent falls back to a full handshake.
final class SigilClient: Sendable {
    private let configuration: AgentConfiguration
    private let current = Mutex<(client: HTTPSClient, trust: String)?>(nil)
    private let session = Mutex<TLSSession?>(nil)
    private let logger: Logger

    /// The bundle last received from the server (PEM), trusted in addition to `--ca-bundle`.
    private let receivedBundle: @Sendable () -> String?

    init(
        configuration: AgentConfiguration, logger: Logger = Logger(label: "sigil.agent.client"),
        receivedBundle: @escaping @Sendable () -> String?
    ) {
        self.configuration = configuration
        self.logger = logger
        self.receivedBundle = receivedBundle
    }

    private func client() throws -> HTTPSClient {
        var trust =
            (FileManager.default.contents(atPath: configuration.caBundle)).map { String(decoding: $0, as: UTF8.self) }
            ?? ""
        guard !trust.isEmpty else {
            throw AgentError("configuration_invalid", "cannot read --ca-bundle \(configuration.caBundle)")
        }
        if let received = receivedBundle() { trust += "\n" + received }
        if let cached = current.withLock({ $0 }), cached.trust == trust { return cached.client }
        let client: HTTPSClient
        do {
            client = try HTTPSClient(trust: trust)
        } catch {
            throw AgentError("configuration_invalid", "trust bundle is not PEM certificates")
        }
        current.withLock { $0 = (client, trust) }
        return client
    }

    /// - Parameter timeout: the longest this request may take (the agent's `--once` deadline caps it).
    func requestCertificate(
        csrPEM: String, token: String, timeout: Duration = .seconds(15)
    ) async throws -> IssuanceResponse {
        let body = Array(try JSONEncoder().encode(IssuanceRequestBody(csr: csrPEM)))
        let response = try await send(
            "POST", "/v1/certificates",
            headers: [("Content-Type", "application/json"), ("Authorization", "Bearer \(token)")], body: body,
            timeout: timeout)
        guard response.status == 201 else { throw problem(response) }
        do {
            return try JSONDecoder().decode(IssuanceResponse.self, from: Data(response.body))
        } catch {
            throw AgentError("bad_response", "issuance response does not decode")
        }
    }

    /// The authorities, or nil when unchanged since `etag`.
    func authorities(etag: String?) async throws -> (AuthoritiesResponse?, String?) {
        let response = try await send("GET", "/v1/authorities", headers: etag.map { [("If-None-Match", $0)] } ?? [])
        if response.status == 304 { return (nil, etag) }
        guard response.status == 200 else { throw problem(response) }
        guard let body = try? JSONDecoder().decode(AuthoritiesResponse.self, from: Data(response.body)) else {
            throw AgentError("bad_response", "authorities response does not decode")
        }
        return (body, response.header("ETag"))
    }

    /// Every current CRL of the trust domain, DER (from `/v1/crl.pem`).
    func crls() async throws -> [[UInt8]] {
        let response = try await send("GET", "/v1/crl.pem")
        guard response.status == 200 else { throw problem(response) }
        return try PEMBlock.parseAll(String(decoding: response.body, as: UTF8.self)).filter { $0.label == "X509 CRL" }
            .map(\.der)
    }

    func bundlePEM() async throws -> String {
        let response = try await send("GET", "/v1/bundle.pem")
        guard response.status == 200 else { throw problem(response) }
        return String(decoding: response.body, as: UTF8.self)
    }

    /// One request on a new connection that offers the last TLS session. A failure is not retried here: the
    /// callers' schedules retry.
    private func send(
        _ method: String, _ path: String, headers: [(String, String)] = [], body: [UInt8] = [],
        timeout: Duration = .seconds(15)
    ) async throws -> HTTPSResponse {
        let client = try client()
        let offered = session.withLock { $0 }
        do {
            let response = try await client.perform(
                method, configuration.serverURL + path, headers: headers, body: body, session: offered,
                timeout: max(timeout, .milliseconds(100)))
            if let next = response.session { session.withLock { $0 = next } }
            logger.debug(
                "request answered",
                metadata: [
                    "sigil.path": "\(path)", "sigil.status": "\(response.status)",
                    "sigil.tls_resumed": "\(response.resumed)",
                ])
            return response
        } catch let error as HTTPSClientError where error.kind == .cancelled {
            throw CancellationError()
        } catch {
            throw AgentError("server_unreachable", "\(configuration.serverURL): \(error)")
        }
    }

    private func problem(_ response: HTTPSResponse) -> AgentError {
        let problem = try? JSONDecoder().decode(Problem.self, from: Data(response.body))
        return AgentError(problem?.code ?? "http_\(response.status)", problem?.detail ?? "HTTP \(response.status)")
    }
}
