import Foundation
import GRPCCore
import GRPCProtobuf
import GRPCNIOTransportHTTP2
import Hummingbird
import Logging
import NIOCore
import NIOHTTP2
import NIOPosix
import NIOSSL
import ServiceLifecycle
import SigilAPIModels
import SigilCore
import SigilCrypto
import SigilIstioGRPC
import SigilTokens

/// Istio's certificate-signing API (`istio.v1.auth.IstioCertificateService/CreateCertificate`), so that Istio's
/// agent (`CA_ADDR`) can use Sigil as its CA. The same checks, limits and audit records as `POST /v1/certificates`;
/// what differs is the wire (gRPC over TLS), the token audience (`istio-ca` by default), the ClusterID recorded in
/// each record, and the lifetime: above what may be granted it is cut (as cert-manager's istio-csr does; istiod
/// refuses), since Istio's agent asks for 24 h whatever the policy says.
///
/// The request is decoded here rather than by grpc-swift, so that a malformed one is refused like any other bad
/// request: with `bad_request` (InvalidArgument) and a denial record.
struct IstioCertificateService: RegistrableRPCService {
    typealias Request = Istio_V1_Auth_IstioCertificateRequest
    typealias Response = Istio_V1_Auth_IstioCertificateResponse
    static let method = "/istio.v1.auth.IstioCertificateService/CreateCertificate"

    let api: SigilAPI
    /// When non-empty, the only ClusterIDs served.
    let allowedClusters: Set<String>

    func registerMethods<Transport: ServerTransport>(with router: inout RPCRouter<Transport>) {
        router.registerHandler(
            forMethod: Istio_V1_Auth_IstioCertificateService.Method.CreateCertificate.descriptor,
            deserializer: Decoder(), serializer: ProtobufSerializer<Response>()
        ) { request, context in
            let unary = try await ServerRequest(stream: request)
            let response = try await createCertificate(unary.message, metadata: unary.metadata)
            return StreamingServerResponse(single: ServerResponse(message: response))
        }
    }

    /// Decodes without failing: a malformed request reaches the handler as `.failure`, to be refused and audited.
    struct Decoder: MessageDeserializer {
        func deserialize<Bytes: GRPCContiguousBytes>(_ bytes: Bytes) throws -> Result<Request, CAError> {
            do {
                return .success(try bytes.withUnsafeBytes { try Request(untrusted: Array($0)) })
            } catch {
                return .failure(CAError(.badRequest, reason: "the request is not an IstioCertificateRequest"))
            }
        }
    }

    func createCertificate(_ decoded: Result<Request, CAError>, metadata: Metadata) async throws -> Response {
        let started = ContinuousClock.now
        let message = try? decoded.get()
        let cluster = metadata[stringValues: "clusterid"].first(where: { !$0.isEmpty }) ?? message?.metadataClusterID
        var requester = Requester(
            actor: "anonymous", requestID: RequestID().description,
            clientAddress: metadata[stringValues: PeerIdentity.addressKey].first(where: { _ in true }))
        let clusterNote = "istio cluster=\(SafeText.excerpt(cluster ?? "-"))"
        requester.note = clusterNote
        var reachedAuthority = false
        var auditRefusal = true
        do {
            try await api.admitClient(address: requester.clientAddress, requestID: requester.requestID ?? "")
            let authorizations = Array(metadata[stringValues: "authorization"])
            guard authorizations.count <= 1 else {
                throw CAError(.unauthenticated, reason: "more than one authorization header")
            }
            let identity = try await api.authenticate(
                authorization: authorizations.first, audience: api.configuration.istioTokenAudience,
                requester: &requester
            ) { try PeerIdentity.certificate(in: metadata) }
            try api.admitIdentity(identity, auditRefusal: &auditRefusal)
            let request = try decoded.get()
            if !allowedClusters.isEmpty && !(cluster.map(allowedClusters.contains) ?? false) {
                throw CAError(.policyDenied, reason: "ClusterID is not one of --istio-cluster-id")
            }
            if request.impersonates {
                throw CAError(.policyDenied, reason: "impersonation (ImpersonatedIdentity) is not supported")
            }
            // Istio's agent asks for 24 h whatever the policy: cut to what may be granted now, not refused.
            let policy = api.ca.issuer.policy
            let signerLeft = try await api.ca.signingAuthority().record.notAfter.timeIntervalSince(api.clock.now)
            let ttl = try Self.lifetime(
                requested: request.validityDuration, default: policy.defaultTTL,
                maximum: min(policy.maxTTL(for: identity), .seconds(Int64(max(0, signerLeft.rounded(.down))))))
            requester.note =
                "\(clusterNote) ttl_requested=\(request.validityDuration)s ttl_granted=\(ttl.wholeSeconds)s"
            let csr: CertificateSigningRequest
            do {
                csr = try CertificateSigningRequest(pem: request.csr)
            } catch {
                throw CAError.csrInvalid(reason: "csr is not a PEM PKCS#10 request")
            }
            reachedAuthority = true
            let issued = try await api.ca.issue(
                IssuanceRequest(csr: csr, identity: identity, ttl: ttl), requester: requester)
            let authorities = try await api.ca.snapshot().authorities
            api.logger.info(
                "issued",
                metadata: [
                    LogKey.identity: "\(issued.spiffeID)", LogKey.serial: "\(issued.serial)",
                    LogKey.requestID: "\(requester.requestID ?? "")", "sigil.api": "istio",
                ])
            api.metrics.issued.increment()
            api.metrics.issuanceDuration.record(ContinuousClock.now - started)
            api.metrics.request(route: Self.method, status: 201)
            var response = Response()
            response.certChain = issued.chainPEM + [Self.roots(of: issued, in: authorities, at: api.clock.now)]
            return response
        } catch let refusal as CAError {
            let error = await api.answerRefusal(
                refusal, requester: requester, reachedAuthority: reachedAuthority, auditRefusal: auditRefusal)
            api.metrics.request(route: Self.method, status: Int(error.code.httpStatus.code))
            throw RPCError(error)
        }
    }

