import Foundation
import SigilAPIModels
import Testing

@testable import SigilAgent

@Suite("Agent taint detection")
struct TaintDetectionTests {
    /// The authorities response as the server sends it (decoded from JSON, as the agent does).
    static func authorities(intermediate: String, root: String) -> AuthoritiesResponse {
        func authority(
            _ id: String, _ role: String, _ state: String, _ parent: String?, _ keyID: String
        ) -> [String: Any] {
            [
                "id": id, "role": role, "state": state, "parent_id": parent as Any, "upstream": false,
                "subject": "CN=\(id)",
                "serial": "01", "key_type": "EC P-256", "sha256_fingerprint": "00", "public_key_sha256": "00",
                "subject_key_id": keyID, "not_before": "2026-01-01T00:00:00Z", "not_after": "2027-01-01T00:00:00Z",
            ]
        }
        let body: [String: Any] = [
            "trust_domain": "example.org", "bundle_sequence": 1,
            "authorities": [
                authority("root-1", "root", root, nil, "aa"),
                authority("intermediate-1", "intermediate", intermediate, "root-1", "bb"),
                authority("intermediate-2", "intermediate", "active", "root-1", "cc"),
            ],
        ]
        // A fixture that does not decode is a bug in the test itself.
        return try! JSONDecoder().decode(AuthoritiesResponse.self, from: JSONSerialization.data(withJSONObject: body))
    }

    static let held = AgentService.Held(
        notBefore: .distantPast, notAfter: .distantFuture, authorityKeyID: "bb", serial: "01")

    @Test("a certificate under an active chain is not tainted", arguments: ["active", "retired", "prepared"])
    func healthyChain(state: String) {
        #expect(AgentService.taint(of: Self.held, in: Self.authorities(intermediate: state, root: "active")) == nil)
    }

    @Test("a tainted or revoked issuer triggers renewal", arguments: ["tainted", "revoked"])
    func taintedIssuer(state: String) {
        #expect(AgentService.taint(of: Self.held, in: Self.authorities(intermediate: state, root: "active")) == state)
    }

    @Test("a tainted root above an untainted issuer triggers renewal")
    func taintedRoot() {
        #expect(
            AgentService.taint(of: Self.held, in: Self.authorities(intermediate: "retired", root: "tainted"))
                == "tainted")
    }

    @Test("an issuer the server does not list is not treated as tainted")
    func unknownIssuer() {
        let held = AgentService.Held(
            notBefore: .distantPast, notAfter: .distantFuture, authorityKeyID: "ff", serial: "02")
        #expect(AgentService.taint(of: held, in: Self.authorities(intermediate: "tainted", root: "tainted")) == nil)
    }
}
