import Foundation
import GRPCCore
import Logging
import SigilAgentGRPC
import SwiftProtobuf

typealias DiscoveryRequest = Envoy_Service_Discovery_V3_DiscoveryRequest
typealias DiscoveryResponse = Envoy_Service_Discovery_V3_DiscoveryResponse
typealias Secret = Envoy_Extensions_TransportSockets_Tls_V3_Secret

/// Envoy's secret discovery (SDS v3) from the agent's current SVID: Istio's names (`default` for the
/// certificate and key, `ROOTCA` for the bundle) and SPIRE's (the workload's SPIFFE ID, the trust domain's
/// `spiffe://<td>`).
struct SecretDiscoveryService: Envoy_Service_Secret_V3_SecretDiscoveryService.SimpleServiceProtocol {
    static let secretType = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"

    enum Event: Sendable {
        case request(DiscoveryRequest)
        case material(SVIDMaterial)
    }

    let feed: SVIDFeed
    let streams: StreamRegistry
    let logger: Logger

    func streamSecrets(
        request: RPCAsyncSequence<DiscoveryRequest, any Error>, response: RPCWriter<DiscoveryResponse>,
        context: ServerContext
    ) async throws {
        try await streams.serve("StreamSecrets", context) { stream in
            try await serve(request: request, response: response, stream: stream)
        }
    }

    private func serve(
        request: RPCAsyncSequence<DiscoveryRequest, any Error>, response: RPCWriter<DiscoveryResponse>, stream: Int
    ) async throws {
        let (events, sink) = AsyncStream.makeStream(of: Event.self)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                // A client that half-closes still gets pushes (xDS servers push until the stream is cancelled); a
                // broken request stream ends the call.
                do {
                    for try await message in request { sink.yield(.request(message)) }
                } catch {
                    sink.finish()
                }
            }
            group.addTask {
                defer { sink.finish() }
                for await material in feed.subscribe() { sink.yield(.material(material)) }
            }
            var session = SDSSession()
            for await event in events {
                let outcome: SDSSession.Outcome
                switch event {
                case .request(let message): outcome = session.receive(message)
                case .material(let material): outcome = session.update(material)
                }
                log(outcome, stream: stream)
                if let reply = outcome.response {
                    try await response.write(reply)
                    streams.pushed(stream, version: reply.versionInfo)
                }
            }
            group.cancelAll()
        }
    }

    func fetchSecrets(request: DiscoveryRequest, context: ServerContext) async throws -> DiscoveryResponse {
        guard let material = feed.servable else {
            throw RPCError(code: .unavailable, message: "the agent has no SVID yet, or is replacing a tainted one")
        }
        var session = SDSSession()
        _ = session.update(material)
        let outcome = session.receive(request)
        log(outcome, stream: nil)
        guard let reply = outcome.response else {
            throw RPCError(code: .notFound, message: "none of the requested secrets is served here")
        }
        return reply
    }

    func deltaSecrets(
        request: RPCAsyncSequence<Envoy_Service_Discovery_V3_DeltaDiscoveryRequest, any Error>,
        response: RPCWriter<Envoy_Service_Discovery_V3_DeltaDiscoveryResponse>, context: ServerContext
    ) async throws {
        throw RPCError(
            code: .unimplemented, message: "sigil agent serves SDS state of the world (StreamSecrets), not delta xDS")
    }

    private func log(_ outcome: SDSSession.Outcome, stream: Int?) {
        let id: Logger.MetadataValue = stream.map { "\($0)" } ?? "fetch"
        if !outcome.unknownNames.isEmpty {
            logger.warning(
                "SDS request names secrets this agent does not serve; left out",
                metadata: ["sigil.stream": id, "sigil.resources": "\(outcome.unknownNames.joined(separator: ","))"])
        }
        if let rejection = outcome.rejection {
            logger.error(
                "Envoy rejected secrets (NACK)",
                metadata: [
                    "sigil.stream": id, "sigil.resources": "\(rejection.names.joined(separator: ","))",
                    "sigil.version": "\(rejection.version)", "sigil.reason": "\(rejection.message)",
                ])
        }
    }
}

/// One SDS stream's state of the world, as the xDS protocol has it: the names the client subscribes to, the
/// nonce of the last response (an ACK or NACK echoes it; a request with an older nonce is stale and ignored),
/// and a new response whenever the subscription or the material changes.
struct SDSSession {
    struct Outcome {
        var response: DiscoveryResponse?
        var unknownNames: [String] = []
        var rejection: (names: [String], version: String, message: String)?
    }

    private(set) var names: [String] = []
    private var material: SVIDMaterial?
    private var sentNonce: String?
    private var nonces = 0
    private var subscribed = false
    private var reportedUnknown: Set<String> = []

    mutating func receive(_ request: DiscoveryRequest) -> Outcome {
        var outcome = Outcome()
        if sentNonce != nil && !request.responseNonce.isEmpty && request.responseNonce != sentNonce {
            return outcome  // answers an older response: stale
        }
        if request.hasErrorDetail {
            outcome.rejection = (request.resourceNames, request.versionInfo, request.errorDetail.message)
        }
        let changed = !subscribed || request.resourceNames != names
        subscribed = true
        names = request.resourceNames
        if changed { outcome.response = respond(&outcome) }
        return outcome
    }

    mutating func update(_ material: SVIDMaterial) -> Outcome {
        self.material = material
        var outcome = Outcome()
        if subscribed { outcome.response = respond(&outcome) }
        return outcome
    }

    private mutating func respond(_ outcome: inout Outcome) -> DiscoveryResponse? {
        guard let material else { return nil }
        let unknown = names.filter { Self.secret(named: $0, from: material) == nil && !reportedUnknown.contains($0) }
        reportedUnknown.formUnion(unknown)
        outcome.unknownNames = unknown
        let secrets = names.compactMap { Self.secret(named: $0, from: material) }
        guard !secrets.isEmpty else { return nil }  // Envoy refuses an empty answer; it keeps waiting instead
        nonces += 1
        let nonce = String(nonces)
        sentNonce = nonce
        return DiscoveryResponse.with {
            $0.versionInfo = String(material.version)
            $0.typeURL = SecretDiscoveryService.secretType
            $0.nonce = nonce
            $0.resources = secrets.compactMap { try? Google_Protobuf_Any(message: $0) }
        }
    }

    /// The secret `name` stands for, or nil if this agent does not serve it.
    static func secret(named name: String, from material: SVIDMaterial) -> Secret? {
        switch name {
        case "default", material.spiffeID:
            return Secret.with {
                $0.name = name
                $0.tlsCertificate = .with {
                    $0.certificateChain = .with { $0.inlineBytes = Data(material.chainPEM.utf8) }
                    $0.privateKey = .with { $0.inlineBytes = Data(material.keyPEM.utf8) }
                }
            }
        case "ROOTCA", material.trustDomainID:
            return Secret.with {
                $0.name = name
                $0.validationContext = .with {
                    $0.trustedCa = .with { $0.inlineBytes = Data(material.bundlePEM.utf8) }
                }
            }
        default:
            return nil
        }
    }
}
