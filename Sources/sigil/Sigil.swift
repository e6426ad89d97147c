import ArgumentParser
import Foundation
import SigilAgent
import SigilCore
import SigilCrypto
import SigilFiles
import SigilStore

@main
struct Sigil: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sigil",
        abstract: "Workload identity and certificate authority: SPIFFE X.509-SVIDs for a service mesh.",
        subcommands: [
            ServeCommand.self, InitCommand.self, IssueCommand.self, InspectCommand.self, BundleCommand.self,
            AuditCommand.self, AdminCommand.self, AgentCommand.self, DevCommand.self,
        ])

    static func main() async {
        // Everything Sigil creates (keys, database, sockets) is private to its user unless made public on purpose.
        umask(0o077)
        do {
            var command = try parseAsRoot()
            if var asyncCommand = command as? AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch {
            exit(withError: CLIError.wrap(error))
        }
    }
}

/// One clear line for stderr: the stable code and the reason.
struct CLIError: Error, CustomStringConvertible {
    let description: String

    /// `code: message`, the one-line shape of every failure.
    init(_ code: String, _ message: String) { description = "\(code): \(message)" }
    init(description: String) { self.description = description }

    /// Sigil's own errors become one `code: reason` line; ArgumentParser's (usage, help) pass through.
    static func wrap(_ error: any Error) -> any Error {
        switch error {
        case let error as CAError: return CLIError(error.code.rawValue, error.reason)
        case let error as StorageError: return CLIError(description: error.description)
        case let error as FileError: return CLIError(description: error.description)
        case let error as OpenSSLError: return CLIError(description: error.description)
        case let error as AgentError: return CLIError(error.code, error.reason)
        default: return error
        }
    }
}

/// `--data-dir` and `--store`, shared by every command that works on the store directly.
struct DataDirectoryOption: ParsableArguments {
    @Option(name: .long, help: "Data directory holding the store, key-encryption key and bundle.")
    var dataDir: String = "pki"
    @Option(
        name: .long,
        help: "Store: sqlite (in the data directory) or a postgres:// URL. [default: $SIGIL_STORE or sqlite]")
    var store: String?

    @Option(
        name: .long,
        help:
            "How long to keep trying to reach a PostgreSQL store, each failed attempt logged with its cause. [default: 30s]"
    )
    var storeConnectTimeout: String = "30s"

    var storeLocation: String {
        store ?? ProcessInfo.processInfo.environment["SIGIL_STORE"].flatMap { $0.isEmpty ? nil : $0 } ?? "sqlite"
    }

    /// Opens the store these options name (`create`: initialise the data directory first).
    func openStore(create: Bool = false) async throws -> any SigilStoreBackend {
        try await DataDirectory(path: dataDir).openStore(
            storeLocation, create: create, logger: commandLogger(),
            connectTimeout: try parseDuration(storeConnectTimeout, flag: "--store-connect-timeout"))
    }
}
