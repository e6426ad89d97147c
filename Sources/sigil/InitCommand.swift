import ArgumentParser
import Foundation
import SigilCore
import SigilCrypto
import SigilFiles
import SigilStore
import Logging

struct InitCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "init",
        abstract:
            "Create a CA in the data directory: key-encryption key, store, root (or imported upstream CA) and intermediate."
    )

    @OptionGroup var data: DataDirectoryOption
    @Option(help: "SPIFFE trust domain.") var trustDomain: String = "cluster.local"
    @Option(help: "Authority key type: ec-p256, ec-p384, rsa-2048, rsa-3072, rsa-4096, ed25519.") var keyType: String =
        "ec-p256"
    @Option(help: "Root lifetime.") var rootTTL: String = "365d"
    @Option(help: "Intermediate lifetime.") var intermediateTTL: String = "48h"
    @Option(help: "Upstream CA certificate (PEM) to chain Sigil's intermediates to, instead of a Sigil root.")
    var upstreamCert: String?
    @Option(help: "Private key (PEM) of the upstream CA certificate.") var upstreamKey: String?

    func run() async throws {
        guard let algorithm = KeyAlgorithm(configurationName: keyType) else {
            throw ValidationError(
                "--key-type \(keyType) is not one of ec-p256, ec-p384, rsa-2048, rsa-3072, rsa-4096, ed25519")
        }
        let configuration = AuthorityConfiguration(
            trustDomain: try TrustDomain(trustDomain), keyAlgorithm: algorithm,
            rootLifetime: try parseDuration(rootTTL, flag: "--root-ttl"),
            intermediateLifetime: try parseDuration(intermediateTTL, flag: "--intermediate-ttl"))
        try configuration.validate(leafPolicy: IssuancePolicy())
        var upstream: SigningIdentity? = nil
        switch (upstreamCert, upstreamKey) {
        case (nil, nil): break
        case (let cert?, let key?):
            upstream = SigningIdentity(
                certificate: try Certificate(pem: readFile(cert, what: "upstream certificate")),
                key: try PrivateKey(pem: String(decoding: try SecureFile.readPrivate(key), as: UTF8.self)))
        default: throw ValidationError("--upstream-cert and --upstream-key go together")
        }
        if let upstream {
            // Refuse a bad upstream before anything is written, so the directory stays initialisable.
            try CertificateAuthority.checkUpstream(
                upstream, trustDomain: configuration.trustDomain, at: SystemClock().now)
        }
        let directory = DataDirectory(path: data.dataDir)
        let createdFiles = !directory.isInitialized && data.storeLocation == "sqlite"
        let store = try await data.openStore(create: true)
        guard try await store.authorities().isEmpty else {
            throw CLIError(
                "conflict", "\(data.dataDir) already holds a Sigil CA; use `sigil inspect --data-dir \(data.dataDir)`")
        }
        do {
            try await store.saveAuthorityConfiguration(configuration)
            let authority = CertificateAuthority(
                store: store, configuration: configuration, policy: IssuancePolicy(), clock: SystemClock())
            try await authority.bootstrap(upstream: upstream)
        } catch {
            if createdFiles {
                for file in [directory.databasePath, directory.databasePath + "-wal", directory.databasePath + "-shm"] {
                    try? FileManager.default.removeItem(atPath: file)
                }
            }
            throw error
        }
        let ca = try await LocalCA.open(data)
        try await ca.writeBundlePEM()
        let authorities = try await ca.authority.snapshot().authorities
        print("Initialised Sigil CA for trust domain \(configuration.trustDomain) in \(data.dataDir)")
        for record in authorities.records {
            print(
                "  \(record.role.rawValue.padding(toLength: 12, withPad: " ", startingAt: 0)) \(record.id)  \(record.state.rawValue)  until \(Format.date(record.notAfter))\(record.isUpstream ? "  (upstream)" : "")"
            )
        }
        print("Trust bundle: \(directory.bundlePath)")
    }
}
