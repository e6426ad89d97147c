import Foundation
import Testing

@testable import SigilAgent

@Suite("Agent taint detection")
struct TaintDetectionTests {
    typealias Authority = SigilClient.Authorities.Authority

    static func authorities(intermediate: String, root: String) -> SigilClient.Authorities {
        SigilClient.Authorities(
            bundle_sequence: 1,
            authorities: [
                Authority(id: "root-1", role: "root", state: root, parent_id: nil, subject_key_id: "aa"),
                Authority(id: "intermediate-1", role: "intermediate", state: intermediate, parent_id: "root-1", subject_key_id: "bb"),
                Authority(id: "intermediate-2", role: "intermediate", state: "active", parent_id: "root-1", subject_key_id: "cc"),
            ])
    }

    static let held = AgentService.Held(notBefore: .distantPast, notAfter: .distantFuture, authorityKeyID: "bb", serial: "01")

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
        #expect(AgentService.taint(of: Self.held, in: Self.authorities(intermediate: "retired", root: "tainted")) == "tainted")
    }

    @Test("an issuer the server does not list is not treated as tainted")
    func unknownIssuer() {
        let held = AgentService.Held(notBefore: .distantPast, notAfter: .distantFuture, authorityKeyID: "ff", serial: "02")
        #expect(AgentService.taint(of: held, in: Self.authorities(intermediate: "tainted", root: "tainted")) == nil)
    }
}
