import Foundation
import NIOCore
import NIOFoundationCompat
import NIOHTTP1
import NIOPosix
import NIOSSL
import SigilCore
import SigilCrypto
import Synchronization

/// Load generator for `scripts/bench`: pre-generates distinct keys and CSRs (and reads pre-minted tokens)
/// outside the timed window, then drives an issuance endpoint with keep-alive HTTPS (or HTTP for cfssl) at
/// each concurrency for a fixed duration, and prints one JSON object per level.
///
/// Each of `concurrency` connections sends its next request when the previous answer has arrived, from a
/// plain NIO channel handler: the load generator shares the machine's cores with the server, and
/// AsyncHTTPClient's per-request machinery cost about 100 µs of CPU a request.
///
/// Usage: sigil-load --url URL [--ca-bundle PEM] [--tokens FILE] [--api sigil|cfssl] [--csrs N]
///                   [--concurrency 1,8,64,256] [--duration 10] [--warmup 2] [--rate REQUESTS_PER_SECOND]
///        sigil-load --storm N --url URL --ca-bundle PEM [--tokens FILE] [--api sigil|cfssl] [--server-pid PID]
///                   [--concurrency 64,256]
///   (--storm: N proxies per level, a new connection each, full handshakes then resumed ones; the tokens file
///   holds N per level, each used by one proxy only)
@main
struct LoadGenerator {
    struct Options: Sendable {
        var url = ""
        var caBundle: String?
        var tokens: String?
        var api = "sigil"
        var csrs = 2000
        var concurrency = [1, 8, 64, 256]
        var duration = 10.0
        var warmup = 2.0
        /// Requests per second across all workers (0: as fast as the server answers).
        var rate = 0.0
        /// With N > 0: the startup storm (Storm.swift) with N proxies per level instead of keep-alive load.
        var storm = 0
        /// The server's pid, for its CPU per issuance (storm only).
        var serverPID: Int32? = nil
    }

    static func parse() -> Options {
        var options = Options()
        var arguments = CommandLine.arguments.dropFirst()
        while let flag = arguments.popFirst() {
            let value = arguments.popFirst() ?? ""
            switch flag {
            case "--url": options.url = value
            case "--ca-bundle": options.caBundle = value
            case "--tokens": options.tokens = value
            case "--api": options.api = value
            case "--csrs": options.csrs = Int(value) ?? options.csrs
            case "--concurrency": options.concurrency = value.split(separator: ",").compactMap { Int($0) }
            case "--duration": options.duration = Double(value) ?? options.duration
            case "--warmup": options.warmup = Double(value) ?? options.warmup
            case "--rate": options.rate = Double(value) ?? options.rate
            case "--storm": options.storm = Int(value) ?? 0
            case "--server-pid": options.serverPID = Int32(value)
            default:
                FileHandle.standardError.write(Data("unknown flag \(flag)\n".utf8))
                exit(2)
            }
        }
        return options
    }

