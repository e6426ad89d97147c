import SigilCore
import Testing

@Suite("StrictJSON")
struct StrictJSONTests {
    @Test(
        "accepts strict JSON",
        arguments: [
            #"{}"#, #"[]"#, #""x""#, "0", "-0.5e+10", "true", "null",
            #" {"a": [1, 2, {"b": null}], "c": "\u00e9\ud83d\ude00"} "#,
            #"{"a": 1, "b": 2}"#, #"{"csr": "-----BEGIN-----\nAA==\n"}"#, "\"é\"",
        ])
    func accepts(_ text: String) {
        #expect(StrictJSON.problem(in: Array(text.utf8)) == nil)
    }

    @Test(
        "refuses what lenient decoders forgive",
        arguments: [
            (#"{"alg": "none", "alg": "RS256"}"#, "duplicate"),
            (#"{"a": 1, "\u0061": 2}"#, "duplicate"),
            (#"{"a": {"b": 1, "b": 1}}"#, "duplicate"),
            (#"{"a": 1,}"#, "member name"),
            (#"[1, 2,]"#, "unexpected"),
            (#"{"a": 1} x"#, "trailing"),
            (#"{"a": "\ud800"}"#, "surrogate"),
            (#"{"a": "\udc00x"}"#, "surrogate"),
            ("{\"a\": \"\u{01}\"}", "control"),
            (#"{"a": 01}"#, "expected"),
            (#"{"a": .5}"#, "unexpected"),
            (#"{"a": 1.}"#, "fraction"),
            (#"{"a": tru}"#, "literal"),
            (#"{'a': 1}"#, "member name"),
            (#"{"a" 1}"#, "expected ':'"),
            (#"{"a": "\x"}"#, "escape"),
            (#"{"a": "\u12G4"}"#, "\\u"),
            (#"{"a": "\u+123"}"#, "\\u"),
            ("", "unexpected end"),
            (String(repeating: "[", count: 40) + String(repeating: "]", count: 40), "deeper"),
        ])
    func refuses(_ text: String, _ why: String) {
        let problem = StrictJSON.problem(in: Array(text.utf8))
        #expect(problem?.contains(why) == true, "\(text): \(problem ?? "accepted")")
    }

    @Test("refuses invalid UTF-8")
    func invalidUTF8() {
        #expect(
            StrictJSON.problem(in: [0x7B, 0x22, 0x61, 0x22, 0x3A, 0x22, 0xC3, 0x28, 0x22, 0x7D]) == "not valid UTF-8")
    }

    @Test("object hands back the top-level members: strings decoded, integers exact, null and absence alike")
    func objectMembers() throws {
        let text = #" {"s": "a\u0062\n", "i": -42, "f": 4.0, "e": 4e1, "n": null, "o": {"s": "inner"}, "a": ["s"]} "#
        let object = try #require(try StrictJSON.object(Array(text.utf8)))
        #expect(object.string("s") == "ab\n")
        #expect(object.string("i") == nil && object.string("o") == nil && object.string("missing") == nil)
        #expect(object.integer("i") == -42)
        #expect(object.integer("f") == nil && object.integer("e") == nil && object.integer("s") == nil)
        #expect(object.isAbsentOrNull("n") && object.isAbsentOrNull("missing"))
        #expect(!object.isAbsentOrNull("i") && !object.isAbsentOrNull("o"))
        // Only the top level: the nested "s" did not replace the outer one.
        #expect(try StrictJSON.object(Array(#"[{"s": "x"}]"#.utf8)) == nil)
        #expect(try StrictJSON.object(Array(#""s""#.utf8)) == nil)
    }

    @Test("object refuses what validate refuses, with the caller's code")
    func objectRefuses() {
        #expect(throws: CAError(.tokenInvalid, reason: "")) {
            try StrictJSON.object(Array(#"{"a":1,"a":2}"#.utf8), code: .tokenInvalid)
        }
    }

    @Test("validate throws the caller's code")
    func validateThrowsCode() {
        #expect(throws: CAError(.tokenInvalid, reason: "")) {
            try StrictJSON.validate(Array(#"{"a":1,"a":2}"#.utf8), code: .tokenInvalid)
        }
    }
}
