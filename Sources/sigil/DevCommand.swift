import ArgumentParser
import Foundation
import SigilCore
import SigilServer
import SigilTokens

struct DevCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dev", abstract: "Local-mode development helpers.", subcommands: [DevTokenCommand.self])
}

struct DevTokenCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "token",
        abstract:
            "Mint a Kubernetes-shaped projected service-account token from the local development issuer (local mode only)."
    )

    @OptionGroup var data: DataDirectoryOption
    @Option(help: "Kubernetes namespace.") var namespace: String
    @Option(name: .customLong("service-account"), help: "Service account name.") var serviceAccount: String
    @Option(help: "Audience (aud).") var audience: String = "sigil"
    @Option(help: "Token lifetime.") var ttl: String = "10m"
    @Option(help: "Print this many distinct tokens, one per line (for load tests).") var count: Int = 1
    @Option(
        help:
            "With --count: spread the tokens round-robin over this many service accounts, named <service-account>-0, -1, …"
    )
    var spread: Int = 1

    func run() async throws {
        guard spread >= 1 else { throw CLIError("configuration_invalid", "--spread must be at least 1") }
        let issuer = try LocalTokenIssuer.load(dataDirectory: data.dataDir, create: false)
        let lifetime = try parseDuration(ttl, flag: "--ttl")
        for index in 0..<max(1, count) {
            let account = spread == 1 ? serviceAccount : "\(serviceAccount)-\(index % spread)"
            print(
                try await issuer.mint(
                    identity: WorkloadIdentity(namespace: namespace, serviceAccount: account), audience: audience,
                    ttl: lifetime,
                    now: SystemClock().now))
        }
    }
}