    static func main() async throws {
        let options = parse()
        guard let url = URL(string: options.url), let host = url.host,
            let port = url.port ?? (url.scheme == "https" ? 443 : 80) as Int?
        else {
            FileHandle.standardError.write(Data("--url must be http(s)://host:port/path\n".utf8))
            exit(2)
        }
        let tokens =
            try options.tokens.map { path in
                try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").map(String.init).filter {
                    !$0.isEmpty
                }
            } ?? []
        if options.storm > 0 { return try storm(options, tokens: tokens) }
        // Outside the timed window: keys, CSRs and request bodies.
        let bodies = try (0..<options.csrs).map { _ in ByteBuffer(bytes: try issuanceBody(api: options.api)) }
        var tls: NIOSSLContext? = nil
        if url.scheme == "https" {
            var configuration = TLSConfiguration.makeClientConfiguration()
            if let bundle = options.caBundle { configuration.trustRoots = .file(bundle) }
            // The chain is verified; the name is not (the server is addressed by IP on loopback).
            configuration.certificateVerification = .noHostnameVerification
            tls = try NIOSSLContext(configuration: configuration)
        }
        let source = RequestSource(
            path: url.path.isEmpty ? "/" : url.path, host: "\(host):\(port)", bodies: bodies, tokens: tokens,
            expected: UInt(expectedStatus(api: options.api)), rate: options.rate)
        let group = MultiThreadedEventLoopGroup.singleton
        for level in options.concurrency {
            var connections: [Connection] = []
            for _ in 0..<level {
                connections.append(
                    try await Connection.open(host: host, port: port, tls: tls, source: source, group: group))
            }
            _ = try await run(connections, source: source, seconds: options.warmup)
            let result = try await run(connections, source: source, seconds: options.duration)
            print(result.json(api: options.api, concurrency: level))
            for connection in connections { try? await connection.channel.close() }
        }
    }

    /// A request body with a fresh P-256 key and CSR, in the shape `api` (sigil or cfssl) takes.
    static func issuanceBody(api: String) throws -> [UInt8] {
        let csr = try CertificateSigningRequest.create(key: try PrivateKey.generate(.p256), subjectAlternativeNames: [])
        let body = api == "cfssl" ? ["certificate_request": try csr.pem] : ["csr": try csr.pem]
        return Array(try JSONSerialization.data(withJSONObject: body))
    }

    /// The status of a successful issuance: cfssl answers 200, Sigil 201 Created.
    static func expectedStatus(api: String) -> Int { api == "cfssl" ? 200 : 201 }

    static func storm(_ options: Options, tokens: [String]) throws {
        guard let bundle = options.caBundle, let trust = try? String(contentsOfFile: bundle, encoding: .utf8) else {
            FileHandle.standardError.write(Data("--storm needs --ca-bundle\n".utf8))
            exit(2)
        }
        let count = options.storm
        let cfssl = options.api == "cfssl"
        guard cfssl || tokens.count >= count * options.concurrency.count else {
            FileHandle.standardError.write(Data("--storm \(count) needs \(count) tokens per level\n".utf8))
            exit(2)
        }
        // Outside the timed window: a fresh key and CSR per proxy.
        let bodies = try (0..<count).map { _ in try issuanceBody(api: options.api) }
        let storm = Storm(
            url: options.url, client: try HTTPSClient(trust: trust), serverPID: options.serverPID, api: options.api)
        for (level, concurrency) in options.concurrency.enumerated() {
            let proxies = (0..<count).map { index in
                Storm.Proxy(token: cfssl ? "" : tokens[level * count + index], body: bodies[index])
            }
            let sessions = SessionTable(count: count)
            print(storm.pass(name: "full", proxies: proxies, concurrency: concurrency, sessions: sessions))
            print(storm.pass(name: "resumed", proxies: proxies, concurrency: concurrency, sessions: sessions))
        }
    }

    /// Drives every connection until `seconds` have passed; returns what they measured.
    static func run(_ connections: [Connection], source: RequestSource, seconds: Double) async throws -> Measurement {
        source.restart(at: .now())
        let deadline = NIODeadline.now() + .milliseconds(Int64(seconds * 1000))
        let started = ContinuousClock.now
        let running = connections.map { $0.run(until: deadline) }
        var total = Measurement()
        for measurement in running { total.merge(try await measurement.get()) }
        let elapsed = ContinuousClock.now - started
        total.wall = elapsed.timeInterval
        return total
    }
}

/// What the requests sent and how they ended; shared by all connections.
final class RequestSource: Sendable {
    let path: String
    let host: String
    let bodies: [ByteBuffer]
    let tokens: [String]
    let expected: UInt
    /// Requests per second across all connections (0: as fast as the server answers).
    let rate: Double
    private let counter = Atomic<Int>(0)
    private let started = Mutex<NIODeadline>(.now())

    init(path: String, host: String, bodies: [ByteBuffer], tokens: [String], expected: UInt, rate: Double) {
        self.path = path
        self.host = host
        self.bodies = bodies
        self.tokens = tokens
        self.expected = expected
        self.rate = rate
    }

    func restart(at time: NIODeadline) {
        counter.store(0, ordering: .relaxed)
        started.withLock { $0 = time }
    }

    /// The next request's index and, when paced, when it may start: request n at n / rate seconds
    /// (`scripts/soak` holds a fixed load).
    func next() -> (index: Int, slot: NIODeadline?) {
        let index = counter.wrappingAdd(1, ordering: .relaxed).oldValue
        guard rate > 0 else { return (index, nil) }
        return (index, started.withLock { $0 } + .microseconds(Int64(Double(index) / rate * 1e6)))
    }

    func head(_ index: Int) -> HTTPRequestHead {
        var headers = HTTPHeaders()
        headers.add(name: "Host", value: host)
        headers.add(name: "Content-Type", value: "application/json")
        headers.add(name: "Content-Length", value: String(bodies[index % bodies.count].readableBytes))
        if !tokens.isEmpty { headers.add(name: "Authorization", value: "Bearer \(tokens[index % tokens.count])") }
        return HTTPRequestHead(version: .http1_1, method: .POST, uri: path, headers: headers)
    }
}

