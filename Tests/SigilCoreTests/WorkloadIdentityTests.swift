import SigilCore
import SigilTestSupport
import Testing

@Suite("WorkloadIdentity")
struct WorkloadIdentityTests {
    static let domain = try! TrustDomain("example.org")

    @Test(
        "namespace and service account map to spiffe://<td>/ns/<ns>/sa/<sa>",
        arguments: [("default", "web"), ("kube-system", "coredns"), ("team.a", "svc_1"), ("N", "S")])
    func mapsToTemplate(_ namespace: String, _ serviceAccount: String) throws {
        let workload = WorkloadIdentity(namespace: namespace, serviceAccount: serviceAccount)
        let id = try workload.spiffeID(in: Self.domain)
        #expect(id.description == "spiffe://example.org/ns/\(namespace)/sa/\(serviceAccount)")
        #expect(WorkloadIdentity(id) == workload)
    }

    @Test(
        "IDs outside the template do not map back",
        arguments: [
            "spiffe://example.org", "spiffe://example.org/ns/default", "spiffe://example.org/ns/default/sa",
            "spiffe://example.org/ns/default/sa/web/extra", "spiffe://example.org/namespace/default/sa/web",
            "spiffe://example.org/ns/default/serviceaccount/web", "spiffe://example.org/sa/web/ns/default",
        ])
    func nonTemplateIDs(_ text: String) throws {
        #expect(WorkloadIdentity(try SPIFFEID(parsing: text)) == nil)
    }

    @Test(
        "names the SPIFFE path grammar refuses are invalid_spiffe_id",
        arguments: [
            ("", "web"), ("default", ""), ("de fault", "web"), ("default", "we%62"), ("..", "web"), ("default", "."),
        ])
    func invalidNames(_ namespace: String, _ serviceAccount: String) {
        expectCAError(.invalidSPIFFEID) {
            try WorkloadIdentity(namespace: namespace, serviceAccount: serviceAccount).spiffeID(in: Self.domain)
        }
    }

    @Test("a name containing a slash cannot impersonate a longer path")
    func slashInNameIsRefused() {
        expectCAError(.invalidSPIFFEID) {
            try WorkloadIdentity(namespace: "prod/sa/admin/ns/x", serviceAccount: "web").spiffeID(in: Self.domain)
        }
    }
}
