import SigilCore
import Testing

@Suite("IssuanceRequest.Body")
struct IssuanceRequestBodyTests {
    static let pem = #"-----BEGIN CERTIFICATE REQUEST-----\nMIIB\/+x==\n-----END CERTIFICATE REQUEST-----\n"#
    static let decodedPEM = "-----BEGIN CERTIFICATE REQUEST-----\nMIIB/+x==\n-----END CERTIFICATE REQUEST-----\n"

    @Test(
        "the body an agent sends is decoded, escapes and all",
        arguments: [
            (#"{"csr": "\#(pem)"}"#, nil as Int?),
            (#"{"csr":"\#(pem)","ttl_seconds":600}"#, 600),
            (" \r\n\t{ \"ttl_seconds\" : 0 , \"csr\" : \"\(pem)\" } \n", 0),
            (#"{"csr": "\#(pem)", "ttl_seconds": 999999999999999999}"#, 999_999_999_999_999_999),
        ])
    func agentShape(_ text: String, _ ttl: Int?) throws {
        #expect(
            try IssuanceRequest.Body.decode(Array(text.utf8))
                == IssuanceRequest.Body(csr: Self.decodedPEM, ttlSeconds: ttl))
    }

    @Test(
        "other valid shapes are decoded too",
        arguments: [
            (#"{"csr": "a\u0062c"}"#, IssuanceRequest.Body(csr: "abc")),
            (#"{"csr": "é"}"#, IssuanceRequest.Body(csr: "é")),
            (#"{"csr": "x", "ttl_seconds": null}"#, IssuanceRequest.Body(csr: "x")),
            (#"{"csr": "x", "ttl_seconds": -5}"#, IssuanceRequest.Body(csr: "x", ttlSeconds: -5)),
            (#"{"csr": "x", "extra": {"csr": "y"}}"#, IssuanceRequest.Body(csr: "x")),
            (
                #"{"csr": "x", "ttl_seconds": 1000000000000000000}"#,
                IssuanceRequest.Body(csr: "x", ttlSeconds: 1_000_000_000_000_000_000)
            ),
        ])
    func otherShapes(_ text: String, _ expected: IssuanceRequest.Body) throws {
        #expect(try IssuanceRequest.Body.decode(Array(text.utf8)) == expected)
    }

    @Test(
        "malformed bodies are refused as bad_request",
        arguments: [
            #"{"csr": "x", "csr": "y"}"#, #"{"csr": "x",}"#, #"{"csr": "x"} x"#, #"{"csr": "x", "ttl_seconds": 0600}"#,
            #"{"csr": "x", "ttl_seconds": 1.5}"#, #"{"csr": "x", "ttl_seconds": 1e3}"#,
            #"{"csr": "x", "ttl_seconds": 600.0}"#,
            #"{"csr": "x", "ttl_seconds": "600"}"#, #"{"csr": "x", "ttl_seconds": 99999999999999999999}"#,
            #"{"ttl_seconds": 600}"#, #"{}"#, #"[]"#, #"["csr"]"#, #"{"csr": 1}"#, #"{"csr": null}"#,
            "{\"csr\": \"a\u{01}b\"}",
            #"{"csr": "x""#, "",
        ])
    func refused(_ text: String) {
        #expect { try IssuanceRequest.Body.decode(Array(text.utf8)) } throws: { ($0 as? CAError)?.code == .badRequest }
    }
}