/// Latencies of the answers with the expected status, and the rest counted as errors.
struct Measurement: Sendable {
    var latencies: [Double] = []
    var errors = 0
    var firstError: String? = nil
    var wall = 0.0

    mutating func merge(_ other: Measurement) {
        latencies += other.latencies
        errors += other.errors
        firstError = firstError ?? other.firstError
    }

    func json(api: String, concurrency: Int) -> String { Self.encode(fields(api: api, concurrency: concurrency)) }

    func fields(api: String, concurrency: Int) -> [String: Any] {
        let sorted = latencies.sorted()
        func percentile(_ p: Double) -> Double {
            sorted.isEmpty ? 0 : sorted[max(0, min(sorted.count - 1, Int((p * Double(sorted.count)).rounded(.up)) - 1))]
        }
        return [
            "api": api, "concurrency": concurrency, "seconds": (wall * 1000).rounded() / 1000, "issued": sorted.count,
            "issued_per_second": (Double(sorted.count) / wall).rounded(), "errors": errors,
            "first_error": firstError ?? NSNull(),
            "p50_ms": percentile(0.50), "p90_ms": percentile(0.90), "p99_ms": percentile(0.99),
            "max_ms": sorted.last ?? 0,
        ]
    }

    static func encode(_ object: [String: Any]) -> String {
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data()
        return String(decoding: data, as: UTF8.self)
    }
}

/// One keep-alive connection: sends a request, waits for the whole answer, sends the next, until a deadline.
final class Connection: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundOut = HTTPClientRequestPart

    let source: RequestSource
    private(set) var channel: Channel!
    // Event-loop state (touched on the channel's event loop only).
    private var deadline = NIODeadline.now()
    private var done: EventLoopPromise<Measurement>?
    private var measurement = Measurement()
    private var sentAt = NIODeadline.now()
    private var status: UInt = 0
    private var body = ByteBuffer()

    init(source: RequestSource) { self.source = source }

    static func open(
        host: String, port: Int, tls: NIOSSLContext?, source: RequestSource, group: EventLoopGroup
    ) async throws -> Connection {
        let connection = Connection(source: source)
        let channel = try await ClientBootstrap(group: group)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let tls {
                        try channel.pipeline.syncOperations.addHandler(
                            try NIOSSLClientHandler(context: tls, serverHostname: nil))
                    }
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    try channel.pipeline.syncOperations.addHandler(connection)
                }
            }
            .connect(host: host, port: port).get()
        connection.channel = channel
        return connection
    }

    /// Sends requests until `deadline`; the future holds what this connection measured.
    func run(until deadline: NIODeadline) -> EventLoopFuture<Measurement> {
        channel.eventLoop.flatSubmit {
            self.deadline = deadline
            self.measurement = Measurement()
            let promise = self.channel.eventLoop.makePromise(of: Measurement.self)
            self.done = promise
            self.sendNext()
            return promise.futureResult
        }
    }

    private func sendNext() {
        guard done != nil, NIODeadline.now() < deadline else { return finish() }
        let (index, slot) = source.next()
        if let slot, slot > NIODeadline.now() {
            guard slot < deadline else { return finish() }
            channel.eventLoop.scheduleTask(deadline: slot) { self.send(index) }
        } else {
            send(index)
        }
    }

    private func send(_ index: Int) {
        sentAt = .now()
        status = 0
        body.clear()
        channel.write(HTTPClientRequestPart.head(source.head(index)), promise: nil)
        channel.write(HTTPClientRequestPart.body(.byteBuffer(source.bodies[index % source.bodies.count])), promise: nil)
        channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
    }

    private func finish() {
        let promise = done
        done = nil
        promise?.succeed(measurement)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head): status = head.status.code
        case .body(var part): body.writeBuffer(&part)
        case .end:
            if status == source.expected {
                measurement.latencies.append(Double((NIODeadline.now() - sentAt).nanoseconds) / 1e6)
            } else {
                measurement.errors += 1
                if measurement.firstError == nil {
                    measurement.firstError = "HTTP \(status): \(String(buffer: body).prefix(200))"
                }
            }
            sendNext()
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        measurement.errors += 1
        if measurement.firstError == nil { measurement.firstError = "\(error)" }
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        if done != nil {
            measurement.errors += 1
            if measurement.firstError == nil { measurement.firstError = "connection closed by the server" }
        }
        finish()
    }
}
