import ArgumentParser
import Foundation
import SigilAPIModels
import SigilCore
import SigilCrypto
import SigilServer
import SigilStore

struct InspectCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect", abstract: "Show the trust chain, or explain one certificate.",
        subcommands: [InspectTreeCommand.self, InspectCertCommand.self], defaultSubcommand: InspectTreeCommand.self)
}

struct InspectTreeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tree", abstract: "Authorities as a tree: state, key, fingerprints, validity, live certificates.")

    @OptionGroup var data: DataDirectoryOption
    @Option(
        help:
            "A running server's URL (https://host:port): show its GET /v1/authorities instead of reading --data-dir (no live counts)."
    )
    var server: String?
    @Option(help: "PEM roots to verify --server with. [default: <data dir>/bundle.pem]") var caBundle: String?
    @Flag(help: "Print JSON.") var json = false

    func run() async throws {
        let response: AuthoritiesResponse
        let now = SystemClock().now
        if let server {
            response = try await Self.fetch(server, bundle: caBundle ?? data.dataDir + "/bundle.pem")
        } else {
            let ca = try await LocalCA.open(data)
            let snapshot = try await ca.authority.snapshot()
            let counts = try await ca.store.liveCounts(at: now)
            response = AuthoritiesResponse(
                trustDomain: ca.configuration.trustDomain.name, bundleSequence: snapshot.bundleSequence(at: now),
                authorities: AuthorityView.all(snapshot.authorities, liveCounts: counts, now: now))
        }
        if json { return print(try Format.json(response)) }
        let views = response.authorities
        print(
            "Trust domain \(response.trustDomain)  ·  bundle sequence \(response.bundleSequence)  ·  \(Format.date(now))\(server.map { "  ·  from \($0)" } ?? "")"
        )
        func show(_ view: AuthorityView, indent: String) {
            let marker = indent.isEmpty ? "" : "└─ "
            print(
                "\(indent)\(marker)\(view.id)  [\(view.role), \(view.state)\(view.upstream ? ", upstream" : "")]  \(view.keyType)"
            )
            let pad = indent + (indent.isEmpty ? "   " : "      ")
            print("\(pad)subject   \(view.subject)")
            let left =
                (view.secondsLeft ?? Timestamp.parse(view.notAfter).map { Int64($0.timeIntervalSince(now)) }).map {
                    $0 > 0 ? Duration.seconds($0).humanReadable + " left" : "expired"
                } ?? ""
            print("\(pad)valid     \(view.notBefore) → \(view.notAfter)  (\(left))")
            print("\(pad)sha256    \(Format.fingerprint(view.sha256Fingerprint))")
            print(
                "\(pad)key       sha256 \(view.publicKeySHA256)\(view.keyStored == false ? "  (private key erased: signs nothing)" : "")"
            )
            if view.role == "intermediate", let live = view.liveCertificates {
                print("\(pad)live      \(live) certificate(s)")
            }
            for child in views where child.parentID == view.id && child.id != view.id {
                show(child, indent: pad)
            }
        }
        for root in views where root.parentID == nil { show(root, indent: "") }
    }

    /// `GET <server>/v1/authorities`, verified against `bundle`.
    static func fetch(_ server: String, bundle: String) async throws -> AuthoritiesResponse {
        guard server.lowercased().hasPrefix("https://") else {
            throw CLIError("configuration_invalid", "--server \(server) is not an https:// URL")
        }
        guard let trust = try? String(contentsOfFile: bundle, encoding: .utf8) else {
            throw CLIError("not_found", "cannot read the CA bundle \(bundle) (set --ca-bundle)")
        }
        let client: HTTPSClient
        do {
            client = try HTTPSClient(trust: trust)
        } catch {
            throw CLIError("configuration_invalid", "\(bundle) holds no PEM certificates")
        }
        let base = server.hasSuffix("/") ? String(server.dropLast()) : server
        let answer: HTTPSResponse
        do {
            answer = try await client.perform("GET", base + "/v1/authorities", timeout: .seconds(30))
        } catch {
            throw CLIError("unavailable", "\(server) did not answer: \(error)")
        }
        guard answer.status == 200 else {
            throw CLIError("unavailable", "\(server)/v1/authorities answered HTTP \(answer.status)")
        }
        do {
            return try JSONDecoder().decode(AuthoritiesResponse.self, from: Data(answer.body))
        } catch {
            throw CLIError("bad_response", "\(server)/v1/authorities is not an authorities document")
        }
    }
}

