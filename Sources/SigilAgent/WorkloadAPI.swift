import Foundation
import GRPCCore
import Logging
import SigilAgentGRPC
import SigilCore
import Synchronization

/// The SPIFFE Workload API's X.509 half from the agent's current SVID: every stream gets the SVID (or bundle)
/// as soon as one exists, then a full new message on every change. JWT-SVIDs are not served yet.
struct WorkloadAPIService: SpiffeWorkloadAPI.SimpleServiceProtocol {
    let feed: SVIDFeed
    let streams: StreamRegistry

    func fetchX509SVID(
        request: X509SVIDRequest, response: RPCWriter<X509SVIDResponse>, context: ServerContext
    ) async throws {
        try await streams.serve("FetchX509SVID", context) { stream in try await sendSVIDs(response, stream: stream) }
    }

    private func sendSVIDs(_ response: RPCWriter<X509SVIDResponse>, stream: Int) async throws {
        for await material in feed.subscribe() {
            try await response.write(
                .with {
                    $0.svids = [
                        .with {
                            $0.spiffeID = material.spiffeID
                            $0.x509Svid = Data(material.chainDER.joined())
                            $0.x509SvidKey = Data(material.keyDER)
                            $0.bundle = Data(material.bundleDER.joined())
                        }
                    ]
                    $0.crl = material.crlDER.map { Data($0) }
                })
            streams.pushed(stream, version: String(material.version))
        }
    }

    func fetchX509Bundles(
        request: X509BundlesRequest, response: RPCWriter<X509BundlesResponse>, context: ServerContext
    ) async throws {
        try await streams.serve("FetchX509Bundles", context) { stream in
            try await sendBundles(response, stream: stream)
        }
    }

    private func sendBundles(_ response: RPCWriter<X509BundlesResponse>, stream: Int) async throws {
        var sent: (bundle: [[UInt8]], crl: [[UInt8]])? = nil
        for await material in feed.subscribe() where sent?.bundle != material.bundleDER || sent?.crl != material.crlDER
        {
            sent = (material.bundleDER, material.crlDER)
            try await response.write(
                .with {
                    $0.bundles = [material.trustDomainID: Data(material.bundleDER.joined())]
                    $0.crl = material.crlDER.map { Data($0) }
                })
            streams.pushed(stream, version: String(material.version))
        }
    }

    static let noJWT = RPCError(
        code: .unimplemented, message: "sigil agent serves X.509-SVIDs only; JWT-SVIDs are not available yet")

    func fetchJWTSVID(request: JWTSVIDRequest, context: ServerContext) async throws -> JWTSVIDResponse {
        throw Self.noJWT
    }

    func fetchJWTBundles(
        request: JWTBundlesRequest, response: RPCWriter<JWTBundlesResponse>, context: ServerContext
    ) async throws {
        throw Self.noJWT
    }

    func validateJWTSVID(
        request: ValidateJWTSVIDRequest, context: ServerContext
    ) async throws
        -> ValidateJWTSVIDResponse
    {
        throw Self.noJWT
    }
}

/// The open streams of the agent's socket, for its log: when each opened and when it got its last push.
final class StreamRegistry: Sendable {
    private struct Entry {
        let method: String
        let opened: Date
        var lastPush: Date?
    }

    private let entries = Mutex<(next: Int, open: [Int: Entry])>((0, [:]))
    private let logger: Logger
    private let clock: any WallClock

    init(clock: any WallClock, logger: Logger) {
        self.logger = logger
        self.clock = clock
    }

    var count: Int { entries.withLock { $0.open.count } }

    /// Runs one stream of `method`, registered while it is open, until `body` returns or gRPC cancels the RPC
    /// (the client went away, or the server is shutting down): grpc-swift signals that through the context, not
    /// by cancelling the handler's task, so a stream waiting for the next push would otherwise outlive its client.
    func serve(
        _ method: String, _ context: ServerContext, _ body: @escaping @Sendable (Int) async throws -> Void
    ) async throws {
        let stream = open(method)
        defer { close(stream) }
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await body(stream) }
            group.addTask { try await context.cancellation.cancelled }
            defer { group.cancelAll() }
            try await group.next()
        }
    }

    private func open(_ method: String) -> Int {
        let now = clock.now
        let (id, count) = entries.withLock { state in
            let id = state.next
            state.next += 1
            state.open[id] = Entry(method: method, opened: now)
            return (id, state.open.count)
        }
        logger.info(
            "stream opened",
            metadata: ["sigil.stream": "\(id)", "sigil.method": "\(method)", "sigil.open_streams": "\(count)"])
        return id
    }

    func pushed(_ id: Int, version: String) {
        let now = clock.now
        let method = entries.withLock { state -> String? in
            state.open[id]?.lastPush = now
            return state.open[id]?.method
        }
        logger.info(
            "pushed SVID",
            metadata: ["sigil.stream": "\(id)", "sigil.method": "\(method ?? "?")", "sigil.version": "\(version)"])
    }

    private func close(_ id: Int) {
        let (entry, count) = entries.withLock { state in (state.open.removeValue(forKey: id), state.open.count) }
        logger.info(
            "stream closed",
            metadata: [
                "sigil.stream": "\(id)", "sigil.method": "\(entry?.method ?? "?")",
                "sigil.last_push": "\(entry?.lastPush.map { "\($0)" } ?? "never")", "sigil.open_streams": "\(count)",
            ])
    }
}
