import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Logging
import NIOCore
import NIOHPACK
import NIOHTTP2
import ServiceLifecycle
import SigilAgentGRPC
import SigilCore
import SigilFiles
import Synchronization

/// The agent's unix socket: the SPIFFE Workload API and Envoy SDS over plaintext gRPC. Every caller allowed on
/// the socket receives the pod's identity, so the socket lives in a directory shared only inside the pod;
/// `allowedUIDs` narrows it further by the caller's kernel-reported uid (SO_PEERCRED).
public final class AgentSocket: Service, Sendable {
    let path: String
    let allowedUIDs: Set<UInt32>?
    let feed: SVIDFeed
    let logger: Logger
    let streams: StreamRegistry

    public init(path: String, allowedUIDs: Set<UInt32>?, feed: SVIDFeed, clock: any WallClock, logger: Logger) {
        self.path = path
        self.allowedUIDs = allowedUIDs
        self.feed = feed
        self.logger = logger
        self.streams = StreamRegistry(clock: clock, logger: logger)
    }

    /// How many Workload API and SDS streams are open now.
    public var openStreams: Int { streams.count }

    public func run() async throws {
        try Self.prepare(path)
        let transport = HTTP2ServerTransport.Posix(
            address: .unixDomainSocket(path: path), transportSecurity: .plaintext,
            config: .defaults { $0.channelDebuggingCallbacks.onAcceptHTTP2Stream = PeerCredentials.install })
        let server = GRPCServer(
            transport: transport,
            services: [
                WorkloadAPIService(feed: feed, streams: streams),
                SecretDiscoveryService(feed: feed, streams: streams, logger: logger),
            ],
            interceptors: [CallerCheck(allowedUIDs: allowedUIDs, logger: logger)])
        let bound = Mutex<(dev: UInt64, inode: UInt64)?>(nil)
        defer {
            // Only the socket this agent bound: not one a successor has put in its place.
            var info = stat()
            if let ours = bound.withLock({ $0 }), lstat(path, &info) == 0, info.st_dev == ours.dev,
                info.st_ino == ours.inode
            {
                unlink(path)
            }
        }
        try await withGracefulShutdownHandler {
            try await withThrowingDiscardingTaskGroup { group in
                group.addTask { try await server.serve() }
                _ = try await transport.listeningAddress
                var info = stat()
                if lstat(path, &info) == 0 { bound.withLock { $0 = (UInt64(info.st_dev), UInt64(info.st_ino)) } }
                guard chmod(path, 0o660) == 0 else {
                    server.beginGracefulShutdown()
                    throw AgentError("socket_unusable", "cannot chmod \(path): \(String(cString: strerror(errno)))")
                }
                logger.notice(
                    "serving the SPIFFE Workload API and Envoy SDS",
                    metadata: [
                        "sigil.socket": "\(path)",
                        "sigil.allowed_uids":
                            "\(allowedUIDs.map { $0.sorted().map(String.init).joined(separator: ",") } ?? "any")",
                    ])
            }
        } onGracefulShutdown: {
            server.beginGracefulShutdown()
        }
    }

    /// Makes the socket's directory (0750 if it is new) and clears a stale socket; refuses a live one or a path
    /// that is not a socket. `run` calls it; calling it first makes those refusals come before anything else.
    public static func prepare(_ path: String) throws {
        let directory = (path as NSString).deletingLastPathComponent
        if !directory.isEmpty && !FileManager.default.fileExists(atPath: directory) {
            try FileManager.default.createDirectory(
                atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o750])
        }
        var info = stat()
        guard lstat(path, &info) == 0 else { return }
        guard info.st_mode & S_IFMT == S_IFSOCK else {
            throw AgentError("socket_unusable", "\(path) exists and is not a socket; refusing to replace it")
        }
        switch UnixSocket.probe(path) {
        case .accepting:
            throw AgentError("socket_in_use", "another process is serving on \(path)")
        case .failed(let error):
            throw AgentError(
                "socket_unusable", "cannot tell whether \(path) is served: \(String(cString: strerror(error)))")
        case .unserved:
            break
        }
        guard unlink(path) == 0 else {
            throw AgentError(
                "socket_unusable", "cannot remove stale socket \(path): \(String(cString: strerror(errno)))")
        }
    }
}

