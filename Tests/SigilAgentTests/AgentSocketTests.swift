import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Logging
import SigilAgentGRPC
import SigilCore
import SigilCrypto
import SigilFiles
import SigilTestSupport
import SwiftProtobuf
import Testing

@testable import SigilAgent

/// The agent's socket: the SDS state machine as a pure value, then both gRPC services over a real unix socket
/// with grpc-swift's own client.
@Suite("Agent socket: SPIFFE Workload API and Envoy SDS")
struct AgentSocketTests {
    static let quiet = Logger(label: "test") { _ in SwiftLogNoOpLogHandler() }
    static let pki = try! TestPKI()
    static let id = "spiffe://example.org/ns/default/sa/web"

    static func material() throws -> SVIDMaterial {
        let leaf = try pki.issueLeaf()
        return try SVIDMaterial(
            chain: [leaf.certificate, pki.intermediate.certificate], key: leaf.key, bundle: [pki.root.certificate],
            spiffeID: id)
    }

    static func request(
        _ names: [String], nonce: String = "", version: String = "", nack: String? = nil
    )
        -> DiscoveryRequest
    {
        .with {
            $0.resourceNames = names
            $0.responseNonce = nonce
            $0.versionInfo = version
            $0.typeURL = SecretDiscoveryService.secretType
            if let nack {
                $0.errorDetail = .with {
                    $0.code = 3; $0.message = nack
                }
            }
        }
    }

    static func secrets(_ response: DiscoveryResponse?) throws -> [Secret] {
        try #require(response).resources.map { try Secret(unpackingAny: $0) }
    }