    /// The lifetime to grant for `requested` seconds (0: the policy's `default`), cut to `maximum` (the policy
    /// maximum or the signing authority's remaining life, whichever is shorter). What is below the policy minimum
    /// is left for the policy to refuse.
    static func lifetime(requested: Int64, default: Duration, maximum: Duration) throws -> Duration {
        guard requested >= 0 else { throw CAError(.ttlOutOfRange, reason: "validity_duration is negative") }
        return min(requested == 0 ? `default` : .seconds(requested), maximum)
    }

    /// Every root of the trust bundle, as one PEM entry (Istio reads the last entry of `cert_chain` as its roots),
    /// the root that signed `issued`'s chain first.
    static func roots(of issued: IssuedCertificate, in authorities: AuthoritySet, at now: Date) -> String {
        let signingRoot = authorities.records.first { $0.id == issued.authorityID }?.parentID
        let roots = authorities.bundleRoots(at: now)
        return SPIFFEBundle.pem(
            (roots.filter { $0.id == signingRoot } + roots.filter { $0.id != signingRoot }).map(\.certificate))
    }
}

extension RPCError {
    /// The gRPC status for a refusal: its code's class, and Sigil's stable code first in the message.
    init(_ error: CAError) {
        let status = error.code.httpStatus
        let code: RPCError.Code
        switch status.code {
        case 401: code = .unauthenticated
        case 403: code = .permissionDenied
        case 429: code = .resourceExhausted
        case 503: code = .unavailable
        case 400, 404, 413, 415: code = .invalidArgument
        default: code = .internalError
        }
        self.init(code: code, message: "\(error.code.rawValue): \(error.code.clientDetail)")
    }
}

/// What the TLS connection knows about the caller, put into each call's headers before grpc-swift reads them
/// (it exposes neither the client certificate of a connection it did not set up nor the peer's address in a
/// form the audit record uses): the client certificate (base64 DER) and address. Headers of these names that
/// the caller sent are removed first.
enum PeerIdentity {
    static let certificateKey = "x-sigil-peer-certificate"
    static let addressKey = "x-sigil-peer-address"

    /// The client certificate `install` recorded in `metadata`, nil when none was presented.
    static func certificate(in metadata: Metadata) throws -> [UInt8]? {
        guard let encoded = metadata[stringValues: certificateKey].first(where: { _ in true }) else { return nil }
        guard let der = Data(base64Encoded: encoded) else {
            throw CAError(.unauthenticated, reason: "the client certificate could not be read")
        }
        return Array(der)
    }

    /// Runs first in each HTTP/2 stream's pipeline (`onAcceptHTTP2Stream`).
    @Sendable static func install(on stream: any Channel) -> EventLoopFuture<Void> {
        guard let connection = stream.parent else {
            return stream.eventLoop.makeFailedFuture(
                CAError(.internalError, reason: "HTTP/2 stream without a connection"))
        }
        let address = connection.remoteAddress?.ipAddress
        return connection.nioSSL_peerCertificate().flatMapThrowing { certificate in
            let der = try certificate.map { Data(try $0.toDERBytes()).base64EncodedString() }
            try stream.pipeline.syncOperations.addHandler(
                Injector(certificate: der, address: address), position: .first)
        }
    }

    final class Injector: ChannelInboundHandler, RemovableChannelHandler {
        typealias InboundIn = HTTP2Frame.FramePayload
        typealias InboundOut = HTTP2Frame.FramePayload

        let certificate: String?
        let address: String?
        init(certificate: String?, address: String?) {
            self.certificate = certificate
            self.address = address
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            guard case .headers(var headers) = unwrapInboundIn(data) else { return context.fireChannelRead(data) }
            for (name, value) in [(PeerIdentity.certificateKey, certificate), (PeerIdentity.addressKey, address)] {
                headers.headers.remove(name: name)
                if let value { headers.headers.add(name: name, value: value) }
            }
            context.fireChannelRead(wrapInboundOut(.headers(headers)))
            context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
        }
    }
}