/// Refuses callers outside `--allowed-uids` (PermissionDenied) and Workload API calls without the
/// `workload.spiffe.io: true` header the specification requires (InvalidArgument).
struct CallerCheck: ServerInterceptor {
    let allowedUIDs: Set<UInt32>?
    let logger: Logger

    func intercept<Input: Sendable, Output: Sendable>(
        request: StreamingServerRequest<Input>, context: ServerContext,
        next: @Sendable (StreamingServerRequest<Input>, ServerContext) async throws -> StreamingServerResponse<Output>
    ) async throws -> StreamingServerResponse<Output> {
        let uid = request.metadata[stringValues: PeerCredentials.uidKey].first(where: { _ in true })
        if let allowedUIDs {
            guard let uid, let value = UInt32(uid), allowedUIDs.contains(value) else {
                logger.warning(
                    "refused a caller outside --allowed-uids",
                    metadata: [
                        "sigil.uid": "\(uid ?? "unknown")",
                        "sigil.pid":
                            "\(request.metadata[stringValues: PeerCredentials.pidKey].first(where: { _ in true }) ?? "unknown")",
                        "sigil.method": "\(context.descriptor.fullyQualifiedMethod)",
                    ])
                throw RPCError(code: .permissionDenied, message: "uid \(uid ?? "unknown") may not use this socket")
            }
        }
        if context.descriptor.service == SpiffeWorkloadAPI.descriptor,
            request.metadata[stringValues: "workload.spiffe.io"].first(where: { _ in true }) != "true"
        {
            throw RPCError(code: .invalidArgument, message: "security header missing from request")
        }
        return try await next(request, context)
    }
}

/// Puts the caller's kernel-reported credentials (SO_PEERCRED of the connection) into every request's headers,
/// replacing any the caller sent under the same names. grpc-swift does not expose them to handlers; this runs
/// first in each HTTP/2 stream's pipeline.
enum PeerCredentials {
    static let uidKey = "x-sigil-peer-uid"
    static let pidKey = "x-sigil-peer-pid"

    /// `struct ucred` of <sys/socket.h>.
    struct Credentials: Sendable {
        var pid: Int32 = 0
        var uid: UInt32 = 0
        var gid: UInt32 = 0
    }

    @Sendable static func install(on stream: any Channel) -> EventLoopFuture<Void> {
        guard let provider = stream.parent as? any SocketOptionProvider else {
            // Without the kernel's word on the caller, the stream is closed rather than trusted.
            return stream.eventLoop.makeFailedFuture(AgentError("peer_unknown", "no peer credentials for a stream"))
        }
        let credentials: EventLoopFuture<Credentials> = provider.unsafeGetSocketOption(
            level: SocketOptionLevel(SOL_SOCKET), name: SocketOptionName(SO_PEERCRED))
        return credentials.flatMapThrowing { credentials in
            try stream.pipeline.syncOperations.addHandler(Injector(credentials: credentials), position: .first)
        }
    }

    final class Injector: ChannelInboundHandler, RemovableChannelHandler {
        typealias InboundIn = HTTP2Frame.FramePayload
        typealias InboundOut = HTTP2Frame.FramePayload

        let credentials: Credentials
        init(credentials: Credentials) { self.credentials = credentials }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            var payload = unwrapInboundIn(data)
            if case .headers(var headers) = payload {
                headers.headers.remove(name: PeerCredentials.uidKey)
                headers.headers.remove(name: PeerCredentials.pidKey)
                headers.headers.add(name: PeerCredentials.uidKey, value: String(credentials.uid))
                headers.headers.add(name: PeerCredentials.pidKey, value: String(credentials.pid))
                payload = .headers(headers)
                context.fireChannelRead(wrapInboundOut(payload))
                context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
                return
            }
            context.fireChannelRead(data)
        }
    }
}
