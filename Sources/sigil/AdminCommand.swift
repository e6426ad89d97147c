import ArgumentParser
import AsyncHTTPClient
import Foundation
import NIOCore
import NIOFoundationCompat

struct AdminCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "admin", abstract: "Break-glass and rotation control over the server's admin socket.",
        subcommands: [AdminStatusCommand.self, AdminRotateCommand.self, AdminTaintCommand.self, AdminRevokeCommand.self])
}

struct AdminSocketOption: ParsableArguments {
    @Option(help: "Admin socket of the running server.") var socket: String = "pki/admin.sock"

    /// Sends one request to the admin socket; returns the JSON body or throws the server's problem as one line.
    func call(_ path: String, body: [String: Any]? = nil) async throws -> [String: Any] {
        guard FileManager.default.fileExists(atPath: socket) else {
            throw CLIError("not_found", "no admin socket at \(socket): is `sigil serve` running with this data directory?")
        }
        // A socket file left by a server that was killed refuses connections; the HTTP client would retry
        // until its deadline. Say so at once instead.
        guard Self.accepts(socket) else {
            throw CLIError("unavailable", "nothing listens on \(socket): `sigil serve` is not running (the file is left from a stopped server)")
        }
        let encoded = socket.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? socket
        var request = HTTPClientRequest(url: "http+unix://\(encoded)\(path)")
        if let body {
            request.method = .POST
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(bytes: try JSONSerialization.data(withJSONObject: body)))
        }
        let response: HTTPClientResponse
        do {
            response = try await HTTPClient.shared.execute(request, timeout: .seconds(60))
        } catch {
            throw CLIError("unavailable", "the server on \(socket) did not answer: \(error)")
        }
        let data = Data(buffer: try await response.body.collect(upTo: 4 * 1024 * 1024))
        let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] ?? [:]
        guard (200..<300).contains(Int(response.status.code)) else {
            throw CLIError(object["code"] as? String ?? "admin_error", object["detail"] as? String ?? "HTTP \(response.status.code)")
        }
        return object
    }

    /// Whether a unix stream socket at `path` accepts a connection.
    static func accepts(_ path: String) -> Bool {
        let fd = Foundation.socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else { return false }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        return result == 0
    }
}

func printJSON(_ object: [String: Any]) throws {
    let data = try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
    print(String(decoding: data, as: UTF8.self))
}

struct AdminStatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "status", abstract: "Authorities, states, lease holder, live certificate counts.")
    @OptionGroup var admin: AdminSocketOption
    @Flag(help: "Print JSON.") var json = false

    func run() async throws {
        let status = try await admin.call("/admin/status")
        if json { return try printJSON(status) }
        print("trust domain \(status["trust_domain"] ?? "?")  ·  bundle sequence \(status["bundle_sequence"] ?? "?")  ·  rotation lease: \(status["lease_holder"] as? String ?? "none")")
        for authority in status["authorities"] as? [[String: Any]] ?? [] {
            let id = authority["id"] as? String ?? "?"
            print("\(id.padding(32))\((authority["state"] as? String ?? "?").padding(10))until \(authority["not_after"] as? String ?? "?")  live \(authority["live_certificates"] ?? 0)")
        }
    }
}

struct AdminRotateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rotate", abstract: "Prepare and activate a successor now (break-glass).",
        discussion: "--taint-old makes agents replace certificates under the old authority at once; --dry-run changes nothing and shows the blast radius.")
    enum Role: String, ExpressibleByArgument { case intermediate, root }
    @OptionGroup var admin: AdminSocketOption
    @Argument(help: "intermediate or root") var role: Role
    @Flag(help: "Mark the replaced authority tainted.") var taintOld = false
    @Flag(help: "Change nothing; print the blast radius.") var dryRun = false
    @Option(help: "Why (recorded in the audit log).") var reason: String
    @Flag(help: "Print JSON.") var json = false

    func run() async throws {
        let outcome = try await admin.call(
            "/admin/rotate", body: ["role": role.rawValue, "taint_old": taintOld, "dry_run": dryRun, "reason": reason])
        if json { return try printJSON(outcome) }
        if dryRun {
            print("dry run: rotating the \(role.rawValue) would replace \((outcome["replaced"] as? [String] ?? []).joined(separator: ", "))")
        } else {
            print("activated \((outcome["activated"] as? [String] ?? []).joined(separator: ", ")); \(taintOld ? "tainted" : "retired") \((outcome["replaced"] as? [String] ?? []).joined(separator: ", "))")
        }
        printBlastRadius(outcome)
    }
}

/// The blast radius lines `rotate` and `taint` print.
func printBlastRadius(_ outcome: [String: Any]) {
    let radius = outcome["blast_radius"] as? [String: Any] ?? [:]
    let identities = radius["identities"] as? [String] ?? []
    print("blast radius: \(radius["live_certificates"] ?? 0) live certificate(s), \(identities.count) identit\(identities.count == 1 ? "y" : "ies")")
    for identity in identities { print("  \(identity)") }
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
        let outcome = try await admin.call("/admin/taint", body: ["authority_id": authorityID, "dry_run": dryRun, "reason": reason])
        if json { return try printJSON(outcome) }
        let role = outcome["role"] as? String ?? "authority"
        if dryRun {
            print("dry run: tainting \(role) \(authorityID) (\(outcome["previous_state"] as? String ?? "?")) would affect")
        } else {
            print("tainted \(role) \(authorityID) (was \(outcome["previous_state"] as? String ?? "?"))")
        }
        printBlastRadius(outcome)
    }
}

struct AdminRevokeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "revoke", abstract: "Revoke a tainted, non-active authority, or one workload certificate by serial.",
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
        let isAuthority = target.hasPrefix("root-") || target.hasPrefix("intermediate-")
        let body: [String: Any] = isAuthority ? ["authority_id": target, "reason": reason] : ["serial": target, "reason": reason]
        let result = try await admin.call("/admin/revoke", body: body)
        if json { return try printJSON(result) }
        if isAuthority {
            print("revoked \(result["role"] as? String ?? "") \(result["id"] as? String ?? target)")
            return
        }
        print("revoked certificate \(result["serial"] as? String ?? target) of \(result["spiffe_id"] as? String ?? "?") (issued by \(result["authority_id"] as? String ?? "?"), valid until \(result["not_after"] as? String ?? "?"))")
        if result["expired"] as? Bool == true {
            print("it has already expired: nothing to list in a CRL")
        } else if result["in_crl"] as? Bool == true {
            print("listed in the CRL of \(result["authority_id"] as? String ?? "its intermediate") until it expires")
        } else {
            print("""
                not in any CRL: its intermediate no longer holds a key (its final CRL is frozen). The certificate can no longer \
                renew; relying parties accept it until it expires unless you also taint and revoke \(result["authority_id"] as? String ?? "its intermediate").
                """)
        }
    }
}
