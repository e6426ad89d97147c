import ArgumentParser
import Foundation
import SigilAPIModels
import SigilCore
import SigilServer

struct BundleCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bundle", abstract: "Print the trust bundle: roots as PEM, or the SPIFFE bundle (JWK set).")

    enum OutputFormat: String, ExpressibleByArgument { case pem, spiffe }

    @OptionGroup var data: DataDirectoryOption
    @Option(help: "pem or spiffe.") var format: OutputFormat = .pem
    @Option(help: "spiffe_refresh_hint to advertise.") var refreshHint: String = "5m"

    func run() async throws {
        let ca = try await LocalCA.open(data)
        let snapshot = try await ca.authority.snapshot()
        let roots = snapshot.authorities.bundleRoots(at: ca.clock.now).map(\.certificate)
        switch format {
        case .pem:
            print(SPIFFEBundle.pem(roots), terminator: "")
        case .spiffe:
            let bundle = SPIFFEBundle(
                roots: roots, sequence: snapshot.bundleSequence(at: ca.clock.now),
                refreshHint: try parseDuration(refreshHint, flag: "--refresh-hint"))
            print(String(decoding: try bundle.json(), as: UTF8.self))
        }
    }
}
