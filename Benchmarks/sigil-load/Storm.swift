import Foundation
import SigilCrypto
import Synchronization

/// The startup storm (`sigil-load --storm`): N proxies, each with its own token and its own fresh key and CSR
/// (made before the clock starts), released at once through `concurrency` worker threads. Every proxy opens a
/// new TLS connection, sends one issuance request and closes it; the first pass makes full handshakes, the
/// second (the renewal shape) brings the same proxies back offering the TLS session each got the first time.
///
/// The workers block on OpenSSL (the system library's client, which can resume sessions; swift-nio-ssl cannot),
/// one thread per concurrent proxy. The server's own CPU is read from /proc/PID/stat around each pass, so the
/// figures do not depend on how much CPU the load generator takes.
///
/// Prints one JSON line per pass.
struct Storm {
    struct Proxy {
        let token: String
        let body: [UInt8]
    }

    let url: String
    let client: HTTPSClient
    let serverPID: Int32?
    let expected: Int
    let cfssl: Bool

    /// Runs a pass over `proxies`; `sessions` (by proxy index) are offered when given and refreshed.
    func pass(
        name: String, proxies: [Proxy], concurrency: Int, sessions: SessionTable?
    ) -> String {
        let next = Atomic<Int>(0)
        let results = Mutex<(latencies: [Double], errors: Int, firstError: String?, resumed: Int)>(([], 0, nil, 0))
        let cpu0 = serverCPU()
        let started = ContinuousClock.now
        let group = DispatchGroup()
        for _ in 0..<concurrency {
            group.enter()
            let thread = Thread {
                defer { group.leave() }
                var latencies: [Double] = []
                var errors = 0
                var firstError: String? = nil
                var resumed = 0
                while true {
                    let index = next.wrappingAdd(1, ordering: .relaxed).oldValue
                    guard index < proxies.count else { break }
                    let proxy = proxies[index]
                    let begin = ContinuousClock.now
                    var headers = [("Content-Type", "application/json")]
                    if !proxy.token.isEmpty { headers.append(("Authorization", "Bearer \(proxy.token)")) }
                    do {
                        let response = try client.send(
                            "POST", url, headers: headers, body: proxy.body, session: sessions?.get(index),
                            timeout: .seconds(60))
                        if response.status == expected {
                            let elapsed = ContinuousClock.now - begin
                            latencies.append(
                                Double(elapsed.components.seconds) * 1000 + Double(elapsed.components.attoseconds)
                                    / 1e15)
                            if response.resumed { resumed += 1 }
                            if let session = response.session { sessions?.set(index, session) }
                        } else {
                            errors += 1
                            firstError =
                                firstError
                                ?? "HTTP \(response.status): \(String(decoding: response.body.prefix(200), as: UTF8.self))"
                        }
                    } catch {
                        errors += 1
                        firstError = firstError ?? "\(error)"
                    }
                }
                results.withLock {
                    $0.latencies += latencies
                    $0.errors += errors
                    $0.firstError = $0.firstError ?? firstError
                    $0.resumed += resumed
                }
            }
            thread.stackSize = 256 * 1024
            thread.start()
        }
        group.wait()
        let elapsed = ContinuousClock.now - started
        let wall = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        let cpu1 = serverCPU()
        let outcome = results.withLock { $0 }
        let sorted = outcome.latencies.sorted()
        func percentile(_ p: Double) -> Double {
            sorted.isEmpty ? 0 : sorted[max(0, min(sorted.count - 1, Int((p * Double(sorted.count)).rounded(.up)) - 1))]
        }
        var object: [String: Any] = [
            "pass": name, "api": cfssl ? "cfssl" : "sigil", "concurrency": concurrency, "proxies": proxies.count,
            "seconds": (wall * 1000).rounded() / 1000, "issued": sorted.count,
            "issued_per_second": (Double(sorted.count) / wall).rounded(), "errors": outcome.errors,
            "first_error": outcome.firstError ?? NSNull(), "resumed": outcome.resumed,
            "p50_ms": percentile(0.50), "p99_ms": percentile(0.99), "max_ms": sorted.last ?? 0,
        ]
        if let cpu0, let cpu1, !sorted.isEmpty {
            object["server_cpu_us_per_issuance"] = ((cpu1 - cpu0) / Double(sorted.count)).rounded()
        }
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data()
        return String(decoding: data, as: UTF8.self)
    }

    /// The server's user + system CPU so far, in microseconds (nil without --server-pid).
    private func serverCPU() -> Double? {
        guard let serverPID,
            let stat = try? String(contentsOfFile: "/proc/\(serverPID)/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        else { return nil }
        // Fields after the command name: state is field 3, utime 14, stime 15.
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 13, let user = Double(fields[11]), let system = Double(fields[12]) else { return nil }
        return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK))) * 1e6
    }
}

/// The session each proxy got last time, by proxy index.
final class SessionTable: Sendable {
    private let sessions: Mutex<[TLSSession?]>
    init(count: Int) { sessions = Mutex(Array(repeating: nil, count: count)) }
    func get(_ index: Int) -> TLSSession? { sessions.withLock { $0[index] } }
    func set(_ index: Int, _ session: TLSSession) { sessions.withLock { $0[index] = session } }
}
