import SigilCore
import Testing

@Suite("IssuanceRequestBody")
struct IssuanceRequestBodyTests {
    static let pem = #"-----BEGIN CERTIFICATE REQUEST-----\nMIIB\/+x==\n-----END CERTIFICATE REQUEST-----\n"#
    static let decodedPEM = "-----BEGIN CERTIFICATE REQUEST-----\nMIIB/+x==\n-----END CERTIFICATE REQUEST-----\n"

    @Test(
        "the usual shape is read in one pass, to what the strict decoder reads",
        arguments: [
            (#"{"csr": "\#(pem)"}"#, nil as Int?),
            (#"{"csr":"\#(pem)","ttl_seconds":600}"#, 600),
            (" \r\n\t{ \"ttl_seconds\" : 0 , \"csr\" : \"\(pem)\" } \n", 0),
            (#"{"csr": "\#(pem)", "ttl_seconds": 999999999999999999}"#, 999_999_999_999_999_999),
        ])
    func usualShape(_ text: String, _ ttl: Int?) throws {
        let bytes = Array(text.utf8)
        let usual = try #require(IssuanceRequestBody.decodeUsualShape(bytes))
        #expect(usual == IssuanceRequestBody(csr: Self.decodedPEM, ttlSeconds: ttl))
        #expect(usual == (try IssuanceRequestBody.decodeStrictly(bytes)))
        #expect(usual == (try IssuanceRequestBody.decode(bytes)))
    }

    @Test(
        "anything else is left to the strict decoder, which still reads what is valid",
        arguments: [
            (#"{"csr": "a\u0062c"}"#, IssuanceRequestBody(csr: "abc")),
            (#"{"csr": "é"}"#, IssuanceRequestBody(csr: "é")),
            (#"{"csr": "x", "ttl_seconds": null}"#, IssuanceRequestBody(csr: "x")),
            (#"{"csr": "x", "ttl_seconds": -5}"#, IssuanceRequestBody(csr: "x", ttlSeconds: -5)),
            (#"{"csr": "x", "extra": 1}"#, IssuanceRequestBody(csr: "x")),
            (#"{"csr": "x", "ttl_seconds": 1e3}"#, IssuanceRequestBody(csr: "x", ttlSeconds: 1000)),
            (#"{"csr": "x", "ttl_seconds": 1000000000000000000}"#, IssuanceRequestBody(csr: "x", ttlSeconds: 1_000_000_000_000_000_000)),
        ])
    func leftToStrict(_ text: String, _ expected: IssuanceRequestBody) throws {
        let bytes = Array(text.utf8)
        #expect(IssuanceRequestBody.decodeUsualShape(bytes) == nil)
        #expect(try IssuanceRequestBody.decode(bytes) == expected)
    }

    @Test(
        "malformed bodies are refused as bad_request by either path",
        arguments: [
            #"{"csr": "x", "csr": "y"}"#, #"{"csr": "x",}"#, #"{"csr": "x"} x"#, #"{"csr": "x", "ttl_seconds": 0600}"#,
            #"{"csr": "x", "ttl_seconds": 1.5}"#, #"{"csr": "x", "ttl_seconds": "600"}"#,
            #"{"ttl_seconds": 600}"#, #"{}"#, #"[]"#, #"{"csr": 1}"#, "{\"csr\": \"a\u{01}b\"}", #"{"csr": "x""#, "",
        ])
    func refused(_ text: String) {
        let bytes = Array(text.utf8)
        #expect(IssuanceRequestBody.decodeUsualShape(bytes) == nil)
        #expect { try IssuanceRequestBody.decode(bytes) } throws: { ($0 as? CAError)?.code == .badRequest }
    }
}
