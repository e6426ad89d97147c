import ArgumentParser
import AsyncHTTPClient
import Foundation
import NIOCore
import NIOFoundationCompat
import SigilAPIModels
import SigilFiles

struct AdminCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "admin", abstract: "Break-glass and rotation control over the server's admin socket.",
        subcommands: [
            AdminStatusCommand.self, AdminRotateCommand.self, AdminTaintCommand.self, AdminRevokeCommand.self,
            AdminConsoleLoginCommand.self,
        ])
}

struct AdminSocketOption: ParsableArguments {
    @Option(help: "Admin socket of the running server.") var socket: String = "pki/admin.sock"

    /// POSTs `body` to the admin socket and decodes the answer as `Answer`; throws the server's problem as one line.
    func call<Answer: Decodable>(_ path: String, body: some Encodable, as type: Answer.Type) async throws -> Answer {
        try await send(path, body: try JSONEncoder().encode(body), as: type)
    }

    /// GETs `path` from the admin socket.
    func call<Answer: Decodable>(_ path: String, as type: Answer.Type) async throws -> Answer {
        try await send(path, body: nil, as: type)
    }

    private func send<Answer: Decodable>(_ path: String, body: Data?, as _: Answer.Type) async throws -> Answer {
        guard FileManager.default.fileExists(atPath: socket) else {
            throw CLIError(
                "not_found", "no admin socket at \(socket): is `sigil serve` running with this data directory?")
        }
        // A socket file left by a server that was killed refuses connections; the HTTP client would retry
        // until its deadline. Say so at once instead.
        guard UnixSocket.accepts(socket) else {
            throw CLIError(
                "unavailable",
                "nothing listens on \(socket): `sigil serve` is not running (the file is left from a stopped server)")
        }
        let encoded = socket.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? socket
        var request = HTTPClientRequest(url: "http+unix://\(encoded)\(path)")
        if let body {
            request.method = .POST
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(bytes: body))
        }
        let response: HTTPClientResponse
        do {
            response = try await HTTPClient.shared.execute(request, timeout: .seconds(60))
        } catch {
            throw CLIError("unavailable", "the server on \(socket) did not answer: \(error)")
        }
        let data = Data(buffer: try await response.body.collect(upTo: 4 * 1024 * 1024))
        guard (200..<300).contains(Int(response.status.code)) else {
            let problem = try? JSONDecoder().decode(Problem.self, from: data)
            throw CLIError(problem?.code ?? "admin_error", problem?.detail ?? "HTTP \(response.status.code)")
        }
        do {
            return try JSONDecoder().decode(Answer.self, from: data)
        } catch {
            throw CLIError("bad_response", "the server's answer to \(path) does not decode: \(error)")
        }
    }
}

func printJSON(_ value: some Encodable) throws {
    print(try Format.json(value))
}

struct AdminStatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status", abstract: "Authorities, states, lease holder, live certificate counts.")
    @OptionGroup var admin: AdminSocketOption
    @Flag(help: "Print JSON.") var json = false

    func run() async throws {
        let status = try await admin.call("/admin/status", as: AdminStatusResponse.self)
        if json { return try printJSON(status) }
        print(
            "trust domain \(status.trustDomain)  ·  bundle sequence \(status.bundleSequence)  ·  rotation lease: \(status.leaseHolder ?? "none")"
        )
        for authority in status.authorities {
            print(
                "\(authority.id.padding(32))\(authority.state.padding(10))until \(authority.notAfter)  live \(authority.liveCertificates ?? 0)"
            )
        }
    }
}

struct AdminConsoleLoginCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "console-login",
        abstract: "Print a one-time login URL for the trust console's operator pages.",
        discussion: """
            The URL (https://<first --tls-name>:<port>/ui/login#token=…) works once, within --ttl (at most 5m), on the \
            server that printed it; it becomes a session of 8 hours. Minting it is audited (admin_console_login), and \
            so are the login, the logout and every export.
            """)
    @OptionGroup var admin: AdminSocketOption
    @Option(help: "How long the URL may wait to be opened (at most 5m).") var ttl: String = "5m"
    @Option(help: "Why (recorded in the audit log).") var reason: String?
    @Flag(help: "Print JSON.") var json = false

    func run() async throws {
        let seconds = try parseDuration(ttl, flag: "--ttl").wholeSeconds
        let login = try await admin.call(
            "/admin/console-login", body: AdminConsoleLoginRequest(ttlSeconds: Int(seconds), reason: reason),
            as: AdminConsoleLoginResponse.self)
        if json { return try printJSON(login) }
        print(login.url)
        FileHandle.standardError.write(Data("valid once, until \(login.expiresAt)\n".utf8))
    }
}

