import AsyncHTTPClient
import Foundation
import NIOCore
import NIOFoundationCompat
import NIOSSL
import SigilCore
import SigilCrypto
import Synchronization

/// Load generator for `scripts/bench`: pre-generates distinct keys and CSRs (and reads pre-minted tokens)
/// outside the timed window, then drives an issuance endpoint with keep-alive HTTPS (or HTTP for cfssl) at
/// each concurrency for a fixed duration, and prints one JSON object per level.
///
/// Usage: sigil-load --url URL [--ca-bundle PEM] [--tokens FILE] [--api sigil|cfssl] [--csrs N]
///                   [--concurrency 1,8,64,256] [--duration 10] [--warmup 2] [--rate REQUESTS_PER_SECOND]
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
            default:
                FileHandle.standardError.write(Data("unknown flag \(flag)\n".utf8))
                exit(2)
            }
        }
        return options
    }

    static func main() async throws {
        let options = parse()
        let tokens = try options.tokens.map { path in
            try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").map(String.init).filter { !$0.isEmpty }
        } ?? []
        // Outside the timed window: keys, CSRs and request bodies.
        let bodies: [ByteBuffer] = try (0..<options.csrs).map { _ in
            let key = try PrivateKey.generate(.p256)
            let csr = try CertificateSigningRequest.create(key: key, subjectAlternativeNames: [])
            let body: [String: String] = options.api == "cfssl" ? ["certificate_request": try csr.pem] : ["csr": try csr.pem]
            return ByteBuffer(bytes: try JSONSerialization.data(withJSONObject: body))
        }
        var tls = TLSConfiguration.makeClientConfiguration()
        if let bundle = options.caBundle { tls.trustRoots = .file(bundle) }
        var configuration = HTTPClient.Configuration(tlsConfiguration: tls)
        configuration.connectionPool = .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: max(options.concurrency.max() ?? 1, 1))
        let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
        let expected: UInt = options.api == "cfssl" ? 200 : 201
        for level in options.concurrency {
            _ = await run(client: client, options: options, bodies: bodies, tokens: tokens, concurrency: level, seconds: options.warmup, expected: expected)
            let result = await run(client: client, options: options, bodies: bodies, tokens: tokens, concurrency: level, seconds: options.duration, expected: expected)
            print(result)
        }
        try await client.shutdown()
    }

    /// Drives `concurrency` workers for `seconds`; returns a JSON line with throughput and latency percentiles.
    static func run(
        client: HTTPClient, options: Options, bodies: [ByteBuffer], tokens: [String], concurrency: Int, seconds: Double, expected: UInt
    ) async -> String {
        let next = Counter()
        let started = ContinuousClock.now
        let deadline = started + .milliseconds(Int64(seconds * 1000))
        let results = await withTaskGroup(of: (latencies: [Double], errors: Int, firstError: String?).self) { group in
            for _ in 0..<concurrency {
                group.addTask {
                    var latencies: [Double] = []
                    var errors = 0
                    var firstError: String? = nil
                    while ContinuousClock.now < deadline {
                        let index = next.next()
                        if options.rate > 0 {
                            // Paced: request n starts at n / rate seconds (`scripts/soak` holds a fixed load).
                            let slot = started + .microseconds(Int64(Double(index) / options.rate * 1e6))
                            if slot >= deadline { break }
                            try? await Task.sleep(until: slot, clock: .continuous)
                        }
                        var request = HTTPClientRequest(url: options.url)
                        request.method = .POST
                        request.headers.add(name: "Content-Type", value: "application/json")
                        if !tokens.isEmpty { request.headers.add(name: "Authorization", value: "Bearer \(tokens[index % tokens.count])") }
                        request.body = .bytes(bodies[index % bodies.count])
                        let begin = ContinuousClock.now
                        do {
                            let response = try await client.execute(request, timeout: .seconds(30))
                            let body = try await response.body.collect(upTo: 1 << 20)
                            if response.status.code == expected {
                                let elapsed = ContinuousClock.now - begin
                                latencies.append(Double(elapsed.components.seconds) * 1000 + Double(elapsed.components.attoseconds) / 1e15)
                            } else {
                                errors += 1
                                if firstError == nil { firstError = "HTTP \(response.status.code): \(String(buffer: body).prefix(200))" }
                            }
                        } catch {
                            errors += 1
                            if firstError == nil { firstError = "\(error)" }
                        }
                    }
                    return (latencies, errors, firstError)
                }
            }
            var all: (latencies: [Double], errors: Int, firstError: String?) = ([], 0, nil)
            for await result in group {
                all.latencies += result.latencies
                all.errors += result.errors
                all.firstError = all.firstError ?? result.firstError
            }
            return all
        }
        let elapsed = ContinuousClock.now - started
        let wall = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        let sorted = results.latencies.sorted()
        func percentile(_ p: Double) -> Double {
            sorted.isEmpty ? 0 : sorted[min(sorted.count - 1, Int((p * Double(sorted.count)).rounded(.up)) - 1 < 0 ? 0 : Int((p * Double(sorted.count)).rounded(.up)) - 1)]
        }
        let object: [String: Any] = [
            "api": options.api, "concurrency": concurrency, "seconds": (wall * 1000).rounded() / 1000, "issued": sorted.count,
            "issued_per_second": (Double(sorted.count) / wall).rounded(), "errors": results.errors, "first_error": results.firstError ?? NSNull(),
            "p50_ms": percentile(0.50), "p90_ms": percentile(0.90), "p99_ms": percentile(0.99), "max_ms": sorted.last ?? 0,
        ]
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data()
        return String(decoding: data, as: UTF8.self)
    }
}

/// A shared request counter, so workers spread over the pre-generated CSRs and tokens.
final class Counter: Sendable {
    private let value = Atomic<Int>(0)
    func next() -> Int { value.wrappingAdd(1, ordering: .relaxed).oldValue }
}