    @Test("SDS: nothing before the first SVID, then the subscribed secrets by either naming convention")
    func sdsFirstResponse() throws {
        var session = SDSSession()
        #expect(session.receive(Self.request([Self.id, "spiffe://example.org"])).response == nil)
        var material = try Self.material()
        material.version = 7
        let outcome = session.update(material)
        let response = try #require(outcome.response)
        #expect(
            response.versionInfo == "7" && response.nonce == "1"
                && response.typeURL == SecretDiscoveryService.secretType)
        let secrets = try Self.secrets(response)
        #expect(secrets.map(\.name) == [Self.id, "spiffe://example.org"])
        #expect(
            String(decoding: secrets[0].tlsCertificate.certificateChain.inlineBytes, as: UTF8.self) == material.chainPEM
        )
        #expect(String(decoding: secrets[0].tlsCertificate.privateKey.inlineBytes, as: UTF8.self) == material.keyPEM)
        #expect(
            String(decoding: secrets[1].validationContext.trustedCa.inlineBytes, as: UTF8.self) == material.bundlePEM)

        var istio = SDSSession()
        _ = istio.update(material)
        let names = try Self.secrets(istio.receive(Self.request(["default", "ROOTCA"])).response)
        #expect(names.map(\.name) == ["default", "ROOTCA"])
        #expect(names[0].tlsCertificate.hasPrivateKey && names[1].validationContext.hasTrustedCa)
    }

    @Test("SDS: an ACK gets nothing, a NACK is reported, a stale nonce is ignored, a change is pushed")
    func sdsAckNackAndPush() throws {
        var session = SDSSession()
        _ = session.update(try Self.material())
        let first = try #require(session.receive(Self.request(["default"])).response)
        #expect(
            session.receive(Self.request(["default"], nonce: first.nonce, version: first.versionInfo)).response == nil)

        let nack = session.receive(Self.request(["default"], nonce: first.nonce, version: "", nack: "bad key"))
        #expect(nack.response == nil)
        #expect(nack.rejection?.message == "bad key" && nack.rejection?.names == ["default"])

        var renewed = try Self.material()
        renewed.version = 2
        let pushed = try #require(session.update(renewed).response)
        #expect(pushed.nonce != first.nonce && pushed.versionInfo == "2")
        let stale = session.receive(Self.request(["default", "ROOTCA"], nonce: first.nonce))
        #expect(stale.response == nil && session.names == ["default"], "a request answering an older response is stale")

        let more = try Self.secrets(session.receive(Self.request(["default", "ROOTCA"], nonce: pushed.nonce)).response)
        #expect(more.map(\.name) == ["default", "ROOTCA"], "a changed subscription is answered at once")
    }

    @Test("SDS: unknown names are reported once and left out; only unknown names get no answer")
    func sdsUnknownNames() throws {
        var session = SDSSession()
        _ = session.update(try Self.material())
        let outcome = session.receive(Self.request(["default", "spiffe://example.org/ns/other/sa/x", "nope"]))
        #expect(outcome.unknownNames == ["spiffe://example.org/ns/other/sa/x", "nope"])
        #expect(try Self.secrets(outcome.response).map(\.name) == ["default"])

        var unknownOnly = SDSSession()
        _ = unknownOnly.update(try Self.material())
        let refused = unknownOnly.receive(Self.request(["nope"]))
        #expect(refused.response == nil && refused.unknownNames == ["nope"])
        #expect(unknownOnly.receive(Self.request(["nope", "also"])).unknownNames == ["also"])
    }

    @Test("the feed gives a subscriber the current SVID, then newer ones; a withheld SVID only after its successor")
    func feed() async throws {
        let feed = SVIDFeed()
        let first = try Self.material()
        #expect(feed.publish(first) == 1)
        var early = feed.subscribe().makeAsyncIterator()
        #expect(await early.next()?.serial == first.serial)
        feed.withhold()
        #expect(feed.servable == nil && feed.current?.serial == first.serial)
        var late = feed.subscribe().makeAsyncIterator()
        feed.publish(first.replacing(crlDER: [[0x30, 0x00]]))
        #expect(feed.current?.crlDER == [[0x30, 0x00]], "the withheld SVID takes the new CRLs, unpushed")
        let second = try Self.material()
        feed.publish(second)
        #expect(await late.next()?.serial == second.serial, "a subscriber after a taint never sees the tainted SVID")
        #expect(await early.next()?.version == 3, "the withheld SVID was never pushed, its successor was")
        feed.close()
        #expect(await early.next() == nil && feed.subscriberCount == 0)
    }

    /// Runs an `AgentSocket` on a fresh path and `body` with a client of it.
    func withSocket(
        allowedUIDs: Set<UInt32>? = nil, feed: SVIDFeed,
        _ body: (GRPCClient<HTTP2ClientTransport.Posix>, AgentSocket) async throws -> Void
    ) async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("sigil-socket-\(UUID())").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/agent.sock"
        let socket = AgentSocket(
            path: path, allowedUIDs: allowedUIDs, feed: feed, clock: SystemClock(), logger: Self.quiet)
        let server = Task { try await socket.run() }
        defer { server.cancel() }
        // The server binds in the background; the client connects once it listens (a connection attempt that
        // fails leaves grpc-swift's client handler behind, see scripts/lib/lsan.supp).
        try await Self.eventually("the agent's socket to listen") { UnixSocket.accepts(path) }
        let transport = try HTTP2ClientTransport.Posix(
            target: .unixDomainSocket(path: path), transportSecurity: .plaintext)
        try await withGRPCClient(transport: transport) { client in
            try await body(client, socket)
        }
        feed.close()
        server.cancel()
        _ = await server.result
        #expect(!FileManager.default.fileExists(atPath: path), "the socket is removed on exit")
    }

    static let header: Metadata = ["workload.spiffe.io": "true"]

    /// Waits for a condition another task makes true (polled; no timing is asserted), failing after 10 s.
    static func eventually(_ what: Comment, _ condition: () -> Bool) async throws {
        let clock = ContinuousClock()
        let deadline = clock.now + .seconds(10)
        while !condition() {
            guard clock.now < deadline else {
                Issue.record("timed out waiting for \(what)")
                return
            }
            try await Task.sleep(for: .milliseconds(5))
        }
    }

    @Test("FetchX509SVID streams the SVID, then its renewal; FetchX509Bundles the bundle under the trust domain")
    func workloadAPI() async throws {
        let feed = SVIDFeed()
        let first = try Self.material()
        feed.publish(first)
        try await withSocket(feed: feed) { client, socket in
            let api = SpiffeWorkloadAPI.Client(wrapping: client)
            try await api.fetchX509SVID(X509SVIDRequest(), metadata: Self.header) { response in
                var messages = response.messages.makeAsyncIterator()
                let svid = try #require(try await messages.next()?.svids.first)
                #expect(svid.spiffeID == Self.id)
                #expect(
                    try Certificate(der: Array(svid.x509Svid.prefix(first.chainDER[0].count))).serial.hex
                        == first.serial)
                #expect(Array(svid.x509Svid) == first.chainDER.joined().map { $0 })
                #expect(Array(svid.x509SvidKey) == first.keyDER && Array(svid.bundle) == first.bundleDER[0])
                let second = try Self.material()
                feed.publish(second)
                let renewed = try #require(try await messages.next()?.svids.first)
                #expect(Array(renewed.x509SvidKey) == second.keyDER)
            }
            // The client left both streams above (returning from its handler cancels the call): the agent ends
            // them too, though no push comes to wake them.
            try await Self.eventually("the streams of departed clients to end") { socket.openStreams == 0 }
            try await api.fetchX509Bundles(X509BundlesRequest(), metadata: Self.header) { response in
                var messages = response.messages.makeAsyncIterator()
                let bundles = try #require(try await messages.next()).bundles
                #expect(bundles == ["spiffe://example.org": Data(Self.pki.root.certificate.der)])
            }
            let jwt = await #expect(throws: RPCError.self) {
                _ = try await api.fetchJWTSVID(.with { $0.audience = ["x"] }, metadata: Self.header)
            }
            #expect(jwt?.code == .unimplemented)
        }
    }

    @Test("a Workload API call without workload.spiffe.io is InvalidArgument; SDS does not need it")
    func securityHeader() async throws {
        let feed = SVIDFeed()
        feed.publish(try Self.material())
        try await withSocket(feed: feed) { client, _ in
            let error = await #expect(throws: RPCError.self) {
                try await SpiffeWorkloadAPI.Client(wrapping: client).fetchX509SVID(X509SVIDRequest()) { response in
                    for try await _ in response.messages { break }
                }
            }
            #expect(error?.code == .invalidArgument)
            let sds = Envoy_Service_Secret_V3_SecretDiscoveryService.Client(wrapping: client)
            let answer = try await sds.fetchSecrets(Self.request(["default"]))
            #expect(try Self.secrets(answer).map(\.name) == ["default"])
        }
    }

    @Test("a caller whose uid is not in --allowed-uids is PermissionDenied, whatever headers it sends")
    func allowedUIDs() async throws {
        let feed = SVIDFeed()
        feed.publish(try Self.material())
        let me = getuid()
        try await withSocket(allowedUIDs: [me &+ 1], feed: feed) { client, _ in
            var spoofed = Self.header
            spoofed.addString(String(me &+ 1), forKey: PeerCredentials.uidKey)
            let error = await #expect(throws: RPCError.self) {
                try await SpiffeWorkloadAPI.Client(wrapping: client).fetchX509SVID(X509SVIDRequest(), metadata: spoofed)
                {
                    response in
                    for try await _ in response.messages { break }
                }
            }
            #expect(error?.code == .permissionDenied)
        }
        try await withSocket(allowedUIDs: [me], feed: SVIDFeed()) { client, _ in
            let error = await #expect(throws: RPCError.self) {
                _ = try await Envoy_Service_Secret_V3_SecretDiscoveryService.Client(wrapping: client).fetchSecrets(
                    Self.request(["default"]))
            }
            #expect(error?.code == .unavailable, "an allowed caller gets through (and finds no SVID yet)")
        }
    }

    @Test("a stale socket is replaced; a live one, or a path that is not a socket, is refused")
    func socketPath() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("sigil-path-\(UUID())").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/agent.sock"
        try AgentSocket.prepare(path)
        var info = stat()
        #expect(stat(directory, &info) == 0 && info.st_mode & 0o777 == 0o750, "a new directory is 0750")

        let listener = try UnixListener(path: path)
        #expect(throws: AgentError.self) { try AgentSocket.prepare(path) }
        listener.close()  // the file stays, nothing listens: stale
        try AgentSocket.prepare(path)
        #expect(!FileManager.default.fileExists(atPath: path))

        #expect(FileManager.default.createFile(atPath: path, contents: Data("x".utf8)))
        #expect(throws: AgentError.self) { try AgentSocket.prepare(path) }
    }
}

/// A bound, listening unix socket that leaves its file behind when closed.
final class UnixListener {
    let fd: Int32

    init(path: String) throws {
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (index, byte) in path.utf8.enumerated() { raw[index] = byte }
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard bound == 0, listen(fd, 1) == 0 else { throw AgentError("test", "cannot listen on \(path)") }
    }

    func close() { _ = Glibc.close(fd) }
}
