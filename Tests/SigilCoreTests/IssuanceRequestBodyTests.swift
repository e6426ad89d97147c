import SigilCore
import Testing

@Suite("IssuanceRequestBody")
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
        #expect(try IssuanceRequestBody.decode(Array(text.utf8)) == IssuanceRequestBody(csr: Self.decodedPEM, ttlSeconds: ttl))
    }

    @Test(
        "other valid shapes are decoded too",
        arguments: [
            (#"{"csr": "a\u0062c"}"#, IssuanceRequestBody(csr: "abc")),
            (#"{"csr": "é"}"#, IssuanceRequestBody(csr: "é")),
            (#"{"csr": "x", "ttl_seconds": null}"#, IssuanceRequestBody(csr: "x")),
            (#"{"csr": "x", "ttl_seconds": -5}"#, IssuanceRequestBody(csr: "x", ttlSeconds: -5)),
            (#"{"csr": "x", "extra": {"csr": "y"}}"#, IssuanceRequestBody(csr: "x")),
            (#"{"csr": "x", "ttl_seconds": 1000000000000000000}"#, IssuanceRequestBody(csr: "x", ttlSeconds: 1_000_000_000_000_000_000)),
        ])
    func otherShapes(_ text: String, _ expected: IssuanceRequestBody) throws {
        #expect(try IssuanceRequestBody.decode(Array(text.utf8)) == expected)
    }

    @Test(
        "malformed bodies are refused as bad_request",
        arguments: [
            #"{"csr": "x", "csr": "y"}"#, #"{"csr": "x",}"#, #"{"csr": "x"} x"#, #"{"csr": "x", "ttl_seconds": 0600}"#,
            #"{"csr": "x", "ttl_seconds": 1.5}"#, #"{"csr": "x", "ttl_seconds": 1e3}"#, #"{"csr": "x", "ttl_seconds": 600.0}"#,
            #"{"csr": "x", "ttl_seconds": "600"}"#, #"{"csr": "x", "ttl_seconds": 99999999999999999999}"#,
            #"{"ttl_seconds": 600}"#, #"{}"#, #"[]"#, #"["csr"]"#, #"{"csr": 1}"#, #"{"csr": null}"#, "{\"csr\": \"a\u{01}b\"}",
            #"{"csr": "x""#, "",
        ])
    func refused(_ text: String) {
        #expect { try IssuanceRequestBody.decode(Array(text.utf8)) } throws: { ($0 as? CAError)?.code == .badRequest }
    }
}