/// Bounds the receipt of a call's request (its one message and end of stream) by the request timeout, as the
/// HTTPS listener bounds a request's headers and body: a caller that opens a call and sends slowly is cut off.
/// Only the receipt: once the request is in, issuance runs to its end (an issuance cut in its commit would still
/// be recorded, but its certificate lost).
struct RequestDeadline: ServerInterceptor {
    let timeout: Duration

    func intercept<Input: Sendable, Output: Sendable>(
        request: StreamingServerRequest<Input>, context: ServerContext,
        next: @Sendable (StreamingServerRequest<Input>, ServerContext) async throws -> StreamingServerResponse<Output>
    ) async throws -> StreamingServerResponse<Output> {
        let messages = request.messages
        let received: [Input] = try await withThrowingTaskGroup(of: [Input]?.self) { group in
            group.addTask {
                var received: [Input] = []
                for try await message in messages {
                    received.append(message)
                    // A unary method: a second message is refused by grpc-swift; stop reading here.
                    if received.count > 1 { break }
                }
                return received
            }
            group.addTask {
                try await Task.sleep(for: timeout)
                return nil
            }
            defer { group.cancelAll() }
            guard let first = try await group.next(), let received = first else {
                throw RPCError(code: .deadlineExceeded, message: "bad_request: the request did not arrive in time")
            }
            return received
        }
        var request = request
        request.messages = RPCAsyncSequence(
            wrapping: AsyncThrowingStream { continuation in
                for message in received { continuation.yield(message) }
                continuation.finish()
            })
        return try await next(request, context)
    }
}

/// Accepts TLS connections for gRPC with the server's current certificate (read per connection, as the HTTPS
/// listener does, so a renewal needs no restart) and ALPN `h2`. Client certificates are requested, optional, and
/// accepted by the handshake; the call checks them against live authority state (`PeerIdentity`).
struct IstioListener: HTTP2ServerTransport.ListenerFactory {
    let host: String
    let port: Int
    let identity: ServerIdentity
    var eventLoopGroup: any EventLoopGroup { MultiThreadedEventLoopGroup.singleton }

    func makeListeningChannel(
        listenerConfigurator: HTTP2ServerTransport.ListenerConfigurator,
        connectionConfigurator: HTTP2ServerTransport.ConnectionConfigurator
    ) async throws -> NIOAsyncChannel<HTTP2ServerTransport.ConnectionConfigurator.ConnectionChannel, Never> {
        try await ServerBootstrap(group: eventLoopGroup)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .serverChannelInitializer { listenerConfigurator.configure(channel: $0) }
            .bind(host: host, port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(
                        NIOSSLServerHandler(
                            context: try identity.context(.grpc),
                            customVerificationCallback: { _, promise in promise.succeed(.certificateVerified) },
                            configuration: .init()))
                }.flatMap { connectionConfigurator.configure(channel: channel, tls: .configured(requireALPN: true)) }
            }
    }
}

/// Serves Istio's CA API until graceful shutdown, which lets calls in progress finish.
struct IstioCAServer: Service {
    let transport: HTTP2ServerTransport.Custom<IstioListener>
    let server: GRPCServer<HTTP2ServerTransport.Custom<IstioListener>>
    let onListening: @Sendable (Int) async -> Void

    init(
        listener: IstioListener, service: IstioCertificateService, configuration: ServerConfiguration,
        onListening: @escaping @Sendable (Int) async -> Void
    ) {
        var transportConfiguration = HTTP2ServerTransport.Custom<IstioListener>.Config.defaults
        // Idle connections (none of their calls open, or a TLS handshake never finished) close as on HTTPS.
        transportConfiguration.connection.maxIdleTime = configuration.idleTimeout
        transportConfiguration.http2.maxConcurrentStreams = 100
        transportConfiguration.rpc.maxRequestPayloadSize = configuration.maxBodyBytes
        transportConfiguration.channelDebuggingCallbacks.onAcceptHTTP2Stream = PeerIdentity.install
        transport = HTTP2ServerTransport.Custom(listenerFactory: listener, config: transportConfiguration)
        server = GRPCServer(
            transport: transport, services: [service],
            interceptors: [RequestDeadline(timeout: configuration.requestTimeout)])
        self.onListening = onListening
    }

    func run() async throws {
        try await withGracefulShutdownHandler {
            try await withThrowingDiscardingTaskGroup { group in
                group.addTask { try await server.serve() }
                let address = await transport.listeningAddress
                if let port = address?.ipv4?.port ?? address?.ipv6?.port { await onListening(port) }
            }
        } onGracefulShutdown: {
            server.beginGracefulShutdown()
        }
    }
}
