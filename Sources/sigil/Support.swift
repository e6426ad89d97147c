import Foundation
import SigilAPIModels
import SigilCore
import SigilServer
import SigilCrypto
import SigilFiles
import SigilStore
import Logging

/// An opened local CA: store, recorded configuration and the authority service on the system clock.
struct LocalCA {
    let directory: DataDirectory
    let store: any SigilStoreBackend
    let configuration: AuthorityConfiguration
    let authority: CertificateAuthority
    let clock: SystemClock

    static func open(_ options: DataDirectoryOption, policy: IssuancePolicy = IssuancePolicy()) async throws -> LocalCA
    {
        let path = options.dataDir
        let directory = DataDirectory(path: path)
        let store = try await options.openStore()
        guard let configuration = try await store.loadAuthorityConfiguration() else {
            throw CLIError(
                "not_found", "the store in \(path) was never initialised: run `sigil init --data-dir \(path)`")
        }
        let clock = SystemClock()
        let authority = CertificateAuthority(store: store, configuration: configuration, policy: policy, clock: clock)
        try await authority.reload()
        return LocalCA(
            directory: directory, store: store, configuration: configuration, authority: authority, clock: clock)
    }

    /// Rewrites `bundle.pem` (public, 0644) from the current roots.
    func writeBundlePEM() async throws {
        let roots = try await authority.snapshot().authorities.bundleRoots(at: clock.now).map(\.certificate)
        try SecureFile.write(Data(SPIFFEBundle.pem(roots).utf8), to: directory.bundlePath, mode: 0o644)
    }
}

enum Format {
    static func date(_ date: Date) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime]
        return formatter.string(from: date)
    }

    static func timeLeft(until date: Date, from now: Date) -> String {
        let seconds = Int64(date.timeIntervalSince(now))
        return seconds <= 0 ? "expired" : Duration.seconds(seconds).humanReadable + " left"
    }

    static func fingerprint(_ hex: String) -> String {
        stride(from: 0, to: hex.count, by: 2).map { offset -> String in
            let start = hex.index(hex.startIndex, offsetBy: offset)
            return String(hex[start..<hex.index(start, offsetBy: 2)])
        }.joined(separator: ":")
    }

    static func json(_ value: some Encodable) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .iso8601
        return String(decoding: try encoder.encode(value), as: UTF8.self)
    }
}

/// The logger of the offline commands: warnings and errors (a store that cannot be reached yet, with the
/// cause) as lines on stderr, so stdout keeps only the command's output.
func commandLogger() -> Logger {
    Logger(label: "sigil", factory: LineLogHandler.factory(level: .warning))
}

func readFile(_ path: String, what: String) throws -> String {
    guard let data = FileManager.default.contents(atPath: path) else {
        throw CLIError("not_found", "cannot read \(what) \(path)")
    }
    return String(decoding: data, as: UTF8.self)
}

func parseDuration(_ text: String, flag: String) throws -> Duration {
    guard let duration = Duration(parsing: text) else {
        throw CLIError("bad_request", "\(flag): \(text) is not a duration (e.g. 90s, 10m, 1h, 365d)")
    }
    guard duration > .zero else { throw CLIError("ttl_out_of_range", "\(flag) must be longer than 0s") }
    return duration
}