struct AdminRotateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rotate", abstract: "Prepare and activate a successor now (break-glass).",
        discussion:
            "--taint-old makes agents replace certificates under the old authority at once; --dry-run changes nothing and shows the blast radius."
    )
    enum Role: String, ExpressibleByArgument { case intermediate, root }
    @OptionGroup var admin: AdminSocketOption
    @Argument(help: "intermediate or root") var role: Role
    @Flag(help: "Mark the replaced authority tainted.") var taintOld = false
    @Flag(help: "Change nothing; print the blast radius.") var dryRun = false
    @Option(help: "Why (recorded in the audit log).") var reason: String
    @Flag(help: "Print JSON.") var json = false

    func run() async throws {
        let outcome = try await admin.call(
            "/admin/rotate",
            body: AdminRotateRequest(role: role.rawValue, taintOld: taintOld, dryRun: dryRun, reason: reason),
            as: AdminRotateResponse.self)
        if json { return try printJSON(outcome) }
        if dryRun {
            print("dry run: rotating the \(role.rawValue) would replace \(outcome.replaced.joined(separator: ", "))")
        } else {
            print(
                "activated \(outcome.activated.joined(separator: ", ")); \(taintOld ? "tainted" : "retired") \(outcome.replaced.joined(separator: ", "))"
            )
        }
        printBlastRadius(outcome.blastRadius)
    }
}

/// The blast radius lines `rotate` and `taint` print.
func printBlastRadius(_ radius: BlastRadiusReport) {
    let count = radius.identities.count
    print("blast radius: \(radius.liveCertificates) live certificate(s), \(count) identit\(count == 1 ? "y" : "ies")")
    for identity in radius.identities { print("  \(identity)") }
}

struct AdminTaintCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "taint", abstract: "Mark a non-active authority (prepared or retired) suspected compromised.",
        discussion: """
            Agents holding certificates that chain to it renew at once, renewals by those certificates are refused, and its \
            private key (if still stored) is erased after its final CRL is signed. The active authority cannot be tainted: \
            `sigil admin rotate ROLE --taint-old` puts a successor in its place and taints it. Revoke it next with \
            `sigil admin revoke AUTHORITY_ID`.
            """)
    @OptionGroup var admin: AdminSocketOption
    @Argument(help: "Authority id (see sigil admin status).") var authorityID: String
    @Flag(help: "Change nothing; print the blast radius.") var dryRun = false
    @Option(help: "Why (recorded in the audit log).") var reason: String
    @Flag(help: "Print JSON.") var json = false

    func run() async throws {
        let outcome = try await admin.call(
            "/admin/taint", body: AdminTaintRequest(authorityID: authorityID, dryRun: dryRun, reason: reason),
            as: AdminTaintResponse.self)
        if json { return try printJSON(outcome) }
        if dryRun {
            print("dry run: tainting \(outcome.role) \(authorityID) (\(outcome.previousState)) would affect")
        } else {
            print("tainted \(outcome.role) \(authorityID) (was \(outcome.previousState))")
        }
        printBlastRadius(outcome.blastRadius)
    }
}

struct AdminRevokeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "revoke",
        abstract: "Revoke a tainted, non-active authority, or one workload certificate by serial.",
        discussion: """
            AUTHORITY_ID (root-… or intermediate-…): a revoked root leaves the bundle, a revoked intermediate enters its \
            root's CRL. SERIAL (hex, as `sigil inspect cert` and `sigil audit list` show it): the certificate can no longer \
            renew, and its intermediate's CRL lists it until it expires.
            """)
    @OptionGroup var admin: AdminSocketOption
    @Argument(help: "Authority id (see sigil admin status) or a certificate serial (hex).") var target: String
    @Option(help: "Why (recorded in the audit log).") var reason: String
    @Flag(help: "Print JSON.") var json = false

    func run() async throws {
        if target.hasPrefix("root-") || target.hasPrefix("intermediate-") {
            let revoked = try await admin.call(
                "/admin/revoke", body: AdminRevokeRequest(authorityID: target, reason: reason),
                as: AdminRevokedAuthority.self)
            if json { return try printJSON(revoked) }
            print("revoked \(revoked.role) \(revoked.id)")
            return
        }
        let revoked = try await admin.call(
            "/admin/revoke", body: AdminRevokeRequest(serial: target, reason: reason), as: AdminRevokedCertificate.self)
        if json { return try printJSON(revoked) }
        print(
            "revoked certificate \(revoked.serial) of \(revoked.spiffeID) (issued by \(revoked.authorityID), valid until \(revoked.notAfter))"
        )
        if revoked.expired {
            print("it has already expired: nothing to list in a CRL")
        } else if revoked.inCRL {
            print("listed in the CRL of \(revoked.authorityID) until it expires")
        } else {
            print(
                """
                not in any CRL: its intermediate no longer holds a key (its final CRL is frozen). The certificate can no longer \
                renew; relying parties accept it until it expires unless you also taint and revoke \(revoked.authorityID).
                """)
        }
    }
}
