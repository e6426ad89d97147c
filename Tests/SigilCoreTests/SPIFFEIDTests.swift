import SigilCore
import SigilTestSupport
import Testing

@Suite("SPIFFEID")
struct SPIFFEIDTests {
    static let longestTrustDomain = String(repeating: "a", count: 255)
    /// `spiffe://example.org` (20 bytes) followed by `/ppp…` segments, exactly `length` bytes long (for the
    /// lengths used here, 2048 and 2049, no segment comes out empty).
    static func id(ofLength length: Int) -> String {
        var id = "spiffe://example.org"
        while id.utf8.count < length {
            let room = length - id.utf8.count - 1
            id += "/" + String(repeating: "p", count: min(room, 99))
        }
        return id
    }

    @Test(
        "valid IDs parse and print back unchanged",
        arguments: [
            "spiffe://example.org/ns/default/sa/web",
            "spiffe://example.org",
            "spiffe://example.org/workload",
            "spiffe://a.b-c_d.0/Path.With-Mixed_Case/123",
            "spiffe://example.org/...",
            "spiffe://example.org/.hidden/a..b",
            "spiffe://cluster.local/ns/kube-system/sa/coredns",
            "spiffe://\(String(repeating: "a", count: 255))/x",
            id(ofLength: 2048),
        ])
    func validIDs(_ text: String) throws {
        let id = try SPIFFEID(parsing: text)
        #expect(id.description == text)
        #expect(try SPIFFEID(parsing: id.description) == id)
    }

    @Test("trust domain and path are split at the first slash")
    func components() throws {
        let id = try SPIFFEID(parsing: "spiffe://example.org/ns/default/sa/web")
        #expect(id.trustDomain.name == "example.org")
        #expect(id.path == "/ns/default/sa/web")
        #expect(id.isWorkload)
        let domainID = try SPIFFEID(parsing: "spiffe://example.org")
        #expect(domainID.path == "")
        #expect(!domainID.isWorkload)
        #expect(domainID == id.trustDomain.id)
    }

    @Test(
        "invalid IDs are refused with invalid_spiffe_id",
        arguments: [
            // Scheme
            "", "example.org/path", "http://example.org/path", "SPIFFE://example.org/path", "Spiffe://example.org/path",
            "spiffe:/example.org/path", "spiffe:example.org", " spiffe://example.org/path", "spiffe://",
            // Trust domain
            "spiffe:///path", "spiffe://Example.org/path", "spiffe://EXAMPLE.ORG", "spiffe://example.org:8443/path",
            "spiffe://example.org:/path", "spiffe://user@example.org/path", "spiffe://user:pass@example.org/path",
            "spiffe://exa mple.org/path", "spiffe://exa$mple.org", "spiffe://exämple.org/path",
            "spiffe://ex%41mple.org/path",
            "spiffe://example.org?query", "spiffe://example.org#fragment", "spiffe://[::1]/path",
            "spiffe://\(String(repeating: "a", count: 256))/x",
            // Path
            "spiffe://example.org/", "spiffe://example.org/path/", "spiffe://example.org//path",
            "spiffe://example.org/a//b",
            "spiffe://example.org/.", "spiffe://example.org/..", "spiffe://example.org/./path",
            "spiffe://example.org/a/../b",
            "spiffe://example.org/path/.", "spiffe://example.org/path/..", "spiffe://example.org/pa%20th",
            "spiffe://example.org/%41", "spiffe://example.org/path?query", "spiffe://example.org/path#fragment",
            "spiffe://example.org/pa th", "spiffe://example.org/päth", "spiffe://example.org/a\\b",
            "spiffe://example.org/a:b",
            "spiffe://example.org/a@b", "spiffe://example.org/a+b", "spiffe://example.org/a~b",
            // Length
            id(ofLength: 2049),
        ])
    func invalidIDs(_ text: String) {
        expectCAError(.invalidSPIFFEID) { try SPIFFEID(parsing: text) }
    }

    @Test("the reason names the broken rule")
    func reasonNamesRule() {
        let cases = [
            ("SPIFFE://example.org/x", "lowercase"), ("spiffe://example.org:1/x", "port"),
            ("spiffe://u@example.org/x", "userinfo"),
            ("spiffe://example.org//x", "empty segment"), ("spiffe://example.org/x/", "end with /"),
            ("spiffe://example.org/x/..", "dot segment"), ("spiffe://example.org/%41", "percent"),
            ("spiffe://example.org/x?y", "query"), (Self.id(ofLength: 2049), "2048"),
        ]
        for (text, words) in cases {
            let error = expectCAError(.invalidSPIFFEID) { try SPIFFEID(parsing: text) }
            #expect(error?.reason.contains(words) == true, "\(text): \(error?.reason ?? "no error")")
        }
    }

    @Test(
        "IDs built from segments validate every segment",
        arguments: [["ns", ""], ["."], ["a", ".."], ["a b"], ["%41"], ["a?b"]])
    func segmentsAreValidated(_ segments: [String]) throws {
        let domain = try TrustDomain("example.org")
        expectCAError(.invalidSPIFFEID) { try SPIFFEID(trustDomain: domain, segments: segments) }
    }

    @Test("a segment containing a slash is refused rather than split into two segments")
    func segmentWithSlashIsRefused() throws {
        let domain = try TrustDomain("example.org")
        expectCAError(.invalidSPIFFEID) {
            try SPIFFEID(trustDomain: domain, segments: ["ns", "team/a", "sa", "web"])
        }
    }

    @Test("IDs built from segments equal parsed IDs and respect the length limit")
    func segmentsBuildIDs() throws {
        let domain = try TrustDomain("example.org")
        let built = try SPIFFEID(trustDomain: domain, segments: ["ns", "default", "sa", "web"])
        #expect(built == (try SPIFFEID(parsing: "spiffe://example.org/ns/default/sa/web")))
        #expect(try SPIFFEID(trustDomain: domain, segments: []) == domain.id)
        let tooLong = Array(repeating: String(repeating: "x", count: 99), count: 21)
        expectCAError(.invalidSPIFFEID) { try SPIFFEID(trustDomain: domain, segments: tooLong) }
    }

    @Test("IDs order by their text")
    func ordering() throws {
        let a = try SPIFFEID(parsing: "spiffe://example.org/a")
        let b = try SPIFFEID(parsing: "spiffe://example.org/b")
        #expect(a < b)
        #expect([b, a].sorted() == [a, b])
    }
}

@Suite("TrustDomain")
struct TrustDomainTests {
    @Test(
        "valid names", arguments: ["example.org", "cluster.local", "a", "a-b_c.0", String(repeating: "z", count: 255)])
    func validNames(_ name: String) throws {
        let domain = try TrustDomain(name)
        #expect(domain.name == name)
        #expect(domain.description == name)
        #expect(domain.id.description == "spiffe://\(name)")
    }

    @Test(
        "invalid names are refused with invalid_spiffe_id",
        arguments: [
            "", "Example.org", "example.org:443", "user@example.org", "exa mple", "ex%41mple", "example/org",
            "ex*ample",
            "exämple.org", String(repeating: "z", count: 256),
        ])
    func invalidNames(_ name: String) {
        expectCAError(.invalidSPIFFEID) { try TrustDomain(name) }
    }
}
