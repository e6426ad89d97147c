import Foundation
import SigilAPIModels
import SigilServer
import Testing

@Suite("IssuanceResponse")
struct IssuanceResponseTests {
    @Test("the hand-written JSON body decodes to an equal value, escapes included, with sorted keys")
    func jsonRoundTrips() throws {
        let source = #"""
            {"spiffe_id": "spiffe://example.org/ns/a\"b/sa/c\\d", "serial": "00ff", "not_before": "2026-11-25T14:49:56Z",
             "not_after": "2026-11-25T15:49:56Z", "renew_after": "2026-11-25T15:19:56Z",
             "chain": ["-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "tab\there \u0001 é 🔐 /"],
             "trust_bundle": []}
            """#
        let response = try JSONDecoder().decode(IssuanceResponse.self, from: Data(source.utf8))
        let json = response.json
        #expect(try JSONDecoder().decode(IssuanceResponse.self, from: Data(json)) == response)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(json)) as? [String: Any])
        #expect(
            object.keys.sorted() == [
                "chain", "not_after", "not_before", "renew_after", "serial", "spiffe_id", "trust_bundle",
            ])
        #expect(String(decoding: json, as: UTF8.self).hasPrefix(#"{"chain":["-----BEGIN CERTIFICATE-----\u000aAAAA"#))
    }
}
