import ArgumentParser
import Foundation
import Logging
import ServiceLifecycle
import SigilAgent
import SigilCore
import SigilCrypto

struct AgentCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "agent",
        abstract:
            "Obtain and keep renewing one X.509-SVID for this workload; the private key never leaves this process.",
        discussion: """
            Serves the SPIFFE Workload API and Envoy SDS on the unix socket --socket (0660; clients find it through \
            SPIFFE_ENDPOINT_SOCKET=unix://PATH) and/or writes svid.pem (leaf + intermediates), svid.key (PKCS#8, 0600) \
            and bundle.pem atomically into --out-dir. Renews at half-life ± jitter, retries with backoff while keeping \
            the current certificate, and renews at once when /v1/authorities shows its chain tainted. --once exits 0 \
            after the first write (init-container mode).
            """)

    @Option(help: "Sigil server URL.") var server: String
    @Option(help: "Projected service-account token file (re-read on every attempt).") var tokenFile: String
    @Option(help: "Output directory for svid.pem, svid.key and bundle.pem.") var outDir: String?
    @Option(help: "Unix socket serving the SPIFFE Workload API and Envoy SDS.") var socket: String?
    @Option(help: "Comma-separated uids allowed on --socket (default: any process that can open it).")
    var allowedUids: String?
    @Option(help: "Trust bundle (PEM) that authenticates the server.") var caBundle: String
    @Flag(help: "Exit after the first successful write.") var once = false
    @Option(help: "Key type: ec-p256, ec-p384, rsa-2048, rsa-3072, rsa-4096, ed25519.") var keyType: String = "ec-p256"
    @Option(help: "Fraction of the lifetime after which to renew.") var renewFraction: Double = 0.5
    @Option(help: "Relative jitter around the renewal point (±).") var jitter: Double = 0.1
    @Option(help: "How often to poll the server's authorities for taint and bundle changes.") var pollInterval: String =
        "10s"
    @Option(help: "Shell command to run after each successful write.") var onRotate: String?
    @Option(help: "With --once: give up after this long.") var timeout: String = "30s"
    @Option(help: "Log level.") var logLevel: String = "info"

    func run() async throws {
        guard let level = Logger.Level(rawValue: logLevel) else {
            throw CLIError("configuration_invalid", "log level \(logLevel) is not known")
        }
        LoggingSystem.bootstrap(LineLogHandler.factory(level: level))
        guard let algorithm = KeyAlgorithm(configurationName: keyType) else {
            throw CLIError("configuration_invalid", "--key-type \(keyType) is not known")
        }
        // The token travels to the server: never in clear text.
        guard let url = URLComponents(string: server), url.scheme?.lowercased() == "https", url.host?.isEmpty == false
        else {
            throw CLIError("configuration_invalid", "--server must be an https:// URL")
        }
        guard outDir != nil || socket != nil else {
            throw CLIError("configuration_invalid", "give --socket, --out-dir or both")
        }
        if once && (socket != nil || outDir == nil) {
            throw CLIError(
                "configuration_invalid", "--once writes --out-dir and exits: it needs --out-dir, not --socket")
        }
        let allowedUIDs = try allowedUids.map { list in
            try Set(
                list.split(separator: ",").map { item in
                    guard let uid = UInt32(item.trimmingCharacters(in: .whitespaces)) else {
                        throw CLIError("configuration_invalid", "--allowed-uids: \(item) is not a uid")
                    }
                    return uid
                })
        }
        if allowedUIDs != nil && socket == nil {
            throw CLIError("configuration_invalid", "--allowed-uids needs --socket")
        }
        let configuration = AgentConfiguration(
            serverURL: server, tokenFile: tokenFile, outputDirectory: outDir, caBundle: caBundle, once: once,
            keyAlgorithm: algorithm,
            schedule: RenewalSchedule(fraction: renewFraction, jitter: jitter),
            pollInterval: try parseDuration(pollInterval, flag: "--poll-interval"),
            onRotate: onRotate, onceTimeout: try parseDuration(timeout, flag: "--timeout"))
        let logger = Logger(label: "sigil-agent")
        let clock = SystemClock()
        let agent = AgentService(configuration: configuration, clock: clock, logger: logger)
        if once {
            do {
                try await agent.fetchFirst()
                await agent.shutdown()
            } catch let error as AgentError {
                await agent.shutdown()
                throw CLIError(error.code, error.reason)
            }
            return
        }
        // The socket first: on shutdown the agent stops first and ends the socket's streams.
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = []
        if let socket {
            do {
                try AgentSocket.prepare(socket)
            } catch let error as AgentError {
                throw CLIError(error.code, error.reason)
            }
            services.append(
                .init(
                    service: AgentSocket(
                        path: socket, allowedUIDs: allowedUIDs, feed: agent.feed, clock: clock, logger: logger)))
        }
        services.append(.init(service: agent))
        var group = ServiceGroupConfiguration(
            services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        // A client that stopped reading cannot hold the agent up: what is still open after 10 s is cancelled.
        group.maximumGracefulShutdownDuration = .seconds(10)
        try await ServiceGroup(configuration: group).run()
    }
}