struct InspectCertCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cert",
        abstract:
            "Explain a certificate (PEM chain, leaf first) and say whether and why it verifies against the current bundle.",
        discussion: "Exits 0 when the certificate verifies now, 1 when it does not.")

    @OptionGroup var data: DataDirectoryOption
    @Argument(help: "PEM file: the leaf, optionally followed by its intermediates.") var file: String
    @Flag(help: "Print JSON.") var json = false

    struct Report: Encodable {
        let subject: String
        let issuer: String
        let serial: String
        let san: [String]
        let not_before: Date
        let not_after: Date
        let key_type: String
        let key_usage: [String]
        let extended_key_usage: [String]
        let is_ca: Bool
        let sha256_fingerprint: String
        let issuing_authority: String?
        let issuing_authority_state: String?
        let verifies: Bool
        let reason: String
    }

    func run() async throws {
        let chain = try Certificate.parseChain(pem: readFile(file, what: "certificate"))
        guard let leaf = chain.first else { throw CLIError("csr_invalid", "\(file) holds no CERTIFICATE block") }
        let ca = try await LocalCA.open(data)
        let now = ca.clock.now
        let authorities = try await ca.authority.snapshot().authorities
        let issuer = authorities.records.first {
            $0.certificate.subjectNameDER == leaf.issuerNameDER
                && ($0.certificate.subjectKeyIdentifier == leaf.authorityKeyIdentifier
                    || leaf.authorityKeyIdentifier == nil)
        }
        let known = authorities.records.filter { $0.role == .intermediate }.map(\.certificate)
        let roots = authorities.bundleRoots(at: now).map(\.certificate)
        let revokedIntermediates = authorities.records.filter { $0.role == .intermediate && $0.state == .revoked }
        var verifies = false
        var reason: String
        switch try ChainVerifier.verify(leaf, intermediates: Array(chain.dropFirst()) + known, roots: roots, at: now) {
        case .valid:
            verifies = true
            reason = "chains to a root in the current bundle"
        case .invalid(let why, let depth):
            reason = "\(why) (at depth \(depth))"
        }
        if verifies, let issuer, issuer.state == .tainted || issuer.state == .revoked {
            verifies = issuer.state != .revoked
            reason = "issued by \(issuer.state.rawValue) authority \(issuer.id)"
        }
        if verifies, revokedIntermediates.contains(where: { chain.contains($0.certificate) }) {
            verifies = false
            reason = "chain contains a revoked intermediate"
        }
        let report = Report(
            subject: leaf.subject.description, issuer: leaf.issuer.description, serial: leaf.serial.hex,
            san: leaf.subjectAlternativeNames?.value.map(\.description) ?? [], not_before: leaf.notBefore,
            not_after: leaf.notAfter,
            key_type: leaf.publicKey.algorithm.description, key_usage: leaf.keyUsage?.value.names ?? [],
            extended_key_usage: leaf.extendedKeyUsage?.value.map(\.description) ?? [],
            is_ca: leaf.basicConstraints?.value.isCA ?? false, sha256_fingerprint: leaf.sha256Fingerprint,
            issuing_authority: issuer?.id, issuing_authority_state: issuer?.state.rawValue, verifies: verifies,
            reason: reason)
        if json {
            print(try Format.json(report))
        } else {
            print("subject      \(report.subject.isEmpty ? "(empty)" : report.subject)")
            print("issuer       \(report.issuer)")
            print("serial       \(report.serial)")
            print("SAN          \(report.san.joined(separator: ", "))")
            print(
                "valid        \(Format.date(leaf.notBefore)) → \(Format.date(leaf.notAfter))  (\(Format.timeLeft(until: leaf.notAfter, from: now)))"
            )
            print("key          \(report.key_type)")
            print(
                "key usage    \(report.key_usage.joined(separator: ", "))  ·  EKU \(report.extended_key_usage.joined(separator: ", "))  ·  CA \(report.is_ca)"
            )
            print("sha256       \(Format.fingerprint(report.sha256_fingerprint))")
            print(
                "authority    \(issuer.map { "\($0.id) (\($0.state.rawValue))" } ?? "not one of this CA's authorities")"
            )
            print("verifies     \(verifies ? "yes" : "no"): \(reason)")
        }
        if !verifies { throw ExitCode(1) }
    }
}
