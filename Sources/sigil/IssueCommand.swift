import ArgumentParser
import Foundation
import SigilAPIModels
import SigilCore
import SigilServer
import SigilCrypto
import SigilFiles
import SigilStore

struct IssueCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "issue",
        abstract: "Issue an X.509-SVID offline from the local store (bootstrap and break-glass).",
        discussion: "Writes the chain (leaf first, then intermediates) as PEM; the CSR's key never reaches Sigil.")

    @OptionGroup var data: DataDirectoryOption
    @Option(help: "PKCS#10 CSR, PEM or DER.") var csr: String
    @Option(name: .customLong("spiffe-id"), help: "SPIFFE ID to issue, in this CA's trust domain.") var spiffeID: String
    @Option(help: "Leaf lifetime (default 1h, at most 24h).") var ttl: String?
    @Option(help: "Write the chain here instead of stdout.") var out: String?
    @Flag(help: "Print the result as JSON (the HTTP API's issuance response).") var json = false

    func run() async throws {
        let ca = try await LocalCA.open(data)
        let identity = try SPIFFEID(parsing: spiffeID)
        guard identity.trustDomain == ca.configuration.trustDomain else {
            throw CAError(
                .identityMismatch, reason: "\(identity) is outside trust domain \(ca.configuration.trustDomain)")
        }
        guard let bytes = FileManager.default.contents(atPath: csr) else {
            throw CLIError("not_found", "cannot read CSR \(csr)")
        }
        let request: CertificateSigningRequest
        do {
            let text = String(decoding: bytes, as: UTF8.self)
            request =
                text.contains("-----BEGIN")
                ? try CertificateSigningRequest(pem: text) : try CertificateSigningRequest(der: Array(bytes))
        } catch {
            throw CAError.csrInvalid(reason: "\(csr) is not a PEM or DER PKCS#10 CSR")
        }
        let issued = try await ca.authority.issue(
            IssuanceRequest(
                csr: request, identity: identity, ttl: try ttl.map { try parseDuration($0, flag: "--ttl") }),
            requester: Requester(actor: "operator:cli"))
        let output: String
        if json {
            let roots = try await ca.authority.snapshot().authorities.bundleRoots(at: ca.clock.now).map(
                \.certificate.pem)
            output = try Format.json(IssuanceResponse(issued, trustBundle: roots)) + "\n"
        } else {
            output = issued.chainPEM.joined()
        }
        if let out {
            try SecureFile.write(Data(output.utf8), to: out, mode: 0o644)
            FileHandle.standardError.write(
                Data(
                    "issued \(issued.spiffeID) serial \(issued.serial) until \(Format.date(issued.notAfter)) → \(out)\n"
                        .utf8))
        } else {
            print(output, terminator: "")
        }
    }
}
