import Foundation
import SigilCore
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
    /// sigil or cfssl.
    let api: String

    /// Runs a pass over `proxies`; `sessions` (by proxy index) are offered when given and refreshed.
    func pass(name: String, proxies: [Proxy], concurrency: Int, sessions: SessionTable?) -> String {
        let expected = LoadGenerator.expectedStatus(api: api)
        let next = Atomic<Int>(0)
        let total = Mutex<(measurement: Measurement, resumed: Int)>((Measurement(), 0))
        let cpu0 = serverCPU()
        let started = ContinuousClock.now
        let group = DispatchGroup()
        for _ in 0..<concurrency {
            group.enter()
            let thread = Thread {
                defer { group.leave() }
                var measurement = Measurement()
                var resumed = 0
                func failed(_ why: String) {
                    measurement.errors += 1
                    measurement.firstError = measurement.firstError ?? why
                }
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
                        guard response.status == expected else {
                            failed(
                                "HTTP \(response.status): \(String(decoding: response.body.prefix(200), as: UTF8.self))"
                            )
                            continue
                        }
                        measurement.latencies.append((ContinuousClock.now - begin).timeInterval * 1000)
                        if response.resumed { resumed += 1 }
                        if let session = response.session { sessions?.set(index, session) }
                    } catch {
                        failed("\(error)")
                    }
                }
                total.withLock {
                    $0.measurement.merge(measurement)
                    $0.resumed += resumed
                }
            }
            thread.stackSize = 256 * 1024
            thread.start()
        }
        group.wait()
        var (measurement, resumed) = total.withLock { $0 }
        measurement.wall = (ContinuousClock.now - started).timeInterval
        let cpu1 = serverCPU()
        var object = measurement.fields(api: api, concurrency: concurrency)
        object["pass"] = name
        object["proxies"] = proxies.count
        object["resumed"] = resumed
        if let cpu0, let cpu1, !measurement.latencies.isEmpty {
            object["server_cpu_us_per_issuance"] = ((cpu1 - cpu0) / Double(measurement.latencies.count)).rounded()
        }
        return Measurement.encode(object)
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
